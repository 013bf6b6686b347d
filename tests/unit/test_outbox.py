"""The write batch (engine/outbox.py) on a real uvloop loop and real loopback sockets: what a connection
writes in one loop iteration reaches the peer after that iteration, whole and in order; flushing before
a close or an abort loses nothing; a transport the peer closed drops its bytes without an error; a batch
used by a second loop still writes. Every wait is bounded."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import uvloop

from shiftroute.engine.outbox import FLUSH_AT, Outbox, WriteBatch


class Sink(asyncio.Protocol):
    """The router's side of the connection: only its transport is used."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    """A uvloop transport on one end of a loopback TCP connection, a plain socket on the other."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    peer_task = loop.run_in_executor(None, listener.accept)
    transport, _ = await loop.create_connection(Sink, *listener.getsockname()[:2])
    peer, _ = await asyncio.wait_for(peer_task, 5)
    listener.close()
    peer.setblocking(False)
    return transport, peer


def _available(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


async def _read(peer: socket.socket, size: int) -> bytes:
    """Read until `size` bytes or end of stream, for at most 5 s."""
    got = b""
    async with asyncio.timeout(5):
        while len(got) < size:
            try:
                piece = peer.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            if not piece:
                break
            got += piece
    return got


def run(coro: Any) -> Any:
    return uvloop.run(asyncio.wait_for(coro, 20))


def test_an_iterations_writes_reach_the_peer_after_it_whole_and_in_order() -> None:
    async def main() -> None:
        transport, peer = await _pair()
        loop = asyncio.get_running_loop()
        batch = WriteBatch()
        box = Outbox(transport, loop, batch)
        box.write(b"one ")
        box.write(b"two ")
        box.write(b"three")
        assert _available(peer) == b""  # the loop has not turned since the writes
        assert await _read(peer, 13) == b"one two three"
        assert _available(peer) == b""
        transport.close()
        peer.close()

    run(main())


def test_nothing_is_written_before_the_iteration_ends() -> None:
    async def main() -> None:
        transport, peer = await _pair()
        batch = WriteBatch()
        box = Outbox(transport, asyncio.get_running_loop(), batch)
        box.write(b"held")
        await asyncio.sleep(0.02)  # the loop turns: the batch runs
        assert await _read(peer, 4) == b"held"
        box.write(b"later")
        assert _available(peer) == b""
        batch.run()
        assert await _read(peer, 5) == b"later"
        transport.close()
        peer.close()

    run(main())


def test_flush_before_close_and_abort_loses_nothing() -> None:
    async def main() -> None:
        for end in ("close", "abort"):
            transport, peer = await _pair()
            box = Outbox(transport, asyncio.get_running_loop(), WriteBatch())
            box.write(b"last words")
            box.flush()
            getattr(transport, end)()
            assert await _read(peer, 100) == b"last words", end
            peer.close()

    run(main())


def test_a_closed_transport_drops_its_bytes_without_an_error() -> None:
    async def main() -> None:
        transport, peer = await _pair()
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        batch = WriteBatch()
        box = Outbox(transport, loop, batch)
        transport.abort()
        await asyncio.sleep(0.02)  # the transport is gone: uvloop's own write would raise now
        box.write(b"never sent")
        await asyncio.sleep(0.02)  # the batch runs and finds the transport closing
        assert _available(peer) == b""
        assert errors == []
        peer.close()

    run(main())


def test_bulk_is_written_at_once_so_back_pressure_starts_where_it_did() -> None:
    async def main() -> None:
        transport, peer = await _pair()
        box = Outbox(transport, asyncio.get_running_loop(), WriteBatch())
        box.write(b"s" * 100)
        assert _available(peer) == b""  # small: waits for the end of the iteration
        box.write(b"b" * FLUSH_AT)
        # Bulk: handed to the transport within the same callback (in the kernel, or in uvloop's buffer).
        first = _available(peer)
        assert first or transport.get_write_buffer_size() > 0
        got = first + await _read(peer, 100 + FLUSH_AT - len(first))
        assert got == b"s" * 100 + b"b" * FLUSH_AT
        transport.close()
        peer.close()

    run(main())


def test_empty_writes_queue_nothing() -> None:
    async def main() -> None:
        transport, peer = await _pair()
        batch = WriteBatch()
        box = Outbox(transport, asyncio.get_running_loop(), batch)
        box.write(b"")
        assert batch._boxes == []
        transport.close()
        peer.close()

    run(main())


def test_a_batch_used_by_a_second_loop_still_writes() -> None:
    """A context outliving its first loop (a test, a restarted router) must not wait for that loop."""
    batch = WriteBatch()

    async def first() -> None:
        transport, peer = await _pair()
        Outbox(transport, asyncio.get_running_loop(), batch).write(b"x")
        # The loop ends right here, its scheduled batch run never happening.
        transport.abort()
        peer.close()

    async def second() -> None:
        transport, peer = await _pair()
        Outbox(transport, asyncio.get_running_loop(), batch).write(b"from the second loop")
        assert await _read(peer, 20) == b"from the second loop"
        transport.close()
        peer.close()

    uvloop.run(first())
    run(second())


def test_an_unexpected_write_failure_costs_only_its_own_connection() -> None:
    """The connections write nothing after a half-close; if one ever did, uvloop's write raises in the
    batch, and the other connections of the iteration must still be written."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        half_closed, peer_a = await _pair()
        healthy, peer_b = await _pair()
        batch = WriteBatch()
        half_closed.write_eof()  # uvloop refuses writes after this: this box's flush raises
        Outbox(half_closed, loop, batch).write(b"too late")
        Outbox(healthy, loop, batch).write(b"still sent")
        batch.run()
        assert half_closed.is_closing()  # aborted, as asyncio does when a protocol callback raises
        assert await _read(peer_b, 10) == b"still sent"
        healthy.close()
        peer_a.close()
        peer_b.close()

    run(main())
