"""Limits and timeouts of the request head and the connection (hardening.md rules 13-14, routes.md §7).

The size limits and the slow-loris case run against `shiftroute serve` with its defaults (24 KiB head, 100
header fields, 10 s head deadline). Keep-alive idle, a second head on a kept-alive connection and a stalled
body run against the same router started with short limits, so they finish in seconds.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_cli, wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, hello_response
from tests.e2e.support.client import Connection, build_request
from tests.e2e.support.router import RouterProcess

HOST = "limits.example.com"
SLOW_HOST = "timeout.example.com"
SLOW_ROUTE = f"""
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: timeout
  namespace: default
  annotations:
    haproxy.router.openshift.io/timeout: 1s
spec:
  host: {SLOW_HOST}
  to: {{kind: Service, name: web}}
"""

# The router with short limits: the real Router class, its real listeners, only Limits differ.
_SHORT_LIMITS_ROUTER = """
import sys
from pathlib import Path

import uvloop

from shiftroute.admission import RouterOptions
from shiftroute.cli.serve import setup_logging
from shiftroute.engine.context import Limits
from shiftroute.engine.router import Router, RouterConfig

store, workdir = sys.argv[1], Path(sys.argv[2])
setup_logging("info")
config = RouterConfig(
    store_url=store, options=RouterOptions(), bind="127.0.0.1", http_port=0, https_port=0, admin_port=0,
    state_dir=workdir / "state", ready_file=workdir / "ready-short.json", drain_grace=0.1, drain_timeout=5,
    limits=Limits(keepalive_timeout=1.0, head_timeout=2.0, client_timeout=1.0),
)
sys.exit(uvloop.run(Router(config).run()))
"""


class ShortLimitsRouter(RouterProcess):
    """RouterProcess, started with Limits(keepalive 1 s, head 2 s, client 1 s) instead of the CLI defaults."""

    def start(self, timeout: float = 30.0, wait: bool = True) -> RouterProcess:
        self.ready_file = self.workdir / "ready-short.json"
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SHORT_LIMITS_ROUTER, str(self.store), str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}:\n{self.log()}")
            if self.ready_file.exists():
                try:
                    self.ports = json.loads(self.ready_file.read_text())
                    return self
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"router not ready after {timeout}s:\n{self.log()}")


def module_cli(tmp: Path) -> Cli:
    """The console script against this module's store; failures raise unless check=False."""
    run = make_cli(tmp / "store.db", tmp)
    return lambda *args, check=True, **kw: run(*args, check=check, **kw)


@dataclass
class Env:
    router: RouterProcess
    short: RouterProcess
    capped: RouterProcess
    backend: Backend
    cli: Cli


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("limits")
    cli = module_cli(tmp)
    with Backend(name="web") as backend:
        router = RouterProcess(tmp / "store.db", tmp / "routers").start()
        short = ShortLimitsRouter(tmp / "store.db", tmp / "short", name="short").start()
        capped = RouterProcess(
            tmp / "store.db", tmp / "capped", "--max-connections", "2", name="capped"
        ).start()
        try:
            service(cli, "web", 8080, backend.address)
            cli("expose", "service", "web", "--hostname", HOST)
            (tmp / "timeout-route.yaml").write_text(SLOW_ROUTE)
            cli("apply", "-f", str(tmp / "timeout-route.yaml"))
            for port in (router.http, short.http, capped.http):
                wait_serving(port, HOST)
                wait_serving(port, SLOW_HOST)
            yield Env(router, short, capped, backend, cli)
        finally:
            for process in (router, short, capped):
                try:
                    process.stop()
                except AssertionError:
                    process.kill()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.backend.respond = hello_response
    env.backend.received.clear()
    yield
    env.backend.respond = hello_response


def refused(port: int, raw: bytes, status: int) -> None:
    """Send `raw`; the router answers `status` with Connection: close and closes."""
    with Connection(port) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert response.status == status, response.text
        assert response.header("Connection") == "close"
        assert conn.is_closed()


HEAD_LIMIT = 24 * 1024


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(
            build_request("GET", "/" + "a" * (HEAD_LIMIT + 100), HOST), 414, id="request-line-over-24k"
        ),
        pytest.param(
            build_request("GET", "/", HOST, [(f"X-Pad-{i}", "v" * 1000) for i in range(26)]),
            431,
            id="headers-over-24k",
        ),
        pytest.param(
            build_request("GET", "/", HOST, [("X-Big", "v" * (HEAD_LIMIT + 10))]),
            431,
            id="one-header-over-24k",
        ),
        pytest.param(
            build_request("GET", "/", HOST, [(f"X-N-{i}", "1") for i in range(100)]), 431, id="101-headers"
        ),
    ],
)
def test_oversized_heads_are_refused_before_the_backend(env: Env, raw: bytes, status: int) -> None:
    before = env.backend.bytes_received
    refused(env.router.http, raw, status)
    assert env.backend.received == []
    assert env.backend.bytes_received == before


def test_heads_just_inside_the_limits_are_served(env: Env) -> None:
    headers = [(f"X-N-{i}", "1") for i in range(98)]  # with Host: 99 fields, then the router adds its own
    with Connection(env.router.http) as conn:
        assert conn.request("GET", "/", HOST, headers).status == 200
        assert conn.request("GET", "/" + "a" * 20_000, HOST).status == 200
    assert env.backend.received[0].header("X-N-97") == "1"
    assert env.backend.received[1].path == "/" + "a" * 20_000


def test_slow_loris_head_is_cut_at_the_10s_head_deadline(env: Env) -> None:
    """One byte every 0.5 s keeps every single read fresh; the 10 s deadline covers the whole head."""
    raw = build_request("GET", "/", HOST, [("X-Slow", "s" * 100)])
    started = time.monotonic()
    with Connection(env.router.http, timeout=20) as conn:
        for byte in raw[:-2]:  # never the final CRLF: the head cannot complete
            try:
                conn.send(bytes([byte]))
            except OSError:
                break  # the router closed the connection
            if _readable(conn, 0.5):  # paces the bytes, and stops as soon as the router answers
                break
            assert time.monotonic() - started < 15, "head deadline not enforced"
        answer = conn.read_until_closed(limit=15)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"\r\nConnection: close\r\n" in answer
    assert 9.0 < elapsed < 14.0, elapsed
    assert env.backend.received == []


def _readable(conn: Connection, wait: float) -> bool:
    """True when the router sent something (or closed) within `wait` seconds; keeps the bytes buffered."""
    ready, _, _ = select.select([conn.sock], [], [], wait)
    return bool(ready)


def test_keep_alive_idle_connection_is_closed(env: Env) -> None:
    with Connection(env.short.http) as conn:
        response = conn.request("GET", "/", HOST)
        assert response.status == 200 and not response.closed
        started = time.monotonic()
        assert conn.read_until_closed(limit=5) == b""  # closed quietly, no response bytes
        assert time.monotonic() - started >= 0.5


def test_second_head_on_a_kept_alive_connection_has_its_own_deadline(env: Env) -> None:
    with Connection(env.short.http) as conn:
        assert conn.request("GET", "/", HOST).status == 200
        conn.send(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n")  # never completed
        answer = conn.read_until_closed(limit=6)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert len(env.backend.received) == 1


def test_stalled_request_body_is_cut_and_never_completes_at_the_backend(env: Env) -> None:
    """Half a body, then nothing: the client is cut after the inactivity timeout (route `timeout` 1 s here),
    told 408 (its own fault, not the backend's), and the backend never sees a complete request."""
    with Connection(env.short.http) as conn:
        conn.send(build_request("POST", "/", SLOW_HOST, [("Content-Length", "10")], b"12345"))
        answer = conn.read_until_closed(limit=8)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert env.backend.received == []


def served_connection(port: int) -> Connection:
    """A connection the router accepted and served (bounded retries while earlier ones wind down)."""

    def attempt() -> Connection | None:
        conn = Connection(port)
        try:
            if conn.request("GET", "/", HOST).status == 200:
                return conn
        except (OSError, ConnectionError):
            pass
        conn.close()
        return None

    result = wait_until(attempt, 10, "a served connection")
    assert isinstance(result, Connection)
    return result


def test_connections_above_the_limit_are_refused_and_open_ones_keep_working(env: Env) -> None:
    """Rule 15 with `--max-connections 2`: a third client is refused at once, the two open connections keep
    being served, and a slot that frees up is usable again."""
    first = served_connection(env.capped.http)
    second = served_connection(env.capped.http)
    try:
        with Connection(env.capped.http) as third:
            try:
                third.send(build_request("GET", "/refused", HOST))
            except OSError:
                pass  # already reset
            assert third.read_until_closed(limit=5) == b""
        assert first.request("GET", "/still", HOST).status == 200
        assert second.request("GET", "/still", HOST).status == 200
        assert "/refused" not in [seen.path for seen in env.backend.received]
        first.close()
        served_connection(env.capped.http).close()
    finally:
        first.close()
        second.close()
