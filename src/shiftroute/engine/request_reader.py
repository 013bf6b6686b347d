"""Reading requests from one client connection: httptools (llhttp) plus the limits llhttp does not keep
(hardening.md rules 8 and 14), turning bytes into Exchanges, body pieces and ends of messages.

The reader does no I/O and knows nothing of backends: it hands each event to its sink (the session) and
reports refusals and upgrades as return values of `feed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httptools

from shiftroute.engine.context import Limits
from shiftroute.engine.exchange import Exchange
from shiftroute.protocol import head_scan
from shiftroute.protocol.http1 import CHUNKED, HttpError, parse_request_head
from shiftroute.routing.table import TableHolder

MAX_TRAILER_BYTES = 8 * 1024
# hardening.md rule 8: a chunk-size line (with its extensions) or a trailer line may not run on. llhttp skips
# extensions without a limit and calls back only when a line ends, so a chunked body is parsed in slices and
# slices that produce no callback at all are counted: lines under 16 KiB pass, lines of 24 KiB never do.
CHUNKED_SLICE = 8 * 1024
MAX_CHUNK_LINE = 8 * 1024
MAX_HEADERS = 100
# What RequestReader._scan_heads answers instead of a position.
_SCAN_REFUSED = -1
_SCAN_CLOSED = -2


def scan_request_head(data: bytes, limit: int) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """What the reader's shortcut makes of `data` (head_scan.request as this module runs it: the C version
    when compiled, None from the sources); tests/unit/test_head_scan.py compares it with llhttp."""
    return head_scan.request(data, 0, limit, MAX_HEADERS)


class RequestSink(Protocol):
    closed: bool

    def request_started(self, ex: Exchange) -> None: ...

    def request_body(self, ex: Exchange, data: bytes) -> None: ...

    def request_done(self, ex: Exchange) -> None: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """The request must be refused: status and reason for the client, then close."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Upgraded:
    """llhttp stopped at an Upgrade (or CONNECT) request; `rest` is what followed the head."""

    rest: bytes


class RequestReader:
    def __init__(self, sink: RequestSink, limits: Limits, holder: TableHolder) -> None:
        self.sink = sink
        self.limits = limits
        self.holder = holder
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: Exchange | None = None  # the request whose head or body is being read
        self.in_head = False
        self.headers: list[tuple[bytes, bytes]] = []
        self._url = b""
        self._head_bytes = 0  # bytes fed while a head was incomplete (bounds llhttp's own buffering)
        self._head_size = 0  # the head as parsed
        self._trailer_bytes = 0
        self._marks = 0  # body/chunk/trailer callbacks so far: unchanged over a slice = one long line
        self._quiet = 0  # bytes of chunked body in a row that produced no callback
        self._error: HttpError | None = None
        # llhttp read a request after which it takes the connection as closing (`Connection: close`, but also
        # `Proxy-Connection: close` or HTTP/1.0 without keep-alive, by its own rules): llhttp then reads
        # whatever follows (it refuses it), not the shortcut. The shortcut reads only requests llhttp would
        # keep the connection open after, so llhttp never misses such a request.
        self._after_close = False

    def restart(self) -> None:
        """A fresh parser: llhttp parses nothing after an upgrade."""
        self.parser = httptools.HttpRequestParser(self)
        self._after_close = False

    def feed(self, data: bytes, expecting_head: bool) -> Refused | Upgraded | None:
        if self.in_head or expecting_head:
            self._head_bytes += len(data)
        start = 0
        if self.parsing is None and not self.in_head and not self._after_close:
            # Between requests (llhttp holds nothing): plain heads that arrived whole are read without it.
            start = self._scan_heads(data)
            if start == _SCAN_REFUSED and self._error is not None:
                return Refused(self._error.status, self._error.reason)
            if start < 0:
                return None
        while start < len(data):
            ex = self.parsing
            in_body = ex is not None and not self.in_head
            chunked = in_body and ex is not None and ex.head.body == CHUNKED
            # Only a Content-Length body is fed whole; a head may be followed by a chunked body.
            end = min(len(data), start + CHUNKED_SLICE) if chunked or not in_body else len(data)
            marks = self._marks
            try:
                self.parser.feed_data(data[start:end])
            except httptools.HttpParserUpgrade as exc:
                return Upgraded(data[start + exc.args[0] :])
            except httptools.HttpParserCallbackError:
                error = self._error or HttpError(400, "bad request")
                return Refused(error.status, error.reason)
            except httptools.HttpParserError as exc:
                return Refused(400, str(exc))
            if self.sink.closed:
                return None
            if chunked and self._marks == marks and self.parsing is ex:
                self._quiet += end - start
                if self._quiet > MAX_CHUNK_LINE:
                    return Refused(400, "chunk extension or trailer line too long")
            else:
                self._quiet = 0
            start = end
        if (self.in_head or expecting_head) and self._head_bytes > self.limits.max_head_bytes:
            return Refused(431 if self.headers else 414, "request head too large")
        return None

    def _scan_heads(self, data: bytes) -> int:
        """Requests read by head_scan (compiled only; see head_scan.pxd), as llhttp's callbacks below would
        deliver them; where llhttp takes over, _SCAN_REFUSED (self._error says why) or _SCAN_CLOSED."""
        start = 0
        while start < len(data):
            scanned = head_scan.request(data, start, self.limits.max_head_bytes, MAX_HEADERS)
            if scanned is None:
                return start
            start, method, target, fields = scanned
            self._head_bytes = 0
            try:
                head = parse_request_head(method, target, "1.1", fields)
            except HttpError as exc:
                self._error = exc
                return _SCAN_REFUSED
            # As on_headers_complete, then on_message_complete: the head was the whole request.
            ex = Exchange(head, self.holder.current)
            self.sink.request_started(ex)
            ex.body_done = True
            self.sink.request_done(ex)
            if self.sink.closed:
                return _SCAN_CLOSED
        return start

    # -- httptools callbacks ---------------------------------------------------------------------------

    def _fail(self, status: int, reason: str) -> None:
        self._error = HttpError(status, reason)
        raise self._error

    def on_message_begin(self) -> None:
        self._url = b""
        self.headers = []
        self._head_size = 0
        self.in_head = True
        self._trailer_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_head_bytes:
            self._fail(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # Trailer fields: bounded and dropped (hardening.md rule 8).
            self._marks += 1
            self._trailer_bytes += len(name) + len(value)
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                self._fail(400, "trailer section too large")
            return
        self.headers.append((name, value))
        if len(self.headers) > MAX_HEADERS:
            self._fail(431, "too many header fields")
        # hardening.md rule 14: the head as parsed, not per read (a whole head can come in one read).
        self._head_size += len(name) + len(value) + 4
        if self._head_size + len(self._url) > self.limits.max_head_bytes:
            self._fail(431, "request header fields too large")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._head_bytes = 0
        try:
            head = parse_request_head(
                self.parser.get_method(), self._url, self.parser.get_http_version(), self.headers
            )
        except HttpError as exc:
            self._error = exc
            raise
        self._after_close = not self.parser.should_keep_alive()
        # ARCHITECTURE.md: a request takes the routing table once, when its head is parsed.
        ex = Exchange(head, self.holder.current)
        self.parsing = ex
        self.sink.request_started(ex)

    def on_chunk_header(self) -> None:
        self._marks += 1

    def on_chunk_complete(self) -> None:
        self._marks += 1

    def on_body(self, data: bytes) -> None:
        self._marks += 1
        if self.parsing is not None:
            self.sink.request_body(self.parsing, data)

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None:
            return
        self.parsing = None
        ex.body_done = True
        self.sink.request_done(ex)
