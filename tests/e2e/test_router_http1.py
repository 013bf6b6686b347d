"""HTTP/1.1 framing through the router (hardening.md rules 5-10 and 12): every violation gets 400 (502 for a
backend's response), `Connection: close`, a closed connection, and nothing of it reaches the other side.

One router and one recording backend serve the whole module; each case sends raw bytes and checks both
what the client got and what the backend received (`backend.received`, `backend.bytes_received`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_cli, wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, Received, hello_response
from tests.e2e.support.client import Connection, build_request, get
from tests.e2e.support.router import RouterProcess

HOST = "web.example.com"
TLS_HOST = "secure.example.com"
OTHER_TLS_HOST = "other.example.com"


@dataclass
class Env:
    router: RouterProcess
    backend: Backend
    cli: Cli


def module_cli(tmp: Path) -> Cli:
    """The console script against this module's store; failures raise unless check=False."""
    run = make_cli(tmp / "store.db", tmp)
    return lambda *args, check=True, **kw: run(*args, check=check, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("http1")
    cli = module_cli(tmp)
    with Backend(name="web") as backend:
        router = RouterProcess(tmp / "store.db", tmp / "routers").start()
        try:
            service(cli, "web", 8080, backend.address)
            cli("expose", "service", "web", "--hostname", HOST)
            cli("create", "route", "edge", "secure", "--service", "web", "--hostname", TLS_HOST)
            cli("create", "route", "edge", "other", "--service", "web", "--hostname", OTHER_TLS_HOST)
            wait_serving(router.http, HOST)
            wait_serving(router.https, TLS_HOST, tls=True)
            wait_serving(router.https, OTHER_TLS_HOST, tls=True)
            yield Env(router, backend, cli)
        finally:
            try:
                router.stop()
            except AssertionError:
                router.kill()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.backend.respond = hello_response
    env.backend.received.clear()
    yield
    env.backend.respond = hello_response


def request(
    *headers: str, method: str = "POST", target: str = "/", version: str = "1.1", body: bytes = b""
) -> bytes:
    """A raw request head (CRLF line ends) with the given header lines, then `body` as is."""
    lines = [f"{method} {target} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


H = f"Host: {HOST}"
TE = "Transfer-Encoding: chunked"

# hardening.md rules 5-9: requests the router must refuse before anything reaches a backend.
BAD_REQUESTS = [
    # Rule 5
    pytest.param(request(H, "Content-Length: 5", TE, body=b"0\r\n\r\n"), id="cl-and-te"),
    pytest.param(request(H, TE, "Content-Length: 5", body=b"0\r\n\r\n"), id="te-and-cl"),
    pytest.param(request(H, TE, version="1.0", body=b"0\r\n\r\n"), id="te-in-http10"),
    # Rule 6
    pytest.param(request(H, "Transfer-Encoding: gzip"), id="te-gzip"),
    pytest.param(request(H, "Transfer-Encoding: chunked, gzip"), id="te-last-not-chunked"),
    pytest.param(
        request(H, "Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), id="te-gzip-then-chunked"
    ),
    pytest.param(request(H, "Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), id="te-chunked-twice"),
    pytest.param(request(H, TE, TE, body=b"0\r\n\r\n"), id="te-two-headers"),
    pytest.param(request(H, "Transfer-Encoding: "), id="te-empty"),
    pytest.param(request(H, "Transfer-Encoding: Chunked ", body=b"0\r\n\r\n"), id="te-Chunked-space"),
    pytest.param(request(H, "Transfer-Encoding: xchunked"), id="te-xchunked"),
    pytest.param(request(H, "Transfer-Encoding: chunked;q=1", body=b"0\r\n\r\n"), id="te-parameter"),
    pytest.param(request(H, "Transfer-Encoding : chunked", body=b"0\r\n\r\n"), id="te-space-before-colon"),
    pytest.param(
        request(H, "X-A: 1", "\tTransfer-Encoding: chunked", body=b"0\r\n\r\n"), id="te-tab-before-name"
    ),
    pytest.param(request(H, "Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), id="te-vertical-tab"),
    # Rule 7
    pytest.param(request(H, "Content-Length: +5", body=b"hello"), id="cl-plus"),
    pytest.param(request(H, "Content-Length: -1", body=b"hello"), id="cl-minus"),
    pytest.param(request(H, "Content-Length: 0x5", body=b"hello"), id="cl-hex"),
    pytest.param(request(H, "Content-Length: ", body=b"hello"), id="cl-empty"),
    pytest.param(request(H, "Content-Length: 5 5", body=b"hello"), id="cl-space-inside"),
    pytest.param(request(H, "Content-Length: 5, 6", body=b"hello"), id="cl-list-differing"),
    pytest.param(
        request(H, "Content-Length: 5", "Content-Length: 6", body=b"hello"), id="cl-headers-differing"
    ),
    pytest.param(request(H, "Content-Length: 99999999999999999999999", body=b"hello"), id="cl-overflow"),
    # Rule 8
    pytest.param(request(H, TE, body=b"zz\r\nhello\r\n0\r\n\r\n"), id="chunk-size-not-hex"),
    pytest.param(request(H, TE, body=b"0x5\r\nhello\r\n0\r\n\r\n"), id="chunk-size-0x"),
    pytest.param(request(H, TE, body=b"+5\r\nhello\r\n0\r\n\r\n"), id="chunk-size-sign"),
    pytest.param(request(H, TE, body=b"5 \r\nhello\r\n0\r\n\r\n"), id="chunk-size-space"),
    pytest.param(request(H, TE, body=b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"), id="chunk-size-overflow"),
    pytest.param(request(H, TE, body=b"5\nhello\r\n0\r\n\r\n"), id="chunk-size-bare-lf"),
    pytest.param(request(H, TE, body=b"5\rhello\r\n0\r\n\r\n"), id="chunk-size-bare-cr"),
    pytest.param(request(H, TE, body=b"5\r\nhello\n0\r\n\r\n"), id="chunk-data-bare-lf"),
    pytest.param(request(H, TE, body=b"5\r\nhelloXX0\r\n\r\n"), id="chunk-data-not-crlf"),
    pytest.param(request(H, TE, body=b"5\r\nhello\r\n0\r\n\n"), id="last-chunk-bare-lf"),
    pytest.param(request(H, TE, body=b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), id="chunk-ext-control-char"),
    pytest.param(
        request(H, TE, body=b"5;a=" + b"b" * 30_000 + b"\r\nhello\r\n0\r\n\r\n"), id="chunk-ext-too-long"
    ),
    pytest.param(
        request(H, TE, body=b"5\r\nhello\r\n0\r\nX-T: " + b"a" * 20_000 + b"\r\n\r\n"), id="trailer-too-large"
    ),
    # Rule 9
    pytest.param(request(H, "X-A : 1", method="GET"), id="space-before-colon"),
    pytest.param(request(H, "X-A:\t1", "X-B: 1", " 2", method="GET"), id="obs-fold"),
    pytest.param(request(H, "X-A: 1\x002", method="GET"), id="nul-in-value"),
    pytest.param(request(H, "X-A: 1\r2", method="GET"), id="cr-in-value"),
    pytest.param(request(H, "X-A: 1\n2", method="GET"), id="lf-in-value"),
    pytest.param(request(H, "X-A: 1\x7f2", method="GET"), id="del-in-value"),
    pytest.param(request(H, "X(A): 1", method="GET"), id="name-parenthesis"),
    pytest.param(request(H, 'X"A: 1', method="GET"), id="name-quote"),
    pytest.param(request(H, "X\xffA: 1", method="GET"), id="name-non-ascii"),
    pytest.param(request(" " + H, method="GET"), id="space-before-first-header"),
    pytest.param(request(method="GET"), id="missing-host"),
    pytest.param(request(H, H, method="GET"), id="two-host-headers"),
    pytest.param(request(H, "Host: other.example.com", method="GET"), id="two-different-hosts"),
    pytest.param(request("Host: web.example.com/x", method="GET"), id="host-not-an-authority"),
    pytest.param(request(H, method="GET", target="http://other.example.com/"), id="absolute-form-other-host"),
    pytest.param(f"GET / HTTP/1.1\n{H}\n\n".encode(), id="bare-lf-line-ends"),
    pytest.param(request(H, method="GET", target="/a#frag"), id="fragment-in-target"),
]


@pytest.mark.parametrize("raw", BAD_REQUESTS)
def test_request_framing_violation_is_400_and_nothing_is_forwarded(env: Env, raw: bytes) -> None:
    before = env.backend.bytes_received
    with Connection(env.router.http) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert response.status == 400, response.text
        assert response.header("Connection") == "close"
        assert conn.is_closed()
    assert env.backend.received == []
    assert env.backend.bytes_received == before


def test_framing_violation_over_tls_is_400_too(env: Env) -> None:
    with Connection(env.router.https, tls=True, sni=TLS_HOST) as conn:
        conn.send(request(f"Host: {TLS_HOST}", "Content-Length: 5", TE, body=b"0\r\n\r\n"))
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (400, "close")
        assert conn.is_closed()
    assert env.backend.received == []


def test_bad_chunk_after_the_head_went_out_closes_that_backend_connection(env: Env) -> None:
    """The head and a first chunk are forwarded; a bad chunk then ends the request: 400 to the client, and
    the backend connection that carried the partial request is closed, never reused (rule 5-9 preamble)."""
    backend = env.backend
    closed_before = backend.closed_connections
    before = backend.bytes_received
    with Connection(env.router.http) as conn:
        conn.send(request(H, TE, body=b"5\r\nhello\r\n"))
        wait_until(lambda: backend.bytes_received > before, 5, "the head and first chunk at the backend")
        conn.send(b"zz\r\n")
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (400, "close")
        assert conn.is_closed()
    wait_until(
        lambda: backend.closed_connections > closed_before, 5, "the touched backend connection to close"
    )
    assert backend.received == []


def test_valid_but_unusual_heads_are_reserialised(env: Env) -> None:
    """Rule 10: the backend gets the router's own head, never the client's bytes: canonical
    `name: value` lines, the router's framing, origin-form target, chunk extensions dropped."""
    raw = (
        b"POST http://web.example.com/p?q=1 HTTP/1.1\r\nhost: web.example.com\r\n"
        b"x-lower:   padded value  \r\nTransfer-Encoding:\tchunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with Connection(env.router.http) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert response.status == 200 and response.body == b"Hello"
    seen = env.backend.received[-1]
    assert seen.raw_head.startswith(b"POST /p?q=1 HTTP/1.1\r\n")
    assert b"x-lower: padded value\r\n" in seen.raw_head
    assert b"Transfer-Encoding: chunked\r\n" in seen.raw_head
    assert seen.body == b"hello world"
    assert seen.header("X-Trailer") is None  # trailers are not forwarded
    assert b"ext" not in seen.raw_head


def test_response_head_is_reserialised(env: Env) -> None:
    env.backend.respond = lambda _r: (
        b"HTTP/1.0 200 Fine\r\nx-odd:    spaced   \r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    )
    with Connection(env.router.http) as conn:
        conn.send(build_request("GET", "/", HOST, [("Connection", "close")]))
        data = conn.read_until_closed()
    assert data.startswith(b"HTTP/1.1 200 Fine\r\n")
    assert b"x-odd: spaced\r\n" in data
    assert data.endswith(b"\r\n\r\nok")


# Rule 12: bad framing from the backend. SECRET and X-Leak mark what must never reach the client.
BAD_RESPONSES = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nSECRET\r\n0\r\n\r\n",
        id="cl-and-te",
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nTransfer-Encoding: gzip\r\n\r\nSECRET", id="te-gzip"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
        b"6\r\nSECRET\r\n0\r\n\r\n",
        id="te-chunked-twice",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nTransfer-Encoding: xchunked\r\n\r\nSECRET", id="te-xchunked"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nContent-Length: +6\r\n\r\nSECRET", id="cl-plus"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nContent-Length: 6 6\r\n\r\nSECRET", id="cl-space-inside"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\nSECRET",
        id="cl-differing",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nSECRET\r\n0\r\n\r\n",
        id="chunk-size-not-hex",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nSECRETXX0\r\n\r\n",
        id="chunk-data-not-crlf",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nX-B: 1\r\n 2\r\nContent-Length: 6\r\n\r\nSECRET", id="obs-fold"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nX-B: 1\x002\r\nContent-Length: 6\r\n\r\nSECRET", id="nul-in-value"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nX-B : 1\r\nContent-Length: 6\r\n\r\nSECRET", id="space-before-colon"
    ),
    pytest.param(b"HTTP/1.1 200 OK\nX-Leak: 1\nContent-Length: 6\n\nSECRET", id="bare-lf"),
    pytest.param(b"HTTP/1.1 2OO OK\r\nX-Leak: 1\r\nContent-Length: 6\r\n\r\nSECRET", id="bad-status"),
    pytest.param(b"SECRET / not http at all\r\n\r\n", id="not-http"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\n" + b"X-Many: 1\r\n" * 101 + b"Content-Length: 6\r\n\r\nSECRET",
        id="too-many-headers",
    ),
]


@pytest.mark.parametrize("raw", BAD_RESPONSES)
def test_bad_backend_response_is_502_and_nothing_of_it_reaches_the_client(env: Env, raw: bytes) -> None:
    env.backend.respond = lambda _r: raw
    with Connection(env.router.http) as conn:
        conn.send(build_request("GET", "/", HOST))
        data = conn.read_until_closed()
    assert data.startswith(b"HTTP/1.1 502 "), data[:300]
    assert b"\r\nConnection: close\r\n" in data
    assert b"SECRET" not in data and b"X-Leak" not in data
    assert len(env.backend.received) == 1
    # The backend connection that answered badly is never reused.
    touched = env.backend.received[0].connection
    env.backend.respond = hello_response
    response = get(env.router.http, HOST)
    assert response.status == 200
    assert env.backend.received[-1].connection != touched


# hardening.md rule 4: on a terminated connection, a Host that selects another route than SNI did is 421.
@pytest.mark.parametrize(
    ("sni", "host", "status"),
    [
        pytest.param(TLS_HOST, OTHER_TLS_HOST, 421, id="sni-and-host-name-different-routes"),
        pytest.param("unknown.example.com", TLS_HOST, 421, id="sni-without-route-host-with-route"),
        pytest.param(TLS_HOST, "SECURE.example.com.:443", 200, id="same-route-other-spelling"),
        pytest.param(None, TLS_HOST, 200, id="no-sni"),
    ],
)
def test_sni_and_host_must_select_the_same_route(env: Env, sni: str | None, host: str, status: int) -> None:
    with Connection(env.router.https, tls=True, sni=sni) as conn:
        response = conn.request("GET", "/", host)
        assert response.status == status
        if status == 421:
            assert response.header("Connection") == "close"
            assert conn.is_closed()
            assert env.backend.received == []
        else:
            assert len(env.backend.received) == 1


def test_host_switch_on_a_kept_alive_tls_connection_is_421(env: Env) -> None:
    with Connection(env.router.https, tls=True, sni=TLS_HOST) as conn:
        assert conn.request("GET", "/first", TLS_HOST).status == 200
        response = conn.request("GET", "/second", OTHER_TLS_HOST)
        assert (response.status, response.header("Connection")) == (421, "close")
        assert conn.is_closed()
    assert [seen.path for seen in env.backend.received] == ["/first"]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 6\r\n\r\nSECRET", id="second-response"
        ),
        pytest.param(b"SECRET X-Smuggled: 1\r\n\r\n", id="not-http"),
    ],
)
def test_bytes_after_a_complete_response_are_not_forwarded_and_that_connection_is_dropped(
    env: Env, extra: bytes
) -> None:
    """hardening.md rule 12: a backend that sends more than the response it was asked for (in the same
    packet) has broken HTTP/1.1 framing on that connection. The client gets the one response, never the
    extra bytes (not even as the answer to its next request), and that backend connection is not used
    again (HAProxy, likewise, does not keep a server connection that sent data nobody asked for)."""
    env.backend.respond = lambda _r: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + extra
    with Connection(env.router.http) as conn:
        conn.send(build_request("GET", "/", HOST))
        first = conn.read_response()
        assert first.status == 200 and first.body == b"hello"
        env.backend.respond = hello_response
        conn.send(build_request("GET", "/next", HOST))
        second = conn.read_response()
    assert second.status == 200 and second.header("X-Smuggled") is None, (second.status, second.headers)
    assert b"SECRET" not in second.body
    assert [r.path for r in env.backend.received] == ["/", "/next"]
    assert env.backend.received[1].connection != env.backend.received[0].connection


def test_extra_response_is_not_taken_for_the_answer_to_a_pipelined_request(env: Env) -> None:
    """As above, with the client's next request already waiting (pipelined): the router must not send it
    on the connection whose read it is still parsing, where the backend's extra response would then be
    taken for its answer."""

    def respond(request: Received) -> bytes:
        if request.path == "/":
            return (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 6\r\n\r\nSECRET"
            )
        return hello_response(request)

    env.backend.respond = respond
    with Connection(env.router.http) as conn:
        conn.send(build_request("GET", "/", HOST) + build_request("GET", "/next", HOST))
        first = conn.read_response()
        second = conn.read_response()
    assert first.status == 200 and first.body == b"hello"
    assert second.status == 200 and second.header("X-Smuggled") is None, (second.status, second.headers)
    assert b"SECRET" not in second.body
    assert [r.path for r in env.backend.received] == ["/", "/next"]
    assert env.backend.received[1].connection != env.backend.received[0].connection
