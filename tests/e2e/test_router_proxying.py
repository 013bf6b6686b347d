"""HTTP proxying through the router (issue 3, routes.md §5-6, hardening.md rules 10, 11, 16, 18): keep-alive,
pipelining, 100-continue, streaming in both directions, HEAD/204/304, hop-by-hop handling, X-Forwarded-* and
Forwarded per policy, rewrite-target, route header actions, HSTS and sticky cookies.

One router serves the module; every test brings its own backends and routes (unique names and hosts), and
checks both what the client got and what the backend received.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import pytest

from tests.conftest import make_cli, wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, Received
from tests.e2e.support.client import Connection, build_request, get
from tests.e2e.support.router import RouterProcess

MiB = 1024 * 1024


@dataclass
class Env:
    router: RouterProcess
    cli: Cli
    tmp: Path

    def route(
        self,
        name: str,
        host: str,
        to: str,
        *,
        annotations: dict[str, str] | None = None,
        path: str = "",
        termination: str = "",
        insecure: str = "",
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Create a route with `shiftroute apply -f` (a manifest, as `oc get -o yaml` would export it)."""
        spec: dict[str, Any] = {"host": host, "to": {"kind": "Service", "name": to}}
        if path:
            spec["path"] = path
        if termination:
            spec["tls"] = {"termination": termination}
            if insecure:
                spec["tls"]["insecureEdgeTerminationPolicy"] = insecure
        if headers:
            spec["httpHeaders"] = {"actions": headers}
        manifest = {
            "apiVersion": "route.openshift.io/v1",
            "kind": "Route",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": spec,
        }
        path_ = self.tmp / f"route-{name}.json"
        path_.write_text(json.dumps(manifest))
        self.cli("apply", "-f", str(path_))


def module_cli(tmp: Path) -> Cli:
    """The console script against this module's store; failures raise unless check=False."""
    run = make_cli(tmp / "store.db", tmp)
    return lambda *args, check=True, **kw: run(*args, check=check, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("proxying")
    router = RouterProcess(tmp / "store.db", tmp / "routers").start()
    try:
        yield Env(router, module_cli(tmp), tmp)
    finally:
        try:
            router.stop()
        except AssertionError:
            router.kill()


def response(status: int = 200, body: bytes = b"", *headers: str, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def echo_path(received: Received) -> bytes:
    return response(200, received.path.encode() + (b":" + received.body if received.body else b""))


@pytest.fixture
def web(env: Env, request: pytest.FixtureRequest) -> Iterator[tuple[Backend, str]]:
    """A backend behind a plain-HTTP route of its own; yields (backend, host)."""
    name = "r" + hashlib.md5(request.node.nodeid.encode()).hexdigest()[:10]
    host = f"{name}.example.com"
    with Backend(echo_path, name=name) as backend:
        service(env.cli, name, 8080, backend.address)
        env.cli("expose", "service", name, "--hostname", host)
        wait_serving(env.router.http, host)
        backend.received.clear()
        yield backend, host


# -- keep-alive, pipelining, 100-continue ---------------------------------------------------------------


def test_keep_alive_for_http11_and_http10_clients(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    with Connection(env.router.http) as conn:
        for i in range(3):
            reply = conn.request("GET", f"/k{i}", host)
            assert (reply.status, reply.body, reply.closed) == (200, f"/k{i}".encode(), False)
        conn.send(f"GET /old HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
        reply = conn.read_response()
        assert reply.body == b"/old" and reply.header("Connection") == "keep-alive"
        conn.send(f"GET /last HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        reply = conn.read_response()
        assert reply.body == b"/last" and reply.header("Connection") == "close"
        assert conn.is_closed()
    assert len({seen.connection for seen in backend.received}) == 1  # one backend connection for all five


def test_pipelined_requests_are_answered_in_order(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    slow_first = threading.Event()

    def respond(received: Received) -> bytes:
        if received.path == "/1":
            slow_first.wait(0.3)  # the first answer comes last from the backend's point of view
        return echo_path(received)

    backend.respond = respond
    with Connection(env.router.http) as conn:
        conn.send(
            build_request("GET", "/1", host)
            + build_request("POST", "/2", host, body=b"abc")
            + build_request("HEAD", "/3", host)
            + build_request("GET", "/4", host)
        )
        assert conn.read_pipelined_response().body == b"/1"
        assert conn.read_pipelined_response().body == b"/2:abc"
        head = conn.read_pipelined_response(head=True)
        assert head.status == 200 and head.header("Content-Length") == "2" and head.body == b""
        assert conn.read_pipelined_response().body == b"/4"
    assert [seen.path for seen in backend.received] == ["/1", "/2", "/3", "/4"]


def test_pipelined_request_after_a_bad_one_is_not_served(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    with Connection(env.router.http) as conn:
        conn.send(build_request("GET", "/ok", host) + b"GET /bad HTTP/1.1\r\nHost : x\r\n\r\n")
        first = conn.read_pipelined_response()
        assert first.status == 200 and first.body == b"/ok"
        second = conn.read_pipelined_response()
        assert (second.status, second.header("Connection")) == (400, "close")
        assert conn.is_closed()
    assert [seen.path for seen in backend.received] == ["/ok"]


def test_expect_100_continue(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    with Connection(env.router.http) as conn:
        conn.send(
            build_request("POST", "/upload", host, [("Expect", "100-continue"), ("Content-Length", "5")])
        )
        interim = conn.read_until(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        conn.send(b"hello")
        reply = conn.read_response()
        assert reply.status == 200 and reply.body == b"/upload:hello"
        # Other expectations are refused without a backend.
        conn.send(build_request("POST", "/x", host, [("Expect", "tea"), ("Content-Length", "1")], b"x"))
        assert conn.read_response().status == 417
    assert len(backend.received) == 1
    assert backend.received[0].header("Expect") is None  # the router answered it
    assert backend.received[0].body == b"hello"


# -- streaming bodies ---------------------------------------------------------------------------------


def test_large_content_length_upload_streams_to_the_backend(env: Env, web: tuple[Backend, str]) -> None:
    """6 MiB upload: the backend has the first MiB while the client still holds the rest back."""
    backend, host = web
    body = os.urandom(6 * MiB)
    backend.respond = lambda r: response(200, hashlib.sha256(r.body).hexdigest().encode())
    before = backend.bytes_received
    with Connection(env.router.http, timeout=30) as conn:
        conn.send(build_request("POST", "/big", host, [("Content-Length", str(len(body)))]) + body[:MiB])
        wait_until(
            lambda: backend.bytes_received - before >= MiB // 2, 10, "the body to stream before it ends"
        )
        conn.send(body[MiB:])
        reply = conn.read_response()
    assert reply.status == 200 and reply.body.decode() == hashlib.sha256(body).hexdigest()
    assert backend.received[-1].header("Content-Length") == str(len(body))


def test_chunked_upload_streams_and_is_rechunked(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    pieces = [os.urandom(size) for size in (1, 100, 70_000, MiB, 3, 2 * MiB)]
    backend.respond = lambda r: response(200, hashlib.sha256(r.body).hexdigest().encode())
    before = backend.bytes_received
    with Connection(env.router.http, timeout=30) as conn:
        conn.send(build_request("PUT", "/c", host, [("Transfer-Encoding", "chunked")]))
        for piece in pieces[:4]:
            conn.send(b"%x;note=x\r\n%b\r\n" % (len(piece), piece))
        wait_until(lambda: backend.bytes_received - before >= MiB // 2, 10, "chunks to stream before the end")
        for piece in pieces[4:]:
            conn.send(b"%X\r\n%b\r\n" % (len(piece), piece))
        conn.send(b"0\r\nX-Checksum: 1\r\n\r\n")
        reply = conn.read_response()
    assert reply.body.decode() == hashlib.sha256(b"".join(pieces)).hexdigest()
    seen = backend.received[-1]
    assert seen.header("Transfer-Encoding") == "chunked" and seen.header("Content-Length") is None


def gated(head: bytes, first: bytes, rest: bytes, gate: threading.Event) -> Iterator[bytes]:
    yield head + first
    gate.wait(15)  # the test opens the gate once the client has the first part
    yield rest


PATTERN = b"abcdefgh" * (MiB // 8)  # cannot contain chunk framing


def test_large_response_streams_to_the_client(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    gate = threading.Event()
    first, rest = PATTERN, PATTERN * 5
    backend.respond = lambda r: gated(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(first) + len(rest)), first, rest, gate
    )
    try:
        with Connection(env.router.http, timeout=30) as conn:
            conn.send(build_request("GET", "/big", host))
            head = conn.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 6291456\r\n" in head
            assert conn.read_exactly(len(first)) == first  # before the backend has sent the rest
            gate.set()
            assert conn.read_exactly(len(rest)) == rest
            assert conn.request("GET", "/again", host).status == 200
    finally:
        gate.set()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    @dataclass
    class Collect:
        headers: dict[str, str]
        body: bytearray

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, data: bytes) -> None:
            self.body += data

    collect = Collect({}, bytearray())
    parser = httptools.HttpResponseParser(collect)
    parser.feed_data(raw)
    return parser.get_status_code(), collect.headers, bytes(collect.body)


def test_read_until_close_response_is_rechunked_for_http11(env: Env, web: tuple[Backend, str]) -> None:
    """A backend body framed by closing its connection reaches an HTTP/1.1 client chunked, streamed, and
    the client connection stays open; an HTTP/1.0 client gets it read-until-close."""
    backend, host = web
    gate = threading.Event()
    first, rest = PATTERN, PATTERN * 4
    backend.respond = lambda r: (
        gated(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", first, rest, gate)
        if r.path == "/stream"
        else echo_path(r)
    )
    try:
        with Connection(env.router.http, timeout=30) as conn:
            conn.send(build_request("GET", "/stream", host))
            raw = conn.read_exactly(len(first))  # head + chunk framing + most of the first MiB
            gate.set()
            raw += conn.read_until(b"\r\n0\r\n\r\n")
            status, headers, body = parse_response(raw)
            assert status == 200 and headers["transfer-encoding"] == "chunked"
            assert body == first + rest
            assert "connection" not in headers
            assert conn.request("GET", "/next", host).body == b"/next"
    finally:
        gate.set()
    backend.respond = lambda r: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nold style"
    with Connection(env.router.http) as conn:
        conn.send(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        raw = conn.read_until_closed()
    assert raw.endswith(b"\r\n\r\nold style") and b"Transfer-Encoding" not in raw
    assert b"\r\nConnection: close\r\n" in raw


def test_chunked_response_is_forwarded_chunked(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    backend.respond = lambda r: (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    with Connection(env.router.http) as conn:
        reply = conn.request("GET", "/", host)
        assert reply.body == b"hello world" and reply.header("Transfer-Encoding") == "chunked"
        assert conn.request("GET", "/", host).status == 200


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        pytest.param("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Real: 1\r\n\r\n", id="head"),
        pytest.param("GET", b"HTTP/1.1 204 No Content\r\nX-Real: 1\r\n\r\n", id="204"),
        pytest.param(
            "GET", b"HTTP/1.1 304 Not Modified\r\nX-Real: 1\r\nContent-Length: 1000\r\n\r\n", id="304"
        ),
    ],
)
def test_bodiless_responses_keep_the_connection_usable(
    env: Env, web: tuple[Backend, str], method: str, answer: bytes
) -> None:
    backend, host = web
    backend.respond = lambda r: answer if r.path == "/empty" else echo_path(r)
    with Connection(env.router.http) as conn:
        conn.send(build_request(method, "/empty", host))
        raw = conn.read_until(b"\r\n\r\n")
        assert b"\r\nX-Real: 1\r\n" in raw
        if method == "HEAD" or b" 304 " in raw:
            assert b"\r\nContent-Length: 1000\r\n" in raw  # the size of the representation, no body follows
        reply = conn.request("GET", "/after", host)
        assert reply.status == 200 and reply.body == b"/after"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http-1.0"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\nok",
            id="proxy-connection",
        ),
    ],
)
def test_a_backend_connection_llhttp_takes_as_closing_is_not_reused(
    env: Env, web: tuple[Backend, str], answer: bytes
) -> None:
    # The backend keeps its end open, but llhttp reads these answers as the last on their connection: the
    # router opens a new one per request rather than read a next answer llhttp would refuse (a 502).
    backend, host = web
    backend.respond = lambda r: answer
    with Connection(env.router.http) as conn:
        for _ in range(3):
            reply = conn.request("GET", "/", host)
            assert (reply.status, reply.body) == (200, b"ok")
    assert len({r.connection for r in backend.received}) == 3


# -- hop-by-hop, Proxy, X-Forwarded-* -------------------------------------------------------------------


def test_hop_by_hop_headers_are_removed_both_ways(env: Env, web: tuple[Backend, str]) -> None:
    backend, host = web
    backend.respond = lambda r: response(
        200, b"ok", "Connection: X-Backend-Private", "X-Backend-Private: 1", "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive", "X-Kept: 1",
    )  # fmt: skip
    headers = [
        (
            "Connection",
            "X-Private, keep-alive, Host, X-Forwarded-For, Content-Length, Cookie, Transfer-Encoding",
        ),
        ("X-Private", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Upgrade", "foo/1"),
        ("Proxy", "http://attacker.example:8080"),
        ("Cookie", "session=1"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Kept", "yes"),
    ]
    with Connection(env.router.http) as conn:
        reply = conn.request("POST", "/hop", host, headers, body=b"12345")
        assert reply.status == 200 and reply.body == b"ok"
        for name in ("X-Backend-Private", "Keep-Alive", "Proxy-Connection"):
            assert reply.header(name) is None, name
        assert reply.header("Connection") is None and reply.header("X-Kept") == "1"
        assert conn.request("GET", "/", host).status == 200  # still kept alive
    seen = backend.received[0]
    for name in (
        "Connection",
        "X-Private",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy",
    ):
        assert seen.header(name) is None, name
    # A Connection token cannot remove Host, framing, cookies or what the router sets.
    assert seen.header("Host") == host
    assert seen.header("Content-Length") == "5" and seen.body == b"12345"
    assert seen.header("Cookie") == "session=1"
    assert seen.header("X-Forwarded-For") == "203.0.113.7, 127.0.0.1"
    assert seen.header("X-Kept") == "yes"


CLIENT_FORWARDED = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Host", "spoofed.example"),
    ("X-Forwarded-Port", "1"),
    ("X-Forwarded-Proto", "gopher"),
    ("Forwarded", "for=203.0.113.7"),
]


ROUTER_OWN = {
    "X-Forwarded-For": "127.0.0.1",
    "X-Forwarded-Host": "{host}",
    "X-Forwarded-Port": "{port}",
    "X-Forwarded-Proto": "http",
    "Forwarded": "for=127.0.0.1;host={host};proto=http",
}
CLIENT_ONLY = {name: value for name, value in CLIENT_FORWARDED}
APPENDED = {
    **ROUTER_OWN,
    "X-Forwarded-For": "203.0.113.7, 127.0.0.1",
    "Forwarded": "for=203.0.113.7, for=127.0.0.1;host={host};proto=http",
}
NONE_AT_ALL: dict[str, str | None] = dict.fromkeys(ROUTER_OWN)


@pytest.mark.parametrize(
    ("policy", "sent", "expected"),
    [
        # append keeps the client's X-Forwarded-For and Forwarded chains and adds its own hop; the client's
        # X-Forwarded-Host/-Port/-Proto are replaced by the router's (headers.py).
        pytest.param("append", CLIENT_FORWARDED, APPENDED, id="append"),
        pytest.param("", CLIENT_FORWARDED, APPENDED, id="append-is-the-default"),
        pytest.param("append", [], ROUTER_OWN, id="append-nothing-sent"),
        pytest.param("replace", CLIENT_FORWARDED, ROUTER_OWN, id="replace"),
        pytest.param("if-none", CLIENT_FORWARDED, CLIENT_ONLY, id="if-none-all-present"),
        pytest.param(
            "if-none",
            CLIENT_FORWARDED[:1],
            {**ROUTER_OWN, "X-Forwarded-For": "203.0.113.7"},
            id="if-none-per-header",
        ),
        pytest.param("if-none", [], ROUTER_OWN, id="if-none-nothing-sent"),
        pytest.param("never", CLIENT_FORWARDED, CLIENT_ONLY, id="never"),
        pytest.param("never", [], NONE_AT_ALL, id="never-nothing-sent"),
    ],
)
def test_forwarded_headers_per_policy(
    env: Env,
    policy: str,
    sent: list[tuple[str, str]],
    expected: dict[str, str | None],
    request: pytest.FixtureRequest,
) -> None:
    name = "fwd-" + hashlib.md5(request.node.callspec.id.encode()).hexdigest()[:8]
    host = f"{name}.example.com"
    with Backend(echo_path, name=name) as backend:
        service(env.cli, name, 8080, backend.address)
        annotations = {"haproxy.router.openshift.io/set-forwarded-headers": policy} if policy else {}
        env.route(name, host, name, annotations=annotations)
        wait_serving(env.router.http, host)
        with Connection(env.router.http) as conn:
            assert conn.request("GET", "/", host, sent).status == 200
        seen = backend.received[-1]
    for header, value in expected.items():
        want = value.format(host=host, port=env.router.http) if value is not None else None
        assert seen.header(header) == want, header


def test_forwarded_headers_over_tls_say_https(env: Env) -> None:
    with Backend(echo_path) as backend:
        service(env.cli, "fwd-tls", 8080, backend.address)
        env.route("fwd-tls", "fwd-tls.example.com", "fwd-tls", termination="edge")
        wait_serving(env.router.https, "fwd-tls.example.com", tls=True)
        seen = backend.received[-1]
    assert seen.header("X-Forwarded-Proto") == "https"
    assert seen.header("X-Forwarded-Port") == str(env.router.https)
    assert seen.header("Forwarded") == "for=127.0.0.1;host=fwd-tls.example.com;proto=https"


# -- rewrite-target, header actions, HSTS ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route_path", "target", "requested", "expected"),
    [
        pytest.param("/api", "/", "/api/users?q=1", "/users?q=1", id="slash-strips-the-prefix"),
        pytest.param("/api", "/", "/api", "/", id="slash-prefix-alone"),
        pytest.param("/api", "/v2", "/api/users", "/v2/users", id="other-target-replaces-the-prefix"),
        pytest.param("/api", "/v2/", "/api/", "/v2/", id="trailing-slashes"),
    ],
)
def test_rewrite_target(
    env: Env, route_path: str, target: str, requested: str, expected: str, request: pytest.FixtureRequest
) -> None:
    name = "rw-" + hashlib.md5(request.node.callspec.id.encode()).hexdigest()[:8]
    host = f"{name}.example.com"
    with Backend(echo_path, name=name) as backend:
        service(env.cli, name, 8080, backend.address)
        env.route(name, host, name, path=route_path,
                  annotations={"haproxy.router.openshift.io/rewrite-target": target})  # fmt: skip
        wait_serving(env.router.http, host, path=route_path)
        reply = get(env.router.http, host, requested)
        assert reply.status == 200
        assert backend.received[-1].path == expected
        assert backend.received[-1].header("Host") == host


def test_route_header_actions(env: Env) -> None:
    actions = {
        "request": [
            {"name": "X-Env", "action": {"type": "Set", "set": {"value": "prod"}}},
            {"name": "X-Remove", "action": {"type": "Delete"}},
        ],
        "response": [
            {"name": "X-Frame-Options", "action": {"type": "Set", "set": {"value": "DENY"}}},
            {"name": "Server", "action": {"type": "Delete"}},
        ],
    }
    with Backend(lambda r: response(200, b"ok", "Server: leaky/1.0", "X-Frame-Options: ALLOWALL")) as backend:
        service(env.cli, "actions", 8080, backend.address)
        env.route("actions", "actions.example.com", "actions", headers=actions)
        wait_serving(env.router.http, "actions.example.com")
        with Connection(env.router.http) as conn:
            reply = conn.request("GET", "/", "actions.example.com", [("X-Env", "dev"), ("X-Remove", "1")])
        seen = backend.received[-1]
    assert seen.header_values("X-Env") == ["prod"]  # Set replaces what the client sent
    assert seen.header("X-Remove") is None
    assert reply.header_values("X-Frame-Options") == ["DENY"]
    assert reply.header("Server") is None


def test_hsts_annotation(env: Env) -> None:
    hsts = "max-age=31536000;includeSubDomains;preload"
    with Backend(lambda r: response(200, b"ok", "Strict-Transport-Security: max-age=1")) as backend:
        service(env.cli, "hsts", 8080, backend.address)
        env.route("hsts", "hsts.example.com", "hsts", termination="edge", insecure="Allow",
                  annotations={"haproxy.router.openshift.io/hsts_header": hsts})  # fmt: skip
        secure = wait_serving(env.router.https, "hsts.example.com", tls=True)
        # The backend's own header is replaced by the route's (normalised: `; ` between directives).
        assert secure.header_values("Strict-Transport-Security") == [
            "max-age=31536000; includeSubDomains; preload"
        ]
        # Never on plain HTTP (RFC 6797 §7.2): the backend's header passes unchanged there.
        plain = get(env.router.http, "hsts.example.com")
        assert plain.status == 200
        assert plain.header_values("Strict-Transport-Security") == ["max-age=1"]
        assert backend.received


# -- sticky cookies -----------------------------------------------------------------------------------


def cookie_of(reply_headers: list[str]) -> tuple[str, str, str]:
    assert len(reply_headers) == 1, reply_headers
    pair, _, attributes = reply_headers[0].partition(";")
    name, _, value = pair.partition("=")
    return name, value, attributes


@pytest.fixture
def three(env: Env) -> Iterator[list[Backend]]:
    backends = [Backend(lambda r, i=i: response(200, str(i).encode()), name=f"b{i}") for i in range(3)]
    for backend in backends:
        backend.__enter__()
    try:
        yield backends
    finally:
        for backend in backends:
            backend.stop()


def which(backends: list[Backend], before: list[int]) -> int:
    changed = [i for i, b in enumerate(backends) if len(b.received) != before[i]]
    assert len(changed) == 1, changed
    return changed[0]


def test_sticky_cookie_pins_one_of_three_endpoints(env: Env, three: list[Backend]) -> None:
    service(env.cli, "sticky", 8080, *(b.address for b in three))
    env.route("sticky", "sticky.example.com", "sticky", termination="edge")
    wait_serving(env.router.https, "sticky.example.com", tls=True)
    expected_name = hashlib.md5(b" default:sticky").hexdigest()

    with Connection(env.router.https, tls=True, sni="sticky.example.com") as conn:
        first = conn.request("GET", "/", "sticky.example.com")
        name, value, attributes = cookie_of(first.header_values("Set-Cookie"))
        assert name == expected_name
        assert attributes == " path=/; HttpOnly; Secure; SameSite=None"
        assert first.header("Cache-control") == "private"
        pinned = int(first.body)
        for _ in range(10):
            before = [len(b.received) for b in three]
            again = conn.request("GET", "/", "sticky.example.com", [("Cookie", f"a=1; {name}={value}; b=2")])
            assert int(again.body) == pinned and which(three, before) == pinned
            assert again.header("Set-Cookie") is None  # inserted once only
            seen = three[pinned].received[-1]
            assert seen.header("Cookie") == "a=1; b=2"  # the router's cookie never reaches the backend

        # A stale value falls back to balancing and gets a fresh cookie naming a real endpoint.
        stale = conn.request("GET", "/", "sticky.example.com", [("Cookie", f"{name}=0123456789abcdef")])
        assert stale.status == 200
        _, fresh, _ = cookie_of(stale.header_values("Set-Cookie"))
        assert three[int(stale.body)].received[-1].header("Cookie") is None
        repeat = conn.request("GET", "/", "sticky.example.com", [("Cookie", f"{name}={fresh}")])
        assert repeat.body == stale.body and repeat.header("Set-Cookie") is None


SAME_SITE = "router.openshift.io/cookie-same-site"


@pytest.mark.parametrize(
    ("annotations", "insecure", "expect"),
    [
        pytest.param({"haproxy.router.openshift.io/disable_cookies": "true"}, "", None, id="disable-cookies"),
        pytest.param(
            {"router.openshift.io/cookie_name": "my_cookie"},
            "",
            ("my_cookie", "; Secure; SameSite=None"),
            id="name",
        ),
        pytest.param({SAME_SITE: "Strict"}, "", (None, "; Secure; SameSite=Strict"), id="same-site-strict"),
        pytest.param({SAME_SITE: "Lax"}, "", (None, "; Secure; SameSite=Lax"), id="same-site-lax"),
        pytest.param(
            {SAME_SITE: "Bogus"}, "", (None, "; Secure; SameSite=None"), id="same-site-invalid-default"
        ),
        pytest.param({SAME_SITE: "Strict"}, "Allow", (None, ""), id="insecure-allow-not-secure"),
    ],
)
def test_cookie_annotations(
    env: Env,
    annotations: dict[str, str],
    insecure: str,
    expect: tuple[str | None, str] | None,
    request: pytest.FixtureRequest,
) -> None:
    name = "ck-" + hashlib.md5(request.node.callspec.id.encode()).hexdigest()[:8]
    host = f"{name}.example.com"
    with Backend(echo_path) as backend:
        service(env.cli, name, 8080, backend.address)
        env.route(name, host, name, termination="edge", insecure=insecure, annotations=annotations)
        reply = wait_serving(env.router.https, host, tls=True)
        cookies = reply.header_values("Set-Cookie")
        if expect is None:
            assert cookies == [] and reply.header("Cache-control") is None
            # A client cookie with the would-be name passes through untouched.
            default_name = hashlib.md5(f" default:{name}".encode()).hexdigest()
            get(env.router.https, host, tls=True, headers=[("Cookie", f"{default_name}=x")])
            assert backend.received[-1].header("Cookie") == f"{default_name}=x"
            return
        cookie_name, suffix = expect
        got_name, _, attributes = cookie_of(cookies)
        assert got_name == (cookie_name or hashlib.md5(f" default:{name}".encode()).hexdigest())
        assert attributes == " path=/; HttpOnly" + suffix


# -- back-pressure (hardening.md rule 16) ---------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_stalled(progress: list[int], what: str) -> int:
    """Wait (bounded) until `progress[0]` stops growing for a second; returns where it stopped."""
    wait_until(lambda: progress[0] >= MiB, 30, f"{what}: first the data must flow", interval=0.05)
    last = [-1, 0.0]

    def stalled() -> bool:
        now = time.monotonic()
        if progress[0] != last[0]:
            last[0], last[1] = progress[0], now
            return False
        return now - last[1] >= 1.0

    wait_until(stalled, 30, what, interval=0.1)
    return progress[0]


TOTAL = 128 * MiB
PIECE = b"z" * (64 * 1024)


def test_slow_reading_client_holds_the_backend_back(env: Env, web: tuple[Backend, str]) -> None:
    """The client reads nothing while the backend has 128 MiB to send: the router stops reading the backend
    (memory stays flat), then everything arrives once the client reads."""
    backend, host = web
    pushed = [0]

    def respond(_r: Received) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL
        for _ in range(TOTAL // len(PIECE)):
            pushed[0] += len(PIECE)
            yield PIECE

    backend.respond = respond
    assert env.router.proc is not None
    baseline = rss_bytes(env.router.proc.pid)
    with Connection(env.router.http, timeout=60) as conn:
        conn.send(build_request("GET", "/firehose", host))
        stopped = wait_stalled(pushed, "the backend to be held back")
        assert stopped < 48 * MiB, f"the backend pushed {stopped // MiB} MiB into a client that reads nothing"
        assert rss_bytes(env.router.proc.pid) - baseline < 48 * MiB
        conn.read_until(b"\r\n\r\n")
        received = 0
        while received < TOTAL:
            received += len(conn.read_exactly(min(4 * MiB, TOTAL - received)))
    assert pushed[0] == TOTAL


def test_slow_reading_backend_holds_the_client_back(env: Env) -> None:
    """The backend reads nothing while the client uploads 128 MiB: the router stops reading the client."""
    release = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    got = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                if data.startswith(b"GET"):  # the readiness probe
                    conn.sendall(response(200, b"probe", "Connection: close"))
                    continue
                release.wait(60)  # read nothing more until the test says so
                body = len(data) - data.index(b"\r\n\r\n") - 4
                while body < TOTAL:
                    more = conn.recv(1 << 20)
                    if not more:
                        return
                    body += len(more)
                got[0] = body
                conn.sendall(response(200, b"all here"))
                return

    threading.Thread(target=serve, daemon=True).start()
    service(env.cli, "sink", 8080, f"127.0.0.1:{server.getsockname()[1]}")
    env.route("sink", "sink.example.com", "sink")
    wait_serving(env.router.http, "sink.example.com")
    sent = [0]
    try:
        with Connection(env.router.http, timeout=60) as conn:

            def upload() -> None:
                conn.send(
                    build_request("POST", "/sink", "sink.example.com", [("Content-Length", str(TOTAL))])
                )
                for _ in range(TOTAL // len(PIECE)):
                    conn.send(PIECE)
                    sent[0] += len(PIECE)

            uploader = threading.Thread(target=upload, daemon=True)
            uploader.start()
            stopped = wait_stalled(sent, "the client upload to be held back")
            assert stopped < 48 * MiB, (
                f"the client pushed {stopped // MiB} MiB into a backend that reads nothing"
            )
            release.set()
            uploader.join(60)
            assert sent[0] == TOTAL
            reply = conn.read_response()
            assert reply.status == 200 and reply.body == b"all here"
        assert got[0] == TOTAL
    finally:
        release.set()
        server.close()
