"""`shiftroute serve`: run the router."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from shiftroute.admission import RouterOptions
from shiftroute.api.annotations import parse_duration
from shiftroute.cli.common import Context, handle_errors, pass_context, read_file_arg, store_options
from shiftroute.engine.context import Limits
from shiftroute.errors import PKIError, UsageError
from shiftroute.pki.pem import load_certificates
from shiftroute.routing.contexts import TLS_PROFILES
from shiftroute.routing.table import Timeouts
from shiftroute.store import resolve_store_url, state_home

log = logging.getLogger("shiftroute.serve")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )


def _domains(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(d.strip().lower() for v in values for d in v.split(",") if d.strip())


@click.command("serve")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Plain-HTTP listener (OpenShift: 80). 0 picks a free port.",
)
@click.option(
    "--https-port",
    type=click.IntRange(0, 65535),
    default=8443,
    show_default=True,
    help="TLS listener for edge, reencrypt and passthrough (OpenShift: 443).",
)
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    default=1936,
    show_default=True,
    help="/healthz, /healthz/ready and /metrics.",
)
@click.option("--bind", default="", metavar="ADDR", help="Address to listen on (default: all interfaces).")
@click.option(
    "--domain",
    default="apps.localhost",
    show_default=True,
    help="Router domain: routes without a host get <name>-<namespace>.<domain>.",
)
@click.option(
    "--default-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Default certificate (PEM); default: a self-signed *.<domain> kept in --state-dir.",
)
@click.option(
    "--default-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Key of --default-cert.",
)
@click.option(
    "--service-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="CA that signs service certificates: reencrypt routes without destinationCACertificate "
    "verify the endpoint against it, with the name <service>.<namespace>.svc.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=os.cpu_count() or 1,
    show_default="CPU count",
    help="Worker processes sharing the ports (SO_REUSEPORT).",
)
@click.option(
    "--router-name",
    default="default",
    show_default=True,
    help="This router's name in route status (status.ingress[].routerName).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the generated default certificate lives (default: $XDG_STATE_HOME/shiftroute).",
)
@click.option(
    "--tls-profile",
    type=click.Choice(TLS_PROFILES),
    default="intermediate",
    show_default=True,
    help="Client-side TLS: old (TLS 1.1+), intermediate (TLS 1.2+), modern (TLS 1.3).",
)
@click.option(
    "--insecure-skip-backend-verify",
    is_flag=True,
    help="Admit reencrypt routes with no way to verify the endpoint, and do not verify them. "
    "For testing only (OpenShift does this silently; shiftroute refuses such routes otherwise).",
)
@click.option("--allow-wildcard-routes", is_flag=True, help="Admit routes with wildcardPolicy Subdomain.")
@click.option(
    "--disable-namespace-ownership-check",
    is_flag=True,
    help="Let routes in different namespaces share a host (on different paths).",
)
@click.option(
    "--allowed-domains",
    multiple=True,
    metavar="DOMAINS",
    help="Only admit hosts in these domains (comma-separated, repeatable).",
)
@click.option(
    "--denied-domains",
    multiple=True,
    metavar="DOMAINS",
    help="Never admit hosts in these domains (comma-separated, repeatable).",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One line per request.")
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=50_000,
    show_default=True,
    help="Client connections per worker; above it new connections are refused.",
)
@click.option(
    "--drain-grace",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="On SIGTERM: seconds to keep accepting after readiness turns false.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="On SIGTERM: seconds in-flight requests get to finish before connections are cut.",
)
@click.option(
    "--timeout",
    "timeouts",
    multiple=True,
    metavar="NAME=DURATION",
    help="Override a default timeout (repeatable), HAProxy syntax: 10s, 500ms, 5m. Names and defaults: "
    "connect=5s server=30s client=30s tunnel=1h head=10s keepalive=300s hello=5s fin=1s.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="When ready, write the bound ports here as JSON (handy with port 0).",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
@click.option("--worker-index", type=int, default=None, hidden=True)
@store_options
@pass_context
@handle_errors
def serve(ctx: Context, **opts: object) -> None:
    """Run the router: watch the store and serve its routes.

    \b
    HTTP listener:  plain-HTTP routes; edge/reencrypt routes with insecure policy Allow (Redirect: 302).
    HTTPS listener: reads the ClientHello; SNI of a passthrough route relays the TLS stream untouched;
                    otherwise TLS ends here with the route's certificate or the default one, then plain
                    HTTP (edge) or a new, verified TLS connection (reencrypt) to the endpoint.
    Changes in the store apply in milliseconds, without dropping a connection.
    Signals: SIGTERM/SIGINT drain and exit; SIGHUP reloads the default certificate.
    Environment: SHIFTROUTE_PURE_PYTHON=1 runs the Python sources of the request path even when its
    compiled build is installed (the log says which runs); SHIFTROUTE_SPLICE=0 keeps passthrough relays
    in the event loop instead of splice(2); SHIFTROUTE_UVLOOP_TRANSPORTS=keep leaves uvloop's own
    transport registry in place (the router replaces it with a cheaper one; the log says which);
    SHIFTROUTE_HTTPS_SOCKETS=loop serves HTTPS on the event loop's own server and transports instead of
    the router's own sockets (the log says which: "https connections: ..."); glibc's
    MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ replace the malloc thresholds the router sets itself
    (4 MiB / 16 MiB, logged at start).
    """
    setup_logging(str(opts["log_level"]))
    workers = int(opts["workers"])  # type: ignore[call-overload]
    worker_index = opts["worker_index"]
    supervise = workers > 1 and worker_index is None
    if supervise and 0 in (opts["http_port"], opts["https_port"], opts["admin_port"]):
        raise UsageError("--workers > 1 needs fixed ports (port 0 would give each worker its own port)")
    service_ca = ""
    if opts["service_ca"]:
        service_ca = read_file_arg("--service-ca", str(opts["service_ca"]))
        try:
            load_certificates(service_ca, "--service-ca")
        except PKIError as exc:
            raise UsageError(str(exc)) from None
    options = RouterOptions(
        router_name=str(opts["router_name"]),
        domain=str(opts["domain"]).lower().strip("."),
        allow_wildcard_routes=bool(opts["allow_wildcard_routes"]),
        disable_namespace_ownership_check=bool(opts["disable_namespace_ownership_check"]),
        allowed_domains=_domains(opts["allowed_domains"]),  # type: ignore[arg-type]
        denied_domains=_domains(opts["denied_domains"]),  # type: ignore[arg-type]
        has_service_ca=bool(service_ca),
        insecure_skip_backend_verify=bool(opts["insecure_skip_backend_verify"]),
    )
    from shiftroute.engine.router import Router, RouterConfig

    limits, route_timeouts = parse_timeouts(opts["timeouts"], int(opts["max_connections"]))  # type: ignore[arg-type,call-overload]

    config = RouterConfig(
        store_url=resolve_store_url(ctx.store_url),
        options=options,
        bind=str(opts["bind"]),
        http_port=int(opts["http_port"]),  # type: ignore[call-overload]
        https_port=int(opts["https_port"]),  # type: ignore[call-overload]
        admin_port=int(opts["admin_port"]),  # type: ignore[call-overload]
        state_dir=opts["state_dir"] or state_home(),  # type: ignore[arg-type]
        default_cert=opts["default_cert"],  # type: ignore[arg-type]
        default_key=opts["default_key"],  # type: ignore[arg-type]
        service_ca=service_ca,
        tls_profile=str(opts["tls_profile"]),
        limits=limits,
        timeouts=route_timeouts,
        access_log=bool(opts["access_log"]),
        drain_grace=float(opts["drain_grace"]),  # type: ignore[arg-type]
        drain_timeout=float(opts["drain_timeout"]),  # type: ignore[arg-type]
        worker_index=int(worker_index or 0),  # type: ignore[call-overload]
        workers=workers,
        ready_file=opts["ready_file"],  # type: ignore[arg-type]
    )
    if supervise:
        # Everything above validated the options, so a worker cannot fail on them after it started.
        sys.exit(_supervise(workers))
    import uvloop

    try:
        code = uvloop.run(Router(config).run())
    except OSError as exc:
        raise UsageError(f"cannot listen: {exc.strerror or exc}") from None
    sys.exit(code)


_LIMIT_NAMES = {
    "head": "head_timeout",
    "keepalive": "keepalive_timeout",
    "client": "client_timeout",
    "hello": "hello_timeout",
    "fin": "client_fin_timeout",
}
_ROUTE_NAMES = {"connect": "connect", "server": "server", "tunnel": "tunnel"}


def parse_timeouts(values: tuple[str, ...], max_connections: int) -> tuple[Limits, Timeouts]:
    """`--timeout NAME=DURATION` values into the router's limits and the routes' default timeouts."""
    limit_args: dict[str, float] = {}
    route_args: dict[str, float] = {}
    for value in values:
        name, sep, text = value.partition("=")
        seconds = parse_duration(text) if sep else None
        if name not in _LIMIT_NAMES and name not in _ROUTE_NAMES:
            names = ", ".join(sorted({*_LIMIT_NAMES, *_ROUTE_NAMES}))
            raise UsageError(f"--timeout {value}: unknown timeout {name!r} (one of {names})")
        if seconds is None:
            raise UsageError(f"--timeout {value}: expected NAME=DURATION like {name}=30s or {name}=500ms")
        if name in _LIMIT_NAMES:
            limit_args[_LIMIT_NAMES[name]] = seconds
        else:
            route_args[_ROUTE_NAMES[name]] = seconds
    base, route = Limits(max_connections=max_connections), Timeouts()
    limits = Limits(
        max_connections=max_connections,
        head_timeout=limit_args.get("head_timeout", base.head_timeout),
        keepalive_timeout=limit_args.get("keepalive_timeout", base.keepalive_timeout),
        client_timeout=limit_args.get("client_timeout", base.client_timeout),
        hello_timeout=limit_args.get("hello_timeout", base.hello_timeout),
        client_fin_timeout=limit_args.get("client_fin_timeout", base.client_fin_timeout),
    )
    timeouts = Timeouts(
        connect=route_args.get("connect", route.connect),
        server=route_args.get("server", route.server),
        client=limits.client_timeout,
        tunnel=route_args.get("tunnel", route.tunnel),
    )
    return limits, timeouts


STARTUP_GRACE = 10.0  # a worker that dies this soon after its start is not restarted


def _supervise(workers: int) -> int:
    """Start the workers, pass signals on, restart a worker that dies, exit with the worst exit code."""
    base = [sys.executable, "-m", "shiftroute", *sys.argv[1:]]
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def spawn(index: int) -> None:
        children[index] = subprocess.Popen([*base, "--worker-index", str(index)])

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for index in range(workers):
        spawn(index)
    codes: dict[int, int] = {}
    started = {index: time.monotonic() for index in children}
    while True:
        for index, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            if stopping:
                codes[index] = code
                del children[index]
            elif time.monotonic() - started[index] < STARTUP_GRACE:
                # It died while starting (a port in use, a bad certificate): restarting would loop.
                log.error("worker %d failed to start (exit %d); stopping the others", index, code)
                stopping = True
                codes[index] = code
                del children[index]
                forward(signal.SIGTERM, None)
            else:
                log.error("worker %d exited with %d; restarting it", index, code)
                time.sleep(0.5)
                spawn(index)
                started[index] = time.monotonic()
        if stopping and not children:
            return max(codes.values(), default=0)
        time.sleep(0.1)
