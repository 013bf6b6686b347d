"""The pieces of one HTTP exchange: the client side as a session sees it, one request/response pair, and
the response-parser callbacks that route llhttp's events back to the session."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

import httptools

from shiftroute.engine.upstream import UpstreamConnection
from shiftroute.protocol.http1 import NO_BODY, HttpError, RequestHead, ResponseHead
from shiftroute.routing.table import Backend, RoutingTable, Server

if TYPE_CHECKING:
    from shiftroute.engine.http_session import HttpSession


class Downstream(Protocol):
    """The client side as the session sees it (a plain TCP or a TLS connection)."""

    peer_ip: str
    local_port: int
    secure: bool
    sni: str | None
    writing_paused: bool
    loop: asyncio.AbstractEventLoop

    def send(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Exchange:
    """One request and its response."""

    __slots__ = (
        "backend",
        "body_buffer",
        "body_buffered",
        "body_done",
        "client_leftover",
        "close_after",
        "connecting",
        "counted",
        "done",
        "framing",
        "head",
        "request_sent",
        "resp_head",
        "resp_headers",
        "resp_parser",
        "resp_reason",
        "resp_started",
        "reused",
        "sent",
        "server",
        "set_cookie",
        "started",
        "status",
        "table",
        "tried",
        "upstream",
        "upstream_extra",
    )

    def __init__(self, head: RequestHead, table: RoutingTable) -> None:
        self.head = head
        self.table = table
        self.started = time.monotonic()
        self.backend: Backend | None = None
        self.server: Server | None = None
        self.upstream: UpstreamConnection | None = None
        self.connecting = False
        self.tried: frozenset[str] = frozenset()
        self.body_buffer: list[bytes] = []
        self.body_buffered = 0
        self.body_done = head.body == NO_BODY
        self.request_sent = False
        self.resp_parser: httptools.HttpResponseParser | None = None
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.resp_reason = b""
        self.resp_head: ResponseHead | None = None
        self.resp_started = False  # bytes of the response went to the client
        self.framing = NO_BODY
        self.set_cookie: Server | None = None
        self.sent = 0
        self.status = 0
        self.close_after = not head.keep_alive
        self.upstream_extra = False  # the upstream connection cannot be reused
        self.client_leftover = b""  # bytes after a WebSocket upgrade request
        self.counted = False  # counted in its server's active connections
        self.reused = False  # the upstream connection came from the pool
        self.done = False  # answered (by the backend or the router); later parser callbacks are ignored


class ResponseCallbacks:
    """httptools response-parser callbacks, forwarded to the session for the exchange they belong to."""

    __slots__ = ("conn", "ex", "session")

    def __init__(self, session: HttpSession, ex: Exchange, conn: UpstreamConnection) -> None:
        self.session = session
        self.ex = ex
        self.conn = conn  # the backend connection whose parser calls these (one per connection)

    def on_message_begin(self) -> None:
        if self.ex.done:
            # A second message in what the backend sent after the response it owed (hardening.md rule 12):
            # nothing of it reaches the client, and the connection is not used again. Raising stops llhttp.
            self.session._backend_sent_extra(self.ex, self.conn)
            raise HttpError(502, "backend sent more than its response")
        self.ex.resp_headers = []

    def on_status(self, reason: bytes) -> None:
        self.ex.resp_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.ex.resp_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.session._response_head(self.ex)

    def on_body(self, data: bytes) -> None:
        self.session._response_body(self.ex, data)

    def on_message_complete(self) -> None:
        self.session._response_complete(self.ex)
