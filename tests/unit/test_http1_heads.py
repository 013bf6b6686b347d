"""Edge cases of head parsing and serialisation that the compiled fast paths of http1.py, http1_fields.py
and headers.py must keep (they classify header names without lowercasing every one, cache Host checks,
reuse the received pairs and the router's own forwarding headers). The suite runs these against whichever
build is in use."""

from __future__ import annotations

import pytest

from shiftroute.engine import headers as hdr
from shiftroute.protocol import http1, http1_fields
from shiftroute.protocol.http1 import HttpError, parse_request_head, parse_response_head
from shiftroute.routing.table import Backend, Server

NAMES = frozenset({b"host", b"te", b"connection", b"keep-alive", b"transfer-encoding", b"sec-websocket-key"})
TABLE = http1_fields.names_by_length(NAMES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"Host", b"host"),
        (b"HOST", b"host"),
        (b"hOsT", b"host"),
        (b"TE", b"te"),
        (b"Connection", b"connection"),
        (b"Keep-Alive", b"keep-alive"),  # same length as connection, told apart by the first byte
        (b"Sec-WebSocket-Key", b"sec-websocket-key"),  # same length as transfer-encoding
        (b"Hosx", None),
        (b"(ost", None),  # `(` | 0x20 is not `h`
        (b"Ho\xd3t", None),  # 0xd3 | 0x20 = 0xf3: no ASCII-only lowering turns it into `s`
        (b"Hos\x00", None),
        (b"", None),
        (b"h", None),
        (b"x" * 200, None),
    ],
)
def test_special_name(name: bytes, expected: bytes | None) -> None:
    assert http1_fields.special_name(name, TABLE) == expected


def test_names_by_length() -> None:
    table = http1_fields.names_by_length(frozenset({b"ab", b"cd", b"efg"}))
    assert table == ((), (), (b"ab", b"cd"), (b"efg",))


def request(raw: list[tuple[bytes, bytes]], url: bytes = b"/", version: str = "1.1") -> http1.RequestHead:
    return parse_request_head(b"GET", url, version, raw)


def test_connection_names_headers_case_insensitively_but_not_protected_ones() -> None:
    head = request(
        [
            (b"Host", b"a.test"),
            (b"Connection", b"X-Foo, HOST, cookie,, close "),
            (b"x-foo", b"1"),
            (b"Cookie", b"c=1"),
            (b"Close", b"weird"),  # a header named like the token is removed like any other
            (b"X-Bar", b"2"),
        ]
    )
    assert head.headers == [(b"Host", b"a.test"), (b"Cookie", b"c=1"), (b"X-Bar", b"2")]
    assert not head.keep_alive


def test_connection_keep_alive_filters_nothing() -> None:
    raw = [(b"Host", b"a.test"), (b"Connection", b"Keep-Alive"), (b"Keep-Alive", b"5"), (b"X-A", b"1")]
    head = request(raw, version="1.0")
    assert head.headers == [(b"Host", b"a.test"), (b"X-A", b"1")]
    assert head.keep_alive


def test_connection_can_name_the_websocket_key() -> None:
    head = request(
        [(b"Host", b"a.test"), (b"Connection", b"sec-websocket-key"), (b"Sec-WebSocket-Key", b"k")]
    )
    assert head.headers == [(b"Host", b"a.test")]


def test_values_lose_trailing_whitespace_and_pairs_stay_tuples() -> None:
    raw: list[tuple[bytes, bytes]] = [(b"Host", b"a.test \t"), (b"X-A", b"v \t"), (b"X-B", b"")]
    head = request(raw + [[b"X-C", b"w"]])  # type: ignore[list-item]
    assert head.headers == [(b"Host", b"a.test"), (b"X-A", b"v"), (b"X-B", b""), (b"X-C", b"w")]
    assert all(type(pair) is tuple for pair in head.headers)
    assert head.host_header == b"a.test"


def test_transfer_encoding_is_compared_as_sent() -> None:
    with pytest.raises(HttpError, match="exactly `chunked`"):
        request([(b"Host", b"a.test"), (b"transfer-ENCODING", b"chunked ")])
    assert request([(b"Host", b"a.test"), (b"Transfer-Encoding", b"Chunked")]).body == http1.CHUNKED


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (b"/a#b", "fragment"),
        (b"http://a.test/#", "fragment"),
        (b"ftp://a.test/", "origin-form or absolute-form"),
        (b"HTTP://other.test/", "different host"),
    ],
)
def test_targets_refused(url: bytes, error: str) -> None:
    with pytest.raises(HttpError, match=error):
        request([(b"Host", b"a.test")], url=url)


def test_host_check_is_the_same_when_cached() -> None:
    for _ in range(2):  # the second time from the caches
        with pytest.raises(HttpError, match="not a valid authority"):
            request([(b"Host", b"a b.test")])
        assert request([(b"Host", b"A.Test.:8080")]).host == "a.test"
    long_host = b"a" * 400 + b".test"  # not cached, same result
    for _ in range(2):
        assert request([(b"Host", long_host)]).host == long_host.decode()


def test_response_hop_by_hop_and_named_headers() -> None:
    raw = [
        (b"CONNECTION", b"close, X-Drop, sec-websocket-accept"),
        (b"x-drop", b"1"),
        (b"Sec-WebSocket-Accept", b" acc "),
        (b"Keep-Alive", b"timeout=5"),
        (b"Content-Length", b"3"),
        (b"Server", b"s \t"),
    ]
    head = parse_response_head(200, b"OK", raw, b"GET")
    assert head.headers == [(b"Server", b"s")]
    assert (head.body, head.content_length, head.keep_alive) == (http1.LENGTH, 3, False)
    head = parse_response_head(304, b"Not Modified", raw[3:], b"GET")
    assert head.headers == [(b"Server", b"s"), (b"Content-Length", b"3")]  # passed on, no body


def test_status_line_start() -> None:
    assert http1.status_line_start(200) == b"HTTP/1.1 200 "
    assert http1.status_line_start(999) == b"HTTP/1.1 999 "
    assert http1.status_line_start(True) == b"HTTP/1.1 1 "  # formatted as before for a non-int


def test_serialize() -> None:
    pairs = [(b"A", b"1"), (b"B", b"")]
    assert http1.serialize_head(b"GET / HTTP/1.1", pairs) == b"GET / HTTP/1.1\r\nA: 1\r\nB: \r\n\r\n"
    assert http1.serialize_head(b"X", [], [(b"C", b"3")]) == b"X\r\nC: 3\r\n\r\n"
    assert http1.serialize_pieces([b"X", b"Y"], pairs, []) == b"XY\r\nA: 1\r\nB: \r\n\r\n"


def backend(policy: str) -> Backend:
    """A real compiled route (the compiled build accepts nothing else): cookie `R`, no rewrites or actions."""
    return Backend(
        namespace="ns",
        name="web",
        host="a.test",
        wildcard=False,
        path="",
        termination="edge",
        insecure_policy="None",
        servers=(),
        balance="roundrobin",
        cookie_name="R",
        cookie_suffix=b"",
        servers_by_cookie={},
        backend_context=None,
        verify_service_hostname=False,
        serving_context=None,
        forwarded_policy=policy,
    )


def test_upstream_head_forwarding_headers_follow_the_host() -> None:
    server = Server("s", "c", "10.0.0.1", 80, "svc", 1.0)
    client = hdr.ClientInfo("::1", 443, True)
    for host in (b"a.test", b"a.test", b"b.test"):  # the connection's headers are kept until the host changes
        head = request([(b"Host", host), (b"X-Forwarded-Proto", b"http"), (b"Cookie", b"x=1; R=s")])
        sent = hdr.upstream_head(head, backend("if-none"), server, client)
        assert sent == (
            b"GET / HTTP/1.1\r\nHost: %b\r\nX-Forwarded-Proto: http\r\nCookie: x=1\r\n"
            b'X-Forwarded-Host: %b\r\nX-Forwarded-Port: 443\r\nForwarded: for="[::1]";host=%b;proto=https\r\n'
            b"X-Forwarded-For: ::1\r\n\r\n" % (host, host, host)
        )


def test_parsed_heads_set_every_attribute() -> None:
    """parse_*_head make the heads without calling __init__: each attribute must still be set (an unset
    one raises AttributeError in the pure-Python build)."""
    head = request([(b"Host", b"a.test"), (b"Content-Length", b"2")], url=b"/p?q")
    assert {slot: getattr(head, slot) for slot in http1.RequestHead.__slots__} == {
        "body": http1.LENGTH,
        "content_length": 2,
        "expect_continue": False,
        "headers": [(b"Host", b"a.test")],
        "host": "a.test",
        "host_header": b"a.test",
        "keep_alive": True,
        "method": b"GET",
        "path": b"/p",
        "query": b"?q",
        "upgrade": b"",
        "version": b"1.1",
        "websocket_key": None,
    }
    response = parse_response_head(200, b"OK", [(b"Transfer-Encoding", b"chunked")], b"GET")
    assert {slot: getattr(response, slot) for slot in http1.ResponseHead.__slots__} == {
        "body": http1.CHUNKED,
        "content_length": 0,
        "headers": [],
        "keep_alive": True,
        "reason": b"OK",
        "status": 200,
        "upgrade": b"",
        "websocket_accept": None,
    }
