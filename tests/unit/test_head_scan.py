"""The request reader's shortcut (protocol/head_scan.pxd): compiled, a plain head that arrives whole is read
without llhttp. It must read only heads llhttp accepts, exactly as llhttp reads them (method, target,
version, fields, where the request ends), and leave everything else to llhttp.

Checked here against llhttp itself (httptools) on generated heads and on random mutations of them: every
head the scanner reads, llhttp must read the same way."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import httptools
import pytest

from shiftroute import accel
from shiftroute.engine import request_reader
from shiftroute.engine.backend_side import scan_response
from shiftroute.engine.context import Limits
from shiftroute.engine.exchange import Exchange
from shiftroute.engine.request_reader import Refused, RequestReader, scan_request_head
from shiftroute.routing.table import TableHolder

LIMIT = 32 * 1024
PLAIN = (
    b"GET /index.html?a=1&b=%20 HTTP/1.1\r\n"
    b"Host: app.example\r\n"
    b"User-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Spaces:  padded value \t\r\n"
    b"\r\n"
)


def compiled() -> bool:
    return (request_reader.__file__ or "").endswith(accel._EXTENSION)


@dataclass
class Llhttp:
    """What llhttp (through httptools) makes of some bytes."""

    url: bytes = b""
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete_at: int | None = None
    fed: int = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_message_complete(self) -> None:
        self.complete_at = self.fed


def llhttp_reads(data: bytes) -> tuple[Llhttp, httptools.HttpRequestParser] | None:
    """llhttp's reading of data, byte by byte up to its first complete request; None if it refuses it."""
    seen = Llhttp()
    parser = httptools.HttpRequestParser(seen)
    try:
        for i in range(len(data)):
            seen.fed = i + 1
            parser.feed_data(data[i : i + 1])
            if seen.complete_at is not None:
                return seen, parser
    except httptools.HttpParserError:
        return None
    return seen, parser


def check_against_llhttp(data: bytes) -> bool:
    """Whether the scanner read `data`; if it did, llhttp must have read it identically."""
    scanned = scan_request_head(data, LIMIT)
    if scanned is None:
        return False
    end, method, target, fields = scanned
    llhttp = llhttp_reads(data)
    assert llhttp is not None, f"llhttp refuses a head the scanner read: {data!r}"
    seen, parser = llhttp
    assert seen.complete_at == end, f"the request ends elsewhere for llhttp: {data!r}"
    assert parser.get_method() == method and seen.url == target, data
    assert parser.get_http_version() == "1.1" and parser.should_keep_alive(), data
    assert seen.fields == fields, data
    return True


def test_the_shortcut_is_compiled_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert compiled(), "CI builds the compiled modules (test_accel.py)"
    # From the sources the scanner reads nothing: every head goes to llhttp.
    assert (scan_request_head(PLAIN, LIMIT) is not None) is compiled()


# The tests below hold in both builds. Compiled (always in CI, test above), they compare the C scanner with
# llhttp; from the sources, head_scan.py reads nothing, so they check that every head is llhttp's.
READS = compiled()


def test_plain_heads_are_read_as_llhttp_reads_them() -> None:
    assert check_against_llhttp(PLAIN) is READS
    scanned = scan_request_head(PLAIN + b"GET / HTTP/1.1\r\n", LIMIT)
    if READS:
        end, method, target, fields = scanned or (0, b"", b"", [])
        assert (end, method, target) == (len(PLAIN), b"GET", b"/index.html?a=1&b=%20")
        assert fields[-1] == (b"X-Spaces", b"padded value \t")  # as llhttp: leading OWS gone, trailing kept
    else:
        assert scanned is None
    for method in (b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"):
        assert check_against_llhttp(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n") is READS


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",  # framing: llhttp's
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 5\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",  # llhttp's keep-alive state
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",  # HTTP/1.0: its keep-alive rules are llhttp's
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute form
        b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",  # bare CR
        b"GET / HTTP/1.1\r\nX-Empty:\r\nHost: a\r\n\r\n",  # empty value
        b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",  # obs-text
        b"GET / HTTP/1.1\r\nHost: a\r\n",  # incomplete
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # a leading empty line
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_anything_else_is_left_to_llhttp(head: bytes) -> None:
    assert scan_request_head(head, LIMIT) is None


def test_limits_leave_the_head_to_llhttp() -> None:
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
    assert scan_request_head(many, LIMIT) is None  # more than MAX_HEADERS: llhttp's path refuses it (431)
    assert scan_request_head(PLAIN, len(PLAIN) - 1) is None  # over the head limit
    assert (scan_request_head(PLAIN, len(PLAIN)) is not None) is READS


def _generated(rng: random.Random) -> bytes:
    """A head built from likely and unlikely pieces, then sometimes mutated byte-wise."""
    method = rng.choice([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"get", b"TRACE"])
    odd = rng.random() < 0.3  # then a few random bytes join each alphabet below
    target_bytes = b"/abcXYZ019-._~!$&'()*+,;=:@/?%" + bytes(rng.randrange(256) for _ in range(3 * odd))
    target = b"/" + bytes(rng.choice(target_bytes) for _ in range(rng.randrange(12)))
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"])
    lines = [method + b" " + target + b" " + version]
    name_bytes = b"abcXYZ-019!#$%&'*+.^_`|~" + bytes(rng.randrange(256) for _ in range(2 * odd))
    value_bytes = b'abc XYZ\t019;=,/"()' + bytes(rng.randrange(256) for _ in range(2 * odd))
    for _ in range(rng.randrange(6)):
        name = bytes(rng.choice(name_bytes) for _ in range(1 + rng.randrange(8)))
        name = rng.choice([name, b"Host", b"connection", b"Content-Length", b"upgrade", b"Keep-Alive"])
        value = bytes(rng.choice(value_bytes) for _ in range(rng.randrange(10)))
        value = rng.choice([value, b"keep-alive", b"close", b"0"])
        lines.append(name + b":" + rng.choice([b"", b" ", b"\t", b"  "]) + value)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if rng.random() < 0.4:
        data = bytearray(head)
        for _ in range(1 + rng.randrange(3)):
            i = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[i] = rng.randrange(256)
            elif action == 1:
                data.insert(i, rng.choice(b"\r\n \t:\x00\x7f\x80"))
            else:
                del data[i]
        head = bytes(data)
    return head


def test_generated_and_mutated_heads_agree_with_llhttp() -> None:
    rng = random.Random(20261205)
    read = sum(check_against_llhttp(_generated(rng)) for _ in range(30_000))
    # Enough of them are plain for the comparison to mean something (3 346 with this seed).
    assert read > 3_000 if READS else read == 0


class Sink:
    closed = False

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes, bool]] = []

    def request_started(self, ex: Exchange) -> None:
        self.events.append(("started", ex.head.path, ex.body_done))

    def request_body(self, ex: Exchange, data: bytes) -> None:
        if self.events and self.events[-1][0] == "body":  # a body split across reads: one event
            data = self.events.pop()[1] + data
        self.events.append(("body", data, ex.body_done))

    def request_done(self, ex: Exchange) -> None:
        self.events.append(("done", ex.head.path, ex.body_done))


def test_the_reader_delivers_the_same_requests_either_way() -> None:
    # Pipelined: two plain heads (the shortcut, when compiled), a chunked request (llhttp), a plain head;
    # split in two at every 7th byte, so that heads arrive whole (the shortcut) and in parts (llhttp).
    stream = (
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /four HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    expected = [  # (event, path or body, body_done then: true from the start when there is no body)
        ("started", b"/one", True),
        ("done", b"/one", True),
        ("started", b"/two", True),
        ("done", b"/two", True),
        ("started", b"/three", False),
        ("body", b"abc", False),
        ("done", b"/three", True),
        ("started", b"/four", True),
        ("done", b"/four", True),
    ]
    for split in range(0, len(stream), 7):
        sink = Sink()
        reader = RequestReader(sink, Limits(), TableHolder())
        for piece in (stream[:split], stream[split:]):
            if piece:
                assert reader.feed(piece, expecting_head=reader.parsing is None) is None
        assert sink.events == expected, split


def test_a_plain_head_the_router_refuses_is_refused_either_way() -> None:
    # Read by the shortcut when compiled, then checked by parse_request_head like any head (rule 9).
    reader = RequestReader(Sink(), Limits(), TableHolder())
    assert reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", expecting_head=True) == Refused(
        400, "several Host headers"
    )


# -- responses (BackendSide.upstream_data's shortcut) ------------------------------------------------------


@dataclass
class LlhttpResponse:
    reason: bytes = b""
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete_at: int | None = None
    keep_alive: bool = False  # as llhttp says when the response ends (it forgets afterwards)
    fed: int = 0
    parser: httptools.HttpResponseParser | None = None

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        if self.complete_at is None and self.parser is not None:
            self.complete_at = self.fed
            self.keep_alive = self.parser.should_keep_alive()


def check_response_against_llhttp(data: bytes) -> bool:
    """Whether the scanner read `data` as one response; if it did, llhttp must read the same, ending there."""
    scanned = scan_response(data)
    if scanned is None:
        return False
    status, reason, fields, body = scanned
    seen = LlhttpResponse()
    parser = seen.parser = httptools.HttpResponseParser(seen)
    try:
        for i in range(len(data)):
            seen.fed = i + 1
            parser.feed_data(data[i : i + 1])
    except httptools.HttpParserError as exc:
        raise AssertionError(f"llhttp refuses a response the scanner read ({exc}): {data!r}") from None
    assert seen.complete_at == len(data), f"the response ends elsewhere for llhttp: {data!r}"
    assert (parser.get_status_code(), seen.reason, seen.fields, seen.body) == (
        status,
        reason,
        fields,
        body,
    ), data
    assert parser.get_http_version() == "1.1" and seen.keep_alive, data
    return True


PLAIN_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
    b"Connection: keep-alive\r\n\r\nHello\n"
)


def test_plain_responses_are_read_as_llhttp_reads_them() -> None:
    assert check_response_against_llhttp(PLAIN_RESPONSE) is READS
    assert check_response_against_llhttp(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") is READS
    assert (
        check_response_against_llhttp(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nbad")
        is READS
    )


@pytest.mark.parametrize(
    "data",
    [
        PLAIN_RESPONSE[:-1],  # the body not all there
        PLAIN_RESPONSE + b"H",  # more than the response (rule 12)
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",  # no length: until close
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",  # no reason
        b"HTTP/1.1 200  OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_any_other_response_is_left_to_llhttp(data: bytes) -> None:
    assert scan_response(data) is None


def _generated_response(rng: random.Random) -> bytes:
    status = rng.choice(
        [b"200"] * 6 + [b"201", b"204", b"301", b"304", b"404", b"503", b"100", b"099", b"2x0"]
    )
    reason = rng.choice([b"OK"] * 4 + [b"Not Found", b"", b" OK", b"OK ", b"Whatever\tIt Is"])
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    lines = [rng.choice([b"HTTP/1.1 "] * 8 + [b"HTTP/1.0 ", b"HTTP/1.1  "]) + status + b" " + reason]
    names = [
        b"Server",
        b"Content-Type",
        b"Set-Cookie",
        b"Connection",
        b"X-A b",
        b"Upgrade",
        b"content-length",
    ]
    for _ in range(rng.randrange(5)):
        name = rng.choice(names)
        value = rng.choice([b"nginx", b"text/plain; charset=utf-8", b"keep-alive", b"close", b"a=b; Path=/"])
        lines.append(name + b":" + rng.choice([b" ", b"", b"\t"]) + value)
    if rng.random() < 0.9:
        length = rng.choice([b"%d" % len(body)] * 8 + [b"%d" % (len(body) + 1), b"-1", b"1 1", b"0x1"])
        lines.insert(rng.randrange(1, len(lines) + 1), b"Content-Length: " + length)
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    if rng.random() < 0.3:
        mutated = bytearray(data)
        i = rng.randrange(len(mutated))
        mutated[i] = rng.choice(b"\r\n \t:\x00\x7f\x80A0")
        data = bytes(mutated)
    return data


def test_generated_and_mutated_responses_agree_with_llhttp() -> None:
    rng = random.Random(20261205)
    read = sum(check_response_against_llhttp(_generated_response(rng)) for _ in range(30_000))
    # Enough read for the comparison to mean something (1 757 with this seed).
    assert read > 1_500 if READS else read == 0


@pytest.mark.parametrize("together", [True, False], ids=["one-read", "two-reads"])
@pytest.mark.parametrize(
    "first",
    [
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",  # llhttp's rule, not the router's
        b"GET /a HTTP/1.0\r\nHost: a\r\n\r\n",
    ],
    ids=["connection-close", "proxy-connection-close", "http-1.0"],
)
def test_after_a_request_that_closes_llhttp_reads_what_follows(first: bytes, together: bool) -> None:
    # llhttp refuses bytes after a request it takes as closing; the shortcut must not read them instead.
    second = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    sink = Sink()
    reader = RequestReader(sink, Limits(), TableHolder())
    if together:
        outcome = reader.feed(first + second, expecting_head=True)
    else:
        assert reader.feed(first, expecting_head=True) is None
        outcome = reader.feed(second, expecting_head=True)
    assert isinstance(outcome, Refused) and outcome.status == 400
    assert sink.events == [("started", b"/a", True), ("done", b"/a", True)]


def test_a_head_over_the_readers_measure_is_refused_either_way() -> None:
    # Fields written without a space after the colon: the wire has name + value + 3 bytes per field, the
    # reader's measure (rule 14) name + value + 4. At a limit between the two, llhttp's path refuses (431):
    # the shortcut leaves such a head to it.
    head = b"GET / HTTP/1.1\r\nHost:a\r\n" + b"".join(b"X%d:v\r\n" % i for i in range(60)) + b"\r\n"
    limit = len(head) + 8  # at least the bytes on the wire, below the reader's measure (44 more)
    assert scan_request_head(head, limit) is None
    reader = RequestReader(Sink(), Limits(max_head_bytes=limit), TableHolder())
    outcome = reader.feed(head, expecting_head=True)
    assert isinstance(outcome, Refused) and outcome.status == 431
