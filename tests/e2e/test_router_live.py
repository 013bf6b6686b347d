"""Live configuration and processes: routes applied under load with no failed request, status written
back (host claims visible in `get routes`), sticky cookies agree across two routers, weights split
traffic, SIGTERM drains an in-flight slow response, SIGHUP reloads the default certificate."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from pathlib import Path

from cryptography.x509.oid import NameOID

from tests.conftest import wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, held_response, named_response
from tests.e2e.support.client import Connection, get
from tests.e2e.support.router import RouterProcess


class LoadLoop:
    """Requests in a loop on keep-alive connections, bounded in count and time; counts every failure."""

    def __init__(self, port: int, host: str, max_requests: int = 20_000, max_seconds: float = 30.0) -> None:
        self.port, self.host = port, host
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.max_seconds + 10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: Connection | None = None
        while (
            not self._stop.is_set()
            and time.monotonic() < deadline
            and self.ok + len(self.failures) < self.max_requests
        ):
            try:
                if conn is None:
                    conn = Connection(self.port, timeout=5)
                response = conn.request("GET", "/", self.host)
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {response.status}")
                if response.closed:
                    conn.close()
                    conn = None
            except (OSError, ConnectionError, TimeoutError) as exc:
                self.failures.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_route_created_under_load_serves_with_zero_failed_requests(cli: Cli, router: RouterProcess) -> None:
    with Backend(name="old") as old, Backend(name="new") as new:
        service(cli, "old", 80, old.address)
        cli("expose", "service", "old", "--hostname", "old.example.com", check=True)
        wait_serving(router.http, "old.example.com")
        with LoadLoop(router.http, "old.example.com") as load:
            wait_until(lambda: load.ok > 50, 10, "the load loop to get going")
            service(cli, "new", 80, new.address)
            cli("expose", "service", "new", "--hostname", "new.example.com", check=True)
            wait_serving(router.http, "new.example.com")
            cli("delete", "route", "new", check=True)
            wait_serving(router.http, "new.example.com", status=503)
            served_before = load.ok
            wait_until(lambda: load.ok > served_before + 50, 10, "more requests after the changes")
        assert load.failures == []
        assert load.ok > 100


def test_open_connection_keeps_its_route_when_the_route_changes(cli: Cli, router: RouterProcess) -> None:
    """hardening.md rule 21: changes never close a listener or an open connection."""
    with Backend(name="a") as a, Backend(name="b") as b:
        service(cli, "a", 80, a.address)
        service(cli, "b", 80, b.address)
        cli("expose", "service", "a", "--name", "web", "--hostname", "web.example.com", check=True)
        wait_serving(router.http, "web.example.com")
        with Connection(router.http) as conn:
            assert conn.request("GET", "/", "web.example.com").body == b"Hello"
            cli("delete", "route", "web", check=True)
            cli("expose", "service", "b", "--name", "web", "--hostname", "web.example.com", check=True)
            # The same keep-alive connection still works; requests route by the current table.
            response = conn.request("GET", "/", "web.example.com")
            assert response.status in (200, 503)
            wait_until(
                lambda: conn.request("GET", "/", "web.example.com").status == 200 and b.received,
                10,
                "the replacement route to serve on the same connection",
            )
            assert not conn.eof


def test_admission_status_is_written_and_shown(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        service(cli, "web", 80, backend.address, namespace="other")
        cli("expose", "service", "web", "--hostname", "shared.example.com", check=True)
        time.sleep(1.1)  # creationTimestamp has second resolution: make the second route clearly younger
        cli("expose", "service", "web", "--hostname", "shared.example.com", "-n", "other", check=True)

        def verdicts() -> dict[str, str] | None:
            out = cli("get", "routes", "-A", "-o", "json", check=True).stdout
            items = json.loads(out)["items"]
            found = {}
            for item in items:
                for ingress in item.get("status", {}).get("ingress", []):
                    condition = ingress["conditions"][0]
                    found[item["metadata"]["namespace"]] = condition.get("reason") or condition["status"]
            return found if len(found) == 2 else None

        result = wait_until(verdicts, 10, "both routes to have a status from the router")
        assert result == {"default": "True", "other": "HostAlreadyClaimed"}
        table = cli("get", "routes", "-n", "other", check=True).stdout
        assert "HostAlreadyClaimed" in table.splitlines()[1]
        described = cli("describe", "route", "web", "-n", "other", check=True).stdout
        assert "rejected by router default: HostAlreadyClaimed" in described
        assert "default/web" in described
        # The holder goes away: the displaced route is admitted, no manual step.
        cli("delete", "route", "web", check=True)
        wait_until(lambda: _reason(cli, "other") == "True", 10, "the displaced route to be admitted")
        routers = cli("get", "routers", check=True).stdout
        assert "default" in routers and "Live" in routers


def _reason(cli: Cli, namespace: str) -> str | None:
    out = json.loads(cli("get", "route", "web", "-n", namespace, "-o", "json", check=True).stdout)
    ingress = out.get("status", {}).get("ingress", [])
    if not ingress:
        return None
    condition = ingress[0]["conditions"][0]
    return condition.get("reason") or condition["status"]


def test_sticky_cookie_pins_and_survives_a_second_router(cli: Cli, start_router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backends = [Backend(respond=named_response(f"b{i}"), name=f"b{i}") for i in range(3)]
    for backend in backends:
        backend.__enter__()
    try:
        service(cli, "web", 80, *(b.address for b in backends))
        cli(
            "create",
            "route",
            "edge",
            "web",
            "--service",
            "web",
            "--hostname",
            "sticky.example.com",
            check=True,
        )
        cli("annotate", "route", "web", "haproxy.router.openshift.io/balance=roundrobin", check=True)
        first = start_router(name="default")
        second = start_router(name="second")
        response = wait_serving(first.https, "sticky.example.com", tls=True)
        cookie = response.header("Set-Cookie")
        assert cookie is not None
        pair = cookie.split(";", 1)[0]
        pinned = response.body
        for router in (first, second, first, second):
            wait_serving(router.https, "sticky.example.com", tls=True)
            for _ in range(5):
                again = get(router.https, "sticky.example.com", tls=True, headers=[("Cookie", pair)])
                assert again.body == pinned
                assert again.header("Set-Cookie") is None  # a valid cookie is not set again
        # Nothing of the routing cookie reached an application.
        for backend in backends:
            for request in backend.received:
                assert pair not in (request.header("Cookie") or "")
    finally:
        for backend in backends:
            backend.stop()


def test_weights_split_traffic_between_services(cli: Cli, router: RouterProcess, tmp_path: Path) -> None:
    with (
        Backend(respond=named_response("a"), name="a") as a,
        Backend(respond=named_response("b"), name="b") as b,
    ):
        service(cli, "a", 80, a.address)
        service(cli, "b", 80, b.address)
        route = {
            "apiVersion": "route.openshift.io/v1",
            "kind": "Route",
            "metadata": {
                "name": "split",
                "namespace": "default",
                "annotations": {"haproxy.router.openshift.io/disable_cookies": "true"},
            },
            "spec": {
                "host": "split.example.com",
                "to": {"kind": "Service", "name": "a", "weight": 75},
                "alternateBackends": [{"kind": "Service", "name": "b", "weight": 25}],
            },
        }
        path = tmp_path / "split.json"
        path.write_text(json.dumps(route))
        cli("apply", "-f", str(path), check=True)
        assert "a(75%),b(25%)" in cli("get", "routes", check=True).stdout
        wait_serving(router.http, "split.example.com")
        counts: collections.Counter[bytes] = collections.Counter()
        with Connection(router.http) as conn:
            for _ in range(400):
                counts[conn.request("GET", "/", "split.example.com").body] += 1
        # Two services weighted: roundrobin (routes.md §5), so the split is exact over each cycle.
        assert 290 <= counts[b"a"] <= 310, counts
        assert counts[b"a"] + counts[b"b"] == 400


def test_sigterm_drains_an_in_flight_slow_response(cli: Cli, router: RouterProcess) -> None:
    release = threading.Event()
    with Backend(respond=held_response(release, b"slow")) as backend:
        service(cli, "slow", 80, backend.address)
        cli("expose", "service", "slow", "--hostname", "slow.example.com", check=True)
        release.set()
        wait_serving(router.http, "slow.example.com")
        release.clear()
        conn = Connection(router.http, timeout=15)
        conn.send(b"GET / HTTP/1.1\r\nHost: slow.example.com\r\n\r\n")
        wait_until(lambda: len(backend.received) >= 2, 5, "the slow request to reach the backend")
        router.signal(signal.SIGTERM)
        wait_until(
            lambda: get(router.admin, "x", "/healthz/ready").status == 503, 5, "readiness to turn false"
        )
        threading.Timer(1.0, release.set).start()
        response = conn.read_response()
        assert response.status == 200 and response.body == b"slow"
        assert response.closed  # draining: the connection is not kept alive
        conn.close()
        assert router.proc is not None
        assert router.proc.wait(15) == 0  # nothing had to be cut
        assert "drained" in router.log()


def test_sigterm_drains_an_idle_https_connection_the_client_keeps_open(
    cli: Cli, router: RouterProcess
) -> None:
    """Draining finishes an idle HTTPS keep-alive connection (close_notify, then EOF) and lingers for the
    client's close up to the fin timeout (1 s). The drain asks every idle connection to finish every
    50 ms, the lingering one too: a second close_notify after the half-close made uvloop raise, and the
    drain never completed."""
    with Backend(name="web") as backend:
        service(cli, "web", 80, backend.address)
        cli("create", "route", "edge", "secure", "--service", "web", "--hostname", "secure.example.com")
        wait_serving(router.https, "secure.example.com", tls=True)
        conn = Connection(router.https, tls=True, sni="secure.example.com", timeout=15)
        response = conn.request("GET", "/", "secure.example.com")
        assert response.status == 200 and not response.closed
        router.signal(signal.SIGTERM)
        # The client reads the TLS close and EOF, and keeps its side open: the router lingers.
        assert conn.read_until_closed(limit=5) == b""
        assert router.proc is not None
        assert router.proc.wait(15) == 0  # drained, nothing cut
        conn.close()
        log = router.log()
        assert "drained; bye" in log
        assert "Traceback" not in log and "write to" not in log


def test_sighup_reloads_the_default_certificate(cli: Cli, start_router, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    certs = tmp_path / "certs"
    cli("pki", "ca", "ca1", "--dir", str(certs), check=True)
    cli(
        "pki",
        "cert",
        "router",
        "--ca",
        str(certs / "ca1"),
        "--cn",
        "first.example.com",
        "--dir",
        str(certs),
        check=True,
    )
    router = start_router(
        "--default-cert", str(certs / "router.crt"), "--default-key", str(certs / "router.key")
    )

    def served_cn() -> str:
        with Connection(router.https, tls=True, sni="x.example.com") as conn:
            assert conn.peer_cert is not None
            return str(conn.peer_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    assert served_cn() == "first.example.com"
    cli(
        "pki",
        "cert",
        "router",
        "--ca",
        str(certs / "ca1"),
        "--cn",
        "second.example.com",
        "--dir",
        str(certs),
        "--force",
        check=True,
    )
    router.signal(signal.SIGHUP)
    wait_until(lambda: served_cn() == "second.example.com", 10, "the new default certificate to be served")
