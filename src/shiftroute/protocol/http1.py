# cython: annotation_typing=False
# (read when setup.py compiles this module: see http1.pxd)
"""HTTP/1.1 framing rules (RFC 9112) on top of httptools' parser, sans-IO.

httptools (llhttp, strict mode) already refuses most malformed messages: Content-Length with
Transfer-Encoding, bad Content-Length digits or duplicates, bad chunk sizes and chunk-extension bytes, bare
CR/LF, obs-fold, whitespace before the colon, bad header-name bytes (hardening.md rules 5-9). This module
adds what llhttp lets through or cannot know, and re-serialises every head the router forwards (rule 10):
it never forwards raw client bytes of a head.
"""

from __future__ import annotations

from shiftroute.protocol import head_bytes
from shiftroute.protocol.http1_fields import (
    add_tokens,
    drop_named,
    kept,
    names_by_length,
    normalize_host,
    special_name,
    trim,
    valid_host,
)

NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3  # responses only (RFC 9112 §6.3 rule 8)

MAX_HEADERS = 100  # hardening.md rule 14

# RFC 9110 §7.6.1 and hardening.md rule 11: removed before the router adds its own headers.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"upgrade",
        b"transfer-encoding",
        b"trailer",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# A Connection token may never remove these: framing, Host, and what the router itself sets.
PROTECTED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-proto",
        b"forwarded",
        b"cookie",
        b"set-cookie",
    }
)


class HttpError(Exception):
    """A request the router refuses; `status` is what the client gets (then the connection closes)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """A checked request head. (A plain class, not a dataclass: compiled, its __init__ is C code, where a
    dataclass's generated __init__ would stay interpreted; see http1.pxd.)"""

    __slots__ = (
        "body",
        "content_length",
        "expect_continue",
        "headers",
        "host",
        "host_header",
        "keep_alive",
        "method",
        "path",
        "query",
        "upgrade",
        "version",
        "websocket_key",
    )

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        version: bytes,
        host: str,
        host_header: bytes,
        headers: list[tuple[bytes, bytes]],
        body: int = NO_BODY,
        content_length: int = 0,
        keep_alive: bool = True,
        expect_continue: bool = False,
        websocket_key: bytes | None = None,
        upgrade: bytes = b"",
    ) -> None:
        self.method = method
        self.path = path  # origin-form target without the query, as routed and forwarded
        self.query = query  # including the leading `?`, or b""
        self.version = version  # b"1.0" | b"1.1"
        self.host = host  # lowercase, no port, no trailing dot: what routing compares
        self.host_header = host_header  # the Host value as received (forwarded unchanged)
        self.headers = headers  # end-to-end headers, original order and case
        self.body = body
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.websocket_key = websocket_key  # set for a WebSocket upgrade (rule 17)
        self.upgrade = upgrade  # the Upgrade value the client asked for

    @property
    def idempotent(self) -> bool:
        # RFC 9110 §9.2.2; with no body, a request that never reached the application may be retried.
        return (
            self.method in (b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE") and self.body == NO_BODY
        )


class ResponseHead:
    """A checked response head (a plain class for the same reason as RequestHead)."""

    __slots__ = (
        "body",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "upgrade",
        "websocket_accept",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        upgrade: bytes = b"",
        websocket_accept: bytes | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = NO_BODY
        self.content_length = 0
        self.keep_alive = True
        self.upgrade = upgrade
        self.websocket_accept = websocket_accept


def _target(method: bytes, url: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(path, query, authority of an absolute-form target or None). RFC 9112 §3.2."""
    if url.startswith(b"/"):
        authority = None
        rest = url
    elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
        after = url.split(b"://", 1)[1]
        slash = after.find(b"/")
        authority, rest = (after, b"/") if slash == -1 else (after[:slash], after[slash:])
        question = authority.find(b"?")
        if question != -1:
            authority, rest = authority[:question], b"/" + authority[question:]
    elif url == b"*" and method == b"OPTIONS":
        return b"*", b"", None
    else:
        raise HttpError(400, "request target is not origin-form or absolute-form")
    # find, not `in`: `bytes in bytes` first tries the needle as an int and formats a TypeError it then
    # discards (CPython 3.11), most of the cost of this function.
    if rest.find(b"#") != -1:
        raise HttpError(400, "request target contains a fragment")
    question = rest.find(b"?")
    if question == -1:
        return rest, b"", authority
    return rest[:question], rest[question:], authority


# Request header names that take a branch; every other name is copied as it is.
_REQUEST_SPECIAL = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"upgrade",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"proxy",
        b"sec-websocket-key",
        b"sec-websocket-version",
    }
)
_REQUEST_BY_LENGTH = names_by_length(_REQUEST_SPECIAL)
# Connection tokens that remove nothing: protected names, and special names never forwarded anyway (only
# Host and the WebSocket key and version are), so that the usual `Connection: keep-alive` filters nothing.
_REQUEST_UNNAMED = PROTECTED | (_REQUEST_SPECIAL - {b"host", b"sec-websocket-key", b"sec-websocket-version"})


def parse_request_head(
    method: bytes, url: bytes, version: str, raw_headers: list[tuple[bytes, bytes]]
) -> RequestHead:
    """Check a parsed request head against hardening.md rules 5-9 and 11; raise HttpError if it breaks one."""
    if version not in ("1.1", "1.0"):
        raise HttpError(505, f"HTTP version {version} is not supported")
    if method == b"CONNECT":
        raise HttpError(405, "CONNECT is not supported by this router")
    if len(raw_headers) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    http11 = version == "1.1"
    hosts: list[bytes] = []
    te_values: list[bytes] = []
    content_length: bytes | None = None
    connection_tokens: list[bytes] = []
    expect: bytes | None = None
    upgrade = b""
    ws_key: bytes | None = None
    ws_version: bytes | None = None
    headers: list[tuple[bytes, bytes]] = []
    for item in raw_headers:
        name, value = item
        lower = special_name(name, _REQUEST_BY_LENGTH)
        if lower is None:
            headers.append(kept(item, name, value))
            continue
        if lower == b"transfer-encoding":
            te_values.append(value)  # as sent: `chunked ` (trailing space) is a spelling variant (rule 6)
            continue
        value = trim(value)
        if lower == b"host":
            hosts.append(value)
            headers.append((name, value))
        elif lower == b"content-length":
            content_length = value
        elif lower == b"connection":
            add_tokens(value, connection_tokens)
        elif lower == b"expect":
            expect = value.strip().lower()
        elif lower == b"upgrade":
            upgrade = value.strip()
        elif lower == b"sec-websocket-key":
            ws_key = value.strip()
            headers.append((name, value))
        elif lower == b"sec-websocket-version":
            ws_version = value.strip()
            headers.append((name, value))
        # else: hop-by-hop (rule 11), or `Proxy`, stripped against httpoxy (CVE-2016-5385).

    # Rule 5 and 6: Transfer-Encoding only in HTTP/1.1, exactly one coding, exactly `chunked`.
    body = NO_BODY
    length = 0
    if te_values:
        if not http11:
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(te_values) > 1 or te_values[0].lower() != b"chunked":
            raise HttpError(400, "Transfer-Encoding must be exactly `chunked`")
        body = CHUNKED
    elif content_length is not None:
        # llhttp already refused non-digits, signs, lists and duplicates (rule 7).
        if not content_length.isdigit() or len(content_length) > 18:
            raise HttpError(400, "Content-Length is not a plain decimal number")
        length = int(content_length)
        body = LENGTH if length else NO_BODY

    # Rule 9: Host.
    if len(hosts) > 1:
        raise HttpError(400, "several Host headers")
    if http11 and not hosts:
        raise HttpError(400, "missing Host header (required in HTTP/1.1)")
    host_header = hosts[0].strip() if hosts else b""
    if host_header and not valid_host(host_header):
        raise HttpError(400, "Host header is not a valid authority")
    path, query, authority = _target(method, url)
    if authority is not None:
        if host_header and authority.lower() != host_header.lower():
            raise HttpError(400, "absolute-form target names a different host than the Host header")
        if not host_header:
            host_header = authority

    # Rule 11: drop what Connection names, except protected headers.
    if connection_tokens:
        named = {t for t in connection_tokens if t not in _REQUEST_UNNAMED}
        if named:
            headers = drop_named(headers, named)

    if expect is not None and expect != b"100-continue":
        raise HttpError(417, "only `Expect: 100-continue` is supported")
    keep_alive = b"close" not in connection_tokens if http11 else b"keep-alive" in connection_tokens

    websocket_key = None
    if upgrade and b"upgrade" in connection_tokens and upgrade.lower() == b"websocket":
        # Rule 17: a WebSocket upgrade needs a key and version 13 (RFC 6455 §4.1).
        if not ws_key or ws_version != b"13" or method != b"GET":
            raise HttpError(
                400, "WebSocket upgrade needs GET, Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
            )
        websocket_key = ws_key

    # Made without calling the class: compiled, no argument tuple and no __init__ argument parsing, only the
    # struct written. Every attribute of RequestHead.__init__ is set here.
    head = RequestHead.__new__(RequestHead)
    head.method = method
    head.path = path
    head.query = query
    head.version = b"1.1" if http11 else b"1.0"
    head.host = normalize_host(host_header)
    head.host_header = host_header
    head.headers = headers
    head.body = body
    head.content_length = length
    head.keep_alive = keep_alive
    head.expect_continue = expect == b"100-continue" and body != NO_BODY
    head.websocket_key = websocket_key
    head.upgrade = upgrade if websocket_key else b""
    return head


_RESPONSE_HOP = frozenset({b"keep-alive", b"proxy-connection", b"te", b"trailer"})
_RESPONSE_SPECIAL = _RESPONSE_HOP | {
    b"transfer-encoding",
    b"content-length",
    b"connection",
    b"upgrade",
    b"sec-websocket-accept",
}
_RESPONSE_BY_LENGTH = names_by_length(_RESPONSE_SPECIAL)
# As _REQUEST_UNNAMED: only Sec-WebSocket-Accept among the special names is forwarded; close and
# keep-alive are the connection's own options.
_RESPONSE_UNNAMED = PROTECTED | {b"close", b"keep-alive"} | (_RESPONSE_SPECIAL - {b"sec-websocket-accept"})


def parse_response_head(
    status: int, reason: bytes, raw_headers: list[tuple[bytes, bytes]], request_method: bytes
) -> ResponseHead:
    """Check a backend's response head (rule 12: bad framing is a 502, nothing of it is forwarded).

    One pass on the hot path: ordinary headers are copied as they are; only the few framing and
    hop-by-hop names take a branch."""
    if len(raw_headers) > MAX_HEADERS:
        raise HttpError(502, f"backend sent more than {MAX_HEADERS} header fields")
    te_values: list[bytes] = []
    content_length: tuple[bytes, bytes] | None = None
    connection_tokens: list[bytes] = []
    upgrade = b""
    accept: bytes | None = None
    headers: list[tuple[bytes, bytes]] = []
    for item in raw_headers:
        name, value = item
        lower = special_name(name, _RESPONSE_BY_LENGTH)
        if lower is None:
            headers.append(kept(item, name, value))  # trailing whitespace trimmed (RFC 9110 §5.5)
        elif lower == b"content-length":
            content_length = (name, value)
        elif lower == b"transfer-encoding":
            te_values.append(value)
        elif lower == b"connection":
            add_tokens(value, connection_tokens)
        elif lower == b"upgrade":
            upgrade = value.strip()
        elif lower == b"sec-websocket-accept":
            accept = value.strip()
            headers.append((name, accept))
    if connection_tokens:
        named = {t for t in connection_tokens if t not in _RESPONSE_UNNAMED}
        if named:
            headers = drop_named(headers, named)
    head = ResponseHead.__new__(ResponseHead)  # as in parse_request_head: every attribute is set here
    head.status = status
    head.reason = reason
    head.headers = headers
    head.upgrade = upgrade
    head.websocket_accept = accept
    head.content_length = 0
    head.body = NO_BODY
    head.keep_alive = b"close" not in connection_tokens
    # RFC 9112 §6.3: HEAD, 1xx, 204 and 304 responses have no body, whatever the headers say; a
    # Content-Length there describes the representation and is passed on.
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        head.body = NO_BODY
        if content_length is not None and status >= 200:
            headers.append(content_length)
        return head
    if te_values:
        if len(te_values) > 1 or te_values[0].lower() != b"chunked":
            raise HttpError(502, "backend sent a Transfer-Encoding other than `chunked`")
        head.body = CHUNKED
    elif content_length is not None:
        value = content_length[1].strip()
        if not value.isdigit() or len(value) > 18:
            raise HttpError(502, "backend sent a bad Content-Length")
        head.content_length = int(value)
        head.body = LENGTH
    else:
        head.body = UNTIL_CLOSE
        head.keep_alive = False
    return head


def serialize_head(
    first_line: bytes, headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """One bytes object for a head: `first line CRLF (name: value CRLF)* CRLF`, the `added` headers after
    `headers` (so a caller need not copy a list only to append to it)."""
    return serialize_pieces([first_line], headers, added)


def serialize_pieces(
    parts: list[bytes], headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """As serialize_head, with the first line given as the pieces `parts`: the caller need not format a
    first line only to have it copied again. Compiled, the head is sized first and copied into one bytes
    object (head_bytes.pxd): no list of pieces, no `name: value` object per header."""
    return head_bytes.serialize(parts, headers, added)


_STATUS_LINES = {code: b"HTTP/1.1 %d " % code for code in range(100, 600)}


def status_line_start(status: int) -> bytes:
    """`HTTP/1.1 <status> ` (the reason follows), without formatting it each time for the usual codes."""
    start = _STATUS_LINES.get(status) if type(status) is int else None
    return b"HTTP/1.1 %d " % status if start is None else start


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
