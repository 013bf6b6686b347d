"""What a connection writes during one loop iteration, handed to its transport when the iteration's I/O
callbacks have all run: one write per connection per iteration, and all of them together.

Why: a write to a loopback socket whose reader sleeps wakes that reader (the backend or the client) from
inside our `write` system call, and on a virtual machine waking an idle CPU is an interrupt to another
CPU through the hypervisor. Written as each event is handled (uvloop writes at once when nothing is
queued), every response woke the client again: with about 50 µs of work between two writes, the client
had gone back to sleep each time. perf on the keep-alive reencrypt workload put 7 % of the router's CPU
in `_raw_spin_unlock_irqrestore` under `sock_def_readable` (the wakeup). Written together at the end of
the iteration, the first write wakes the reader and the others find it awake, as HAProxy's event loop
does (it sends what its tasks produced after running them). Measured with wrk, 50 connections, in one
A/B run: keep-alive reencrypt 105 -> 75 µs, edge 88 -> 61 µs of router CPU per request (BENCHMARKS.md,
session 7).

The cost is latency inside one iteration: a response waits for the other events of the same iteration,
at most one iteration's work.

Order is kept: everything a connection writes goes through its Outbox, and the connection flushes it
before it closes, aborts or half-closes its transport (`flush`), so no byte is lost or overtaken.

Users: the client listeners and the HTTP sessions' writes to them (edge, reencrypt, plain HTTP), and the
backend connections (engine/upstream.py). Not the passthrough relay (engine/passthrough.py), which writes
to both transports directly: batched, it measured the same (full handshakes, A/B over three runs:
0.92x, 1.14x, 1.04x; keep-alive 1.01x-1.03x), so the relay stays as simple as it was.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("shiftroute.engine")

# Bytes waiting in one outbox that are written at once rather than at the end of the iteration: asyncio's
# (and uvloop's) default high-water mark, so back-pressure starts where it did with direct writes.
FLUSH_AT = 64 * 1024


class WriteBatch:
    """The outboxes with bytes waiting, one per router: flushed by one `call_soon` per loop iteration
    (uvloop runs it before it polls again, after the iteration's I/O callbacks)."""

    __slots__ = ("_boxes", "_scheduled_on")

    def __init__(self) -> None:
        self._boxes: list[Outbox] = []
        # The loop the flush is scheduled on (None: not scheduled). Compared with the adding box's loop,
        # so a context used by a second loop after the first was closed is not stuck waiting for it.
        self._scheduled_on: Any = None

    def add(self, box: Outbox) -> None:
        loop = box.loop
        scheduled_on = self._scheduled_on
        if scheduled_on is not loop:
            if scheduled_on is not None:
                # That loop ended with its run never made: its connections' bytes can go nowhere now.
                self._boxes = [other for other in self._boxes if other.loop is loop]
            loop.call_soon(self.run)
            self._scheduled_on = loop
        self._boxes.append(box)

    def run(self) -> None:
        """Write every waiting outbox (the loop callback; tests and bench.hotpath call it directly)."""
        self._scheduled_on = None
        boxes = self._boxes
        if boxes:
            self._boxes = []
            box: Outbox  # typed: a C call per box when compiled
            for box in boxes:
                try:
                    box.flush()
                except Exception:  # one connection's failure must not cost the others their writes
                    # Not expected (the connections write nothing once they have half-closed or closed);
                    # handled as asyncio handles a protocol callback that raises: logged, and that
                    # transport aborted.
                    log.exception("write to %r failed; connection aborted", box.transport)
                    box.transport.abort()


class Outbox:
    """One connection's bytes of this loop iteration, in order."""

    __slots__ = ("_batch", "_pieces", "_size", "loop", "transport")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, batch: WriteBatch
    ) -> None:
        self.transport = transport
        self.loop = loop
        self._batch = batch
        self._pieces: list[bytes] = []
        self._size = 0  # bytes in _pieces

    def write(self, data: bytes) -> None:
        if not data:
            return
        pieces = self._pieces
        if not pieces:
            self._batch.add(self)
        pieces.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            # Bulk: handed over at once, so that the transport's high-water mark and the sessions'
            # back-pressure (hardening.md rule 16) see it now. libuv calls data_received up to 32 times
            # for one readable socket, so an iteration could otherwise gather megabytes per connection.
            self.flush()

    def flush(self) -> None:
        """Hand what is waiting to the transport now: called by the batch, and by the connection before
        it closes, aborts or half-closes the transport."""
        pieces = self._pieces
        if not pieces:
            return
        self._pieces = []
        self._size = 0
        transport = self.transport
        if transport.is_closing():
            return  # closed by the peer meanwhile: nothing can be sent any more
        if len(pieces) == 1:
            transport.write(pieces[0])
        else:
            transport.writelines(pieces)
