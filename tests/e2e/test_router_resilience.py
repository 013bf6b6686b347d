"""Balancing, retries and health, per-route annotations that act on traffic, and process-level behaviour:
several workers on one port, the store going away at runtime."""

from __future__ import annotations

import collections
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import SHIFTROUTE, free_port, wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, held_response, named_response
from tests.e2e.support.client import Connection, get
from tests.e2e.support.router import RouterProcess


def _closed_endpoint() -> str:
    return f"127.0.0.1:{free_port()}"


def test_connect_failure_retries_another_endpoint(cli: Cli, router: RouterProcess) -> None:
    with Backend(respond=named_response("up")) as up:
        service(cli, "web", 80, up.address, _closed_endpoint())
        cli("expose", "service", "web", "--hostname", "retry.example.com", check=True)
        cli(
            "annotate",
            "route",
            "web",
            "haproxy.router.openshift.io/balance=roundrobin",
            "haproxy.router.openshift.io/disable_cookies=true",
            check=True,
        )
        wait_serving(router.http, "retry.example.com")
        for _ in range(30):
            response = get(router.http, "retry.example.com")
            assert response.status == 200 and response.body == b"up"
        assert "connection refused" in router.log()


def test_all_endpoints_refusing_gives_503(cli: Cli, router: RouterProcess) -> None:
    service(cli, "down", 80, _closed_endpoint(), _closed_endpoint())
    cli("expose", "service", "down", "--hostname", "down.example.com", check=True)
    response = wait_serving(router.http, "down.example.com", status=503)
    assert b"Application is not available" in response.body


def test_active_health_check_marks_a_dead_endpoint_down(cli: Cli, router: RouterProcess) -> None:
    with Backend(respond=named_response("a")) as a, Backend(respond=named_response("b")) as b:
        service(cli, "web", 80, a.address, b.address)
        cli("expose", "service", "web", "--hostname", "health.example.com", check=True)
        cli(
            "annotate",
            "route",
            "web",
            "router.openshift.io/haproxy.health.check.interval=200ms",
            "haproxy.router.openshift.io/disable_cookies=true",
            check=True,
        )
        wait_serving(router.http, "health.example.com")
        b.stop()
        wait_until(
            lambda: "is down: 3 health checks failed" in router.log(), 15, "the health checker to notice"
        )
        bodies = collections.Counter(get(router.http, "health.example.com").body for _ in range(20))
        assert bodies == {b"a": 20}


def test_ip_allowlist_refuses_other_clients_at_connection_level(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--name", "open", "--hostname", "open.example.com", check=True)
        cli("expose", "service", "web", "--name", "closed", "--hostname", "closed.example.com", check=True)
        cli(
            "annotate",
            "route",
            "open",
            "haproxy.router.openshift.io/ip_allowlist=127.0.0.0/8 ::1",
            check=True,
        )
        cli("annotate", "route", "closed", "haproxy.router.openshift.io/ip_allowlist=10.0.0.0/8", check=True)
        wait_serving(router.http, "open.example.com")
        count = len(backend.received)
        with Connection(router.http) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: closed.example.com\r\n\r\n")
            assert conn.read_until_closed(5) == b""  # refused: closed without an answer
        assert len(backend.received) == count
        # An unparsable list is refused at admission (fail closed), with the annotation named.
        cli(
            "annotate",
            "route",
            "open",
            "haproxy.router.openshift.io/ip_allowlist=not-an-ip",
            "--overwrite",
            check=True,
        )
        wait_serving(router.http, "open.example.com", status=503)
        described = cli("describe", "route", "open", check=True).stdout
        assert "ExtendedValidationFailed" in described and "ip_allowlist" in described


def test_route_timeout_annotation_gives_504(cli: Cli, router: RouterProcess) -> None:
    release = threading.Event()
    with Backend(respond=held_response(release)) as backend:
        service(cli, "slow", 80, backend.address)
        cli("expose", "service", "slow", "--hostname", "slow.example.com", check=True)
        cli("annotate", "route", "slow", "haproxy.router.openshift.io/timeout=500ms", check=True)
        release.set()
        wait_serving(router.http, "slow.example.com")
        release.clear()
        # The default server timeout (30 s) exceeds the client's 10 s: only the annotation can answer 504.
        response = get(router.http, "slow.example.com", timeout=10)
        release.set()
        assert response.status == 504
        assert "backend timed out" in router.log()


def test_bad_annotation_values_are_logged_once_and_the_route_serves(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "web.example.com", check=True)
        cli(
            "annotate",
            "route",
            "web",
            "haproxy.router.openshift.io/timeout=soon",
            "haproxy.router.openshift.io/balance=fastest",
            check=True,
        )
        wait_serving(router.http, "web.example.com")
        wait_until(lambda: "timeout='soon'" in router.log(), 5, "the warning")
        cli("annotate", "route", "web", "unrelated=1", check=True)
        time.sleep(0.3)
        assert router.log().count("timeout='soon'") == 1
        assert router.log().count("balance='fastest'") == 1


def test_rate_limit_http_refuses_above_the_limit(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "limited.example.com", check=True)
        cli(
            "annotate",
            "route",
            "web",
            "haproxy.router.openshift.io/rate-limit-connections=true",
            "haproxy.router.openshift.io/rate-limit-connections.rate-http=5",
            check=True,
        )
        wait_serving(router.http, "limited.example.com")  # this request counts too
        results = []
        for _ in range(8):
            try:
                results.append(get(router.http, "limited.example.com", timeout=5).status)
            except ConnectionError:
                results.append(0)  # refused: closed without an answer
        assert results.count(200) == 4
        assert results[4:] == [0, 0, 0, 0]


def test_pod_concurrent_connections_caps_each_endpoint(cli: Cli, router: RouterProcess) -> None:
    release = threading.Event()
    with Backend(respond=held_response(release)) as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "capped.example.com", check=True)
        cli(
            "annotate", "route", "web", "haproxy.router.openshift.io/pod-concurrent-connections=1", check=True
        )
        release.set()
        wait_serving(router.http, "capped.example.com")
        release.clear()
        first = Connection(router.http, timeout=10)
        first.send(b"GET / HTTP/1.1\r\nHost: capped.example.com\r\n\r\n")
        wait_until(lambda: len(backend.received) >= 2, 5, "the first request to reach the backend")
        second = get(router.http, "capped.example.com", timeout=5)
        assert second.status == 503  # the only endpoint is at its cap
        release.set()
        assert first.read_response().status == 200
        first.close()


def test_two_workers_share_the_ports(cli: Cli, store_path: Path, tmp_path: Path) -> None:
    http_port, https_port, admin_port = free_port(), free_port(), free_port()  # workers need fixed ports
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "web.example.com", check=True)
        with open(tmp_path / "multi.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    SHIFTROUTE,
                    "serve",
                    "--store",
                    str(store_path),
                    "--bind",
                    "127.0.0.1",
                    "--workers",
                    "2",
                    "--http-port",
                    str(http_port),
                    "--https-port",
                    str(https_port),
                    "--admin-port",
                    str(admin_port),
                    "--state-dir",
                    str(tmp_path / "state"),
                    "--drain-grace",
                    "0.1",
                    "--drain-timeout",
                    "5",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_serving(http_port, "web.example.com", timeout=30)
                for _ in range(40):
                    with Connection(http_port) as conn:
                        assert conn.request("GET", "/", "web.example.com").status == 200
                workers = subprocess.run(
                    ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True, timeout=10
                ).stdout.split()
                assert len(workers) == 2
                # Worker 0 serves the admin port; the other worker may have been ready first.
                wait_until(
                    lambda: get(admin_port, "x", "/healthz/ready").status == 200, 30, "worker 0 to be ready"
                )
            finally:
                proc.terminate()
                code = proc.wait(30)
        assert code == 0, (tmp_path / "multi.log").read_text()


def test_store_gone_at_runtime_keeps_serving_the_last_table(
    cli: Cli, router: RouterProcess, store_path: Path, tmp_path: Path
) -> None:
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "web.example.com", check=True)
        wait_serving(router.http, "web.example.com")
        saved = tmp_path / "saved"
        saved.mkdir()
        suffixes = ("", "-wal", "-shm")  # WAL mode: the database is all three files
        for suffix in suffixes:
            source = Path(str(store_path) + suffix)
            if source.exists():
                shutil.copy(source, saved / f"store{suffix}")
            source.unlink(missing_ok=True)
        store_path.write_bytes(b"this is not a database" * 100)
        wait_until(lambda: "store unavailable" in router.log(), 15, "the router to notice the broken store")
        for _ in range(20):
            assert get(router.http, "web.example.com").status == 200
        store_path.unlink()
        for suffix in suffixes:
            if (saved / f"store{suffix}").exists():
                shutil.copy(saved / f"store{suffix}", Path(str(store_path) + suffix))
        cli("expose", "service", "web", "--name", "later", "--hostname", "later.example.com", check=True)
        wait_serving(router.http, "later.example.com", timeout=20)
        assert socket.gethostname()


def test_workers_that_cannot_listen_stop_the_router_with_an_error(store_path: Path, tmp_path: Path) -> None:
    """A worker that dies while starting (here: the port is taken) is not restarted in a loop."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                SHIFTROUTE,
                "serve",
                "--store",
                str(store_path),
                "--bind",
                "127.0.0.1",
                "--workers",
                "2",
                "--http-port",
                str(port),
                "--https-port",
                str(free_port()),
                "--admin-port",
                str(free_port()),
                "--state-dir",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert "cannot listen" in proc.stderr
    assert "failed to start" in proc.stderr


def test_timeouts_are_configurable_and_checked(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    bad = cli("serve", "--timeout", "head=soon")
    assert bad.returncode != 0 and "--timeout head=soon: expected NAME=DURATION" in bad.stderr
    router = start_router("--timeout", "head=1s")
    with socket.create_connection(("127.0.0.1", router.http), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        sock.settimeout(10)
        assert sock.recv(1000).startswith(b"HTTP/1.1 408 ")
