"""The pieces of one HTTP exchange: the client side as a session sees it, and one request/response pair.
(The response parser's callbacks are the backend side's: backend_side.ResponseCallbacks.)"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import httptools

from shiftroute.engine.upstream import UpstreamConnection
from shiftroute.protocol.http1 import NO_BODY, RequestHead, ResponseHead
from shiftroute.routing.table import Backend, RoutingTable, Server


class Downstream(Protocol):
    """The client side as the session sees it (a plain TCP or a TLS connection)."""

    peer_ip: str
    secure: bool
    sni: str | None
    writing_paused: bool
    loop: asyncio.AbstractEventLoop

    def send(self, data: bytes) -> None: ...

    def server_port(self) -> int: ...

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
        "resp_fed",
        "resp_head",
        "resp_headers",
        "resp_parser",
        "resp_reason",
        "resp_started",
        "resp_status",
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
        self.resp_fed = False  # bytes of the response went to llhttp (head_scan no longer reads it)
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.resp_reason = b""
        self.resp_status = 0  # the status line's, interim responses included (resp_head has the final one)
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
