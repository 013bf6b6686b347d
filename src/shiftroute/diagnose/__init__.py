"""`shiftroute diagnose route NAME`: why a route does or does not serve.

    checks.py   the ordered checks; each returns a Check (PASS/FAIL, one-line reason, a fix on failure)
    facts.py    what the checks read from the store, loaded once (route, routers, services, slices)
    probes.py   socket and TLS probing of endpoints and of the router (every wait bounded)
    render.py   text and JSON output

The checks stop at the first failing link: a later check would only repeat the same cause.
"""

from shiftroute.diagnose.checks import Check, Diagnosis, Options, diagnose_route

__all__ = ["Check", "Diagnosis", "Options", "diagnose_route"]
