"""Passthrough relay without copying through Python: splice(2) moves bytes socket -> pipe -> socket inside
the kernel (issue 5: "a zero-copy relay (os.splice through a pipe) for passthrough where the platform
allows").

The relay takes over from the asyncio relay once a connection has carried AFTER_BYTES (setting it up costs
more than it saves on a short connection) and nothing waits in either transport's write buffer: reading
is paused on both asyncio transports, and duplicates of their sockets are watched with add_reader and
add_writer. Back-pressure is the kernel's: when the destination cannot take more, the source is not read
until it can (hardening.md rule 16). A source's EOF becomes a write shutdown of the destination
(half-close); the relay ends when both directions ended, or on the first error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from shiftroute.engine import splice_syscall

AVAILABLE = hasattr(os, "splice") and os.environ.get("SHIFTROUTE_SPLICE", "1") != "0"
CHUNK = 1 << 16
AFTER_BYTES = 256 * 1024  # a connection is spliced once it has relayed this much


class _Direction:
    __slots__ = ("done", "dst", "dst_fd", "eof", "moved", "pending", "pipe_r", "pipe_w", "src", "src_fd")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        # Read once: every relayed piece uses them (socket.fileno() is a method call each time).
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending = 0  # bytes in the pipe, not yet in the destination
        self.moved = 0
        self.eof = False
        self.done = False


class SpliceRelay:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_fd: int,
        upstream_fd: int,
        on_done: Callable[[bool], None],
    ) -> None:
        self.loop = loop
        self.on_done = on_done
        self.closed = False
        self._client = socket.socket(fileno=os.dup(client_fd))
        self._upstream = socket.socket(fileno=os.dup(upstream_fd))
        self.up = _Direction(self._client, self._upstream)
        self.down = _Direction(self._upstream, self._client)
        for direction in (self.up, self.down):
            loop.add_reader(direction.src_fd, self._readable, direction)

    def _readable(self, d: _Direction) -> None:
        try:
            moved = splice_syscall.splice_nonblocking(d.src_fd, d.pipe_w, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self.close(error=True)
            return
        if moved == 0:
            d.eof = True
            self.loop.remove_reader(d.src_fd)
            self._maybe_done(d)
            return
        d.pending += moved
        d.moved += moved  # the owner's idle check reads it
        self._drain(d)

    def _drain(self, d: _Direction) -> bool:
        """Move the pipe into the destination; when it is full, stop reading the source until it drains."""
        while d.pending:
            try:
                moved = splice_syscall.splice_nonblocking(d.pipe_r, d.dst_fd, d.pending)
            except BlockingIOError:
                if not d.eof:
                    self.loop.remove_reader(d.src_fd)
                self.loop.add_writer(d.dst_fd, self._writable, d)
                return False
            except OSError:
                self.close(error=True)
                return False
            d.pending -= moved
        return True

    def _writable(self, d: _Direction) -> None:
        self.loop.remove_writer(d.dst_fd)
        if self.closed or not self._drain(d):
            return
        if d.eof:
            self._maybe_done(d)
        else:
            self.loop.add_reader(d.src_fd, self._readable, d)

    def _maybe_done(self, d: _Direction) -> None:
        if d.pending or d.done:
            return
        d.done = True
        with contextlib.suppress(OSError):  # the peer may be gone already
            d.dst.shutdown(socket.SHUT_WR)  # pass the half-close on
        if self.up.done and self.down.done:
            self.close(error=False)

    def close(self, error: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for direction in (self.up, self.down):
            self.loop.remove_reader(direction.src_fd)
            self.loop.remove_writer(direction.dst_fd)
        for direction in (self.up, self.down):
            os.close(direction.pipe_r)
            os.close(direction.pipe_w)
        self._client.close()
        self._upstream.close()
        self.on_done(error)
