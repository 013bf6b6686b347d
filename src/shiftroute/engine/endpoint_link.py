# cython: annotation_typing=False
"""The endpoint side of a passthrough relay (engine/passthrough.py): the connection from the router to the
chosen endpoint, as one of two kinds with the same methods.

- `EndpointLink`, for a numeric endpoint address (every EndpointSlice address of type IPv4 or IPv6): a
  non-blocking socket the router connects, reads and writes itself, its readiness watched in one epoll
  set per event loop (`LinkHub`, itself watched by the loop as one reader). Compiled, every step is a C
  call (sock_syscalls.pxd): no transport, protocol, coroutine, Task or future is made per connection,
  where the loop's create_connection made all of them. Callgrind put create_connection and the endpoint
  transport's callbacks at about a third of the router's user-space instructions per passthrough
  connection (issue 5, BENCHMARKS.md).
- `RelayUpstream`, for any other address (an FQDN endpoint): a protocol on the transport the loop's
  create_connection makes (it resolves the name).

Both pass what they read, their EOF, their close and their write buffer's state to a `RelayPeer` (the
Passthrough). Back-pressure (hardening.md rule 16): above WRITE_HIGH bytes waiting for the endpoint the
peer is told to stop reading the client, and at WRITE_LOW to go on; the peer pauses the link's reading
while the client cannot take more.
"""

from __future__ import annotations

import asyncio
import os
from typing import cast

from shiftroute.engine import sock_syscalls
from shiftroute.engine.link_hub import READ_AGAIN, READ_EMPTY, HubMember, LinkHub, after_bytes, hub_for

__all__ = ["EndpointLink", "RelayPeer", "RelayUpstream", "hub_for"]

# The same marks as the loop's transports (asyncio's defaults): the client is paused above 64 KiB
# waiting for the endpoint, resumed at 16 KiB.
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024
READ_SIZE = 65536  # per read, as the loop's transports read

_IN = sock_syscalls.EPOLLIN
_OUT = sock_syscalls.EPOLLOUT
_ERR_HUP = sock_syscalls.EPOLLERR | sock_syscalls.EPOLLHUP
_AGAIN = READ_AGAIN  # compiled: C values (the .pxd)
_EMPTY = READ_EMPTY
_ET = sock_syscalls.EPOLLET
_RDHUP = sock_syscalls.EPOLLRDHUP


class RelayPeer:
    """A relayed connection as both of its sides see it (Passthrough implements every method): the
    endpoint side reports with relay_* and link_*, the client's listener (engine/listeners.py) with
    start, client_* and deadline_reached. A base type so that, compiled, both call it in C."""

    def start(self) -> None:
        pass

    def client_data(self, data: bytes) -> None:
        pass

    def client_eof(self) -> None:
        pass

    def client_writable(self) -> None:
        pass

    def client_lost(self, exc: Exception | None) -> None:
        pass

    def deadline_reached(self) -> None:
        pass

    def relay_data(self, data: bytes) -> None:
        pass

    def relay_eof(self) -> None:
        pass

    def relay_closed(self) -> None:
        pass

    def relay_paused(self, paused: bool) -> None:
        pass

    def link_connected(self, link: RelayUpstream) -> None:
        pass

    def link_failed(self, exc: OSError) -> None:
        pass


class RelayUpstream(HubMember):
    """The endpoint side on a loop transport: a protocol on the connection create_connection makes.

    An asyncio protocol by its methods, not by inheritance: compiled, it is an extension type
    (endpoint_link.pxd), which cannot subclass asyncio.Protocol; uvloop takes any object with the
    protocol's methods. A HubMember only so that its subclass EndpointLink can be one (an extension type
    has one base); a RelayUpstream itself is never in a hub."""

    def __init__(self, peer: RelayPeer) -> None:
        self.fd = -1
        self._watched = 0
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

    # -- what the peer calls (EndpointLink has the same) -------------------------------------------------

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

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def fileno(self) -> int:
        """The socket's descriptor, -1 when there is none (for splice(2), which duplicates it)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        return -1 if sock is None else int(sock.fileno())


class EndpointLink(RelayUpstream):
    """The endpoint side on a socket of the router's own, watched by the loop's LinkHub.

    `connect` starts the connection; the peer hears `link_connected` or `link_failed` once. Then bytes
    are read as they come (`relay_data`), the endpoint's EOF is `relay_eof` (reading stops, writing goes
    on: half-close), and a failed read or write closes the socket and reports `relay_closed`. The peer's
    own `close` (once what is pending has been written) and `abort` (at once) report nothing back: the
    peer knows."""

    def __init__(self, peer: RelayPeer, hub: LinkHub) -> None:
        # RelayUpstream's fields, set here: compiled, super().__init__ would be a Python-level call.
        self.peer = peer
        self.transport = None
        self.paused = False
        self.closed = False
        self.eof = False
        self.hub = hub
        self.fd = -1
        self.connecting = False
        self._pending: list[bytes] = []  # written, not yet taken by the kernel
        self._pending_size = 0
        self._reading = True  # the peer has not paused reading
        self._watched = 0  # the events the hub watches on this socket (0: not in the epoll set)
        self._eof_after_write = False  # write_eof with bytes pending: shut down once they are sent
        self._close_after_write = False
        self._shared = False  # the descriptor was handed out (fileno), and may have been duplicated

    def connect(self, address: str, port: int, first: bytes = b"") -> bool:
        """Start connecting; False when `address` is not numeric (the caller uses create_connection).
        OSError when the connect fails at once. When it succeeds at once (loopback: the handshake completes
        within connect(2)), `link_connected` is called before this returns.

        `first`, the bytes to send first (a relay's ClientHello), is the link's from now on: sent at once,
        or as soon as the connect completes. Sending it is also how the link learns whether the connect
        has completed, in the same system call: the kernel takes the bytes (connected), says EAGAIN (still
        connecting: nothing taken) or returns the connect's error. Without `first`, a zero-wait poll asks."""
        fd = sock_syscalls.tcp_connect(address, port)
        if fd < 0:
            return False
        self.fd = fd
        try:
            if first:
                sent = sock_syscalls.send_bytes(fd, first, 0)
                done = sent > 0
                if sent < len(first):
                    self._pending = [first[sent:] if sent else first]
                    self._pending_size = len(first) - sent
            else:
                done = sock_syscalls.connected_now(fd) == 1
        except OSError:
            self._close_fd()
            raise
        if done:
            self._rewatch()
            self.peer.link_connected(self)
            return True
        self.connecting = True
        self.hub.watch(self, _OUT)
        return True

    # -- events, from the hub ----------------------------------------------------------------------------

    def on_events(self, events: int) -> None:
        if self.connecting:
            # A non-blocking connect has ended when the socket is writable; SO_ERROR says how (the way
            # asyncio's sock_connect reads it).
            self.connecting = False
            code = sock_syscalls.socket_error(self.fd)
            if code:
                self._close_fd()
                self.peer.link_failed(OSError(code, os.strerror(code)))
                return
            if self._pending_size and not self._send_first():
                return
            self._rewatch()
            self.peer.link_connected(self)
            return
        # Edge-triggered (see _rewatch): an event says something changed, once.
        if events & (_OUT | _ERR_HUP) and self._pending_size:
            self._flush()  # the bytes waiting, or the error a write meets
            if self.fd < 0:
                return
        if self._reading and not self.eof and events & (_IN | _RDHUP | _ERR_HUP):
            self._read(events)  # the data, the EOF or the error

    def _read(self, events: int) -> None:
        """Read until the socket is empty, the peer pauses reading, or the connection ends (when to read
        again: link_hub.after_bytes, the rule ClientLink reads by too)."""
        while True:
            try:
                data = sock_syscalls.recv_bytes(self.fd, READ_SIZE)
            except OSError:
                self._lost()
                return
            if data is None:
                return
            if data:
                self.peer.relay_data(data)
                if not self._reading or self.fd < 0:
                    return
                step = after_bytes(len(data), READ_SIZE, events)
                if step == _AGAIN:
                    continue
                if step == _EMPTY:
                    return
            self.eof = True  # no event follows (edge-triggered): nothing to take out of the set
            self.peer.relay_eof()
            return

    def _send_first(self) -> bool:
        """The connect has completed: send the first bytes, which waited for it (connect's `first`). A
        failure now is the connect's (the endpoint accepted, then reset): link_failed, so the peer counts
        it, logs it and tries another endpoint, as for a refused connect. False then."""
        data = self._pending[0]
        try:
            sent = sock_syscalls.send_bytes(self.fd, data, 0)
        except OSError as exc:
            self._close_fd()
            self.peer.link_failed(exc)
            return False
        self._pending_size = len(data) - sent
        self._pending = [data[sent:]] if self._pending_size else []
        return True

    def _lost(self) -> None:
        """A read or write failed (the endpoint reset the connection): close, and tell the peer."""
        self._close_fd()
        self.peer.relay_closed()

    def fail(self, exc: Exception) -> None:
        """The hub's handling of this link's events raised (the peer's code, say): close, and tell the
        peer, whose client would otherwise wait for its idle timeout."""
        if self.fd >= 0:
            self._lost()

    # -- writing -----------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self._close_after_write or not data:
            return
        if self._pending_size:
            self._pending.append(data)
            self._pending_size += len(data)
        else:
            try:
                sent = sock_syscalls.send_bytes(self.fd, data, 0)
            except OSError:
                self._lost()
                return
            if sent == len(data):
                return
            self._pending.append(data[sent:])
            self._pending_size = len(data) - sent
            self._rewatch()
        if not self.paused and self._pending_size > WRITE_HIGH:
            self.paused = True
            self.peer.relay_paused(True)

    def _flush(self) -> None:
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        try:
            sent = sock_syscalls.send_bytes(self.fd, data, 0)
        except OSError:
            self._lost()
            return
        self._pending_size = len(data) - sent
        self._pending = [data[sent:]] if self._pending_size else []
        if not self._pending_size:
            if self._close_after_write:
                self._close_fd()
                return
            if self._eof_after_write:
                self._eof_after_write = False
                self._shutdown()
            self._rewatch()
        if self.paused and self._pending_size <= WRITE_LOW:
            self.paused = False
            self.peer.relay_paused(False)

    def write_eof(self) -> None:
        if self.fd < 0 or self._close_after_write:
            return
        if self._pending_size:
            self._eof_after_write = True
        else:
            self._shutdown()

    def _shutdown(self) -> None:
        try:  # noqa: SIM105 - compiled, a try costs nothing; contextlib.suppress is an object and two calls
            sock_syscalls.shutdown_write(self.fd)
        except OSError:
            pass  # the endpoint has gone already: its reset is what the next read finds

    def close(self) -> None:
        if self.fd < 0:
            return
        if self._pending_size:
            self._close_after_write = True  # closed once what is pending has been written
            self._reading = False
            self._rewatch()
        else:
            self._close_fd()

    def abort(self) -> None:
        self._close_fd()

    # -- reading, as the peer wants it -------------------------------------------------------------------

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._rewatch()

    def resume_reading(self) -> None:
        if not self._reading and not self._close_after_write:
            self._reading = True
            self._rewatch(True)  # re-armed: bytes that came while paused raise an event now

    def buffered(self) -> int:
        return self._pending_size

    def fileno(self) -> int:
        self._shared = self.fd >= 0  # duplicated by the caller (splice): see _close_fd
        return self.fd

    # -- the epoll set -----------------------------------------------------------------------------------

    def _rewatch(self, rearm: bool = False) -> None:
        """Edge-triggered, as the client side (client_link.ClientLink._rewatch says why and how)."""
        if self.fd < 0 or self.connecting:
            return
        events = 0
        if self._reading:
            events = _IN | _RDHUP | _ET
        if self._pending_size:
            events |= _OUT | _ET
        if events != self._watched or (rearm and events):
            self.hub.watch(self, events)

    def _close_fd(self) -> None:
        fd = self.fd
        if fd < 0:
            return
        self.fd = -1
        self.connecting = False
        self.closed = True
        self._pending = []
        self._pending_size = 0
        # close(2) takes the socket out of the epoll set by itself, unless a duplicate of the descriptor
        # is still open (a splice relay's): only then is an explicit EPOLL_CTL_DEL needed.
        self.hub.forget(fd, self._watched != 0 and self._shared)
        self._watched = 0
        sock_syscalls.close_fd(fd)
