"""A tiny HTTP/1.1 server for the admin port: liveness, readiness and Prometheus metrics.

/healthz        200 while the process runs
/healthz/ready  200 once the first routing table is published and the listeners are bound; 503 while
                draining (SIGTERM) or before the first sync
/metrics        Prometheus text format
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools


class AdminProtocol(asyncio.Protocol):
    def __init__(self, routes: dict[bytes, Callable[[], tuple[int, bytes, bytes]]]) -> None:
        self.routes = routes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(400, b"bad request\n", b"text/plain", close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        self.url = b""
        handler = self.routes.get(path)
        if handler is None:
            self._send(404, b"not found: try /healthz, /healthz/ready or /metrics\n", b"text/plain")
            return
        status, body, content_type = handler()
        self._send(status, body, content_type)

    def _send(self, status: int, body: bytes, content_type: bytes, close: bool = False) -> None:
        if self.transport is None:
            return
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 503: b"Service Unavailable"}[status]
        keep = not close and self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\nCache-Control: no-cache\r\n%b\r\n%b"
            % (status, reason, content_type, len(body), b"" if keep else b"Connection: close\r\n", body)
        )
        if not keep:
            self.transport.close()


async def start_admin(
    host: str, port: int, routes: dict[bytes, Callable[[], tuple[int, bytes, bytes]]]
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: AdminProtocol(routes), host, port, reuse_address=True)
