"""What a client connection leaves behind once it is closed (engine/listeners.py).

The listener is driven directly on a real uvloop loop with a stand-in transport: the kernel's part
(a socket closing) cannot be made to happen at a chosen moment, and only the protocol's bookkeeping is
under test; the end-to-end behaviour is in tests/e2e."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import uvloop

from shiftroute.engine.context import Limits, RouterContext
from shiftroute.engine.listeners import HttpClientProtocol
from shiftroute.routing.table import TableHolder


class _Transport:
    def __init__(self) -> None:
        self.closing = False
        self.eof_written = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def write(self, data: bytes) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


async def _closed_connection_is_freed_at_once() -> tuple[bool, bool]:
    ctx = RouterContext(TableHolder(), Limits(client_fin_timeout=60.0), access_log_enabled=False)
    protocol = HttpClientProtocol(ctx)
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.finish()  # a response ended the connection: write EOF, linger for the client's close
    assert protocol.lingering and transport.eof_written
    protocol.connection_lost(None)  # the client closed
    alive = weakref.ref(protocol)
    del protocol
    gc.collect()
    await asyncio.sleep(0)
    gc.collect()
    return alive() is None, not ctx.connections


def test_a_closed_connection_is_not_held_until_the_fin_timeout() -> None:
    freed, forgotten = uvloop.run(_closed_connection_is_freed_at_once())
    assert forgotten
    assert freed  # no timer left in the loop holds it (and its session, TLS objects, buffers) for 60 s
