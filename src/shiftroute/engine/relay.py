"""Passthrough: relay the client's untouched TLS bytes to an endpoint and back (routes.md §4 step 1).

Back-pressure both ways (a side that cannot write pauses the other side's reading, hardening.md rule 16)
and half-close: EOF from one side is passed on as a write EOF to the other; the connection ends when both
sides are done or the tunnel has been idle too long.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast


class RelayPeer(Protocol):
    """The client side of a relay, as the upstream side sees it."""

    def relay_data(self, data: bytes) -> None: ...

    def relay_eof(self) -> None: ...

    def relay_closed(self) -> None: ...

    def relay_paused(self, paused: bool) -> None: ...


class RelayUpstream(asyncio.Protocol):
    __slots__ = ("closed", "eof", "paused", "peer", "transport")

    def __init__(self, peer: RelayPeer) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closed = False
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self.peer.relay_data(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.peer.relay_eof()
        return True  # keep our write side open until the client is done too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.peer.relay_closed()

    def pause_writing(self) -> None:
        self.paused = True
        self.peer.relay_paused(True)

    def resume_writing(self) -> None:
        self.paused = False
        self.peer.relay_paused(False)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and not self.closed and self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
