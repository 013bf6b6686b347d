# cython: annotation_typing=False
"""The HTTPS listener's sockets, accepted, read and written by the router itself in the loop's LinkHub
(engine/link_hub.py), not by uvloop (issue 5).

A passthrough connection's work per connection is a few system calls and the ClientHello; on uvloop, its
accept, transport, handles and callbacks were as much again (callgrind: about 13k of its 63k user-space
instructions, and getsockname, getpeername and io_uring calls per connection that HAProxy does not make).
Here, compiled, accept, each read and each write are C calls, and the connection's listener protocol
(engine/listeners.py) is told of them as asyncio would tell it.

- `ClientLink` is the accepted connection as an asyncio transport: the methods and guarantees of one that
  the HTTPS listener, its outbox, its session and its passthrough relay use. Writes go out at once (what
  the kernel does not take waits, and above 64 KiB the protocol is paused until 16 KiB remain),
  `write_eof` half-closes once what waits has been written, `close` closes then, `abort` at once;
  `connection_lost` follows once, after the call that closed it (never from within a write); an exception
  from a protocol callback is logged and aborts that connection only, as uvloop does.
- `HubServer` is the listening side, in place of the `asyncio.Server` that `loop.create_server` makes:
  bound when the router starts, listening from `start_serving` (once the first routing table is ready),
  accepting until the kernel has no connection left to give.

`SHIFTROUTE_HTTPS_SOCKETS=loop` serves HTTPS on the loop's own server and transports instead (to compare,
or to rule this module out while debugging); the router logs which one runs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from shiftroute.engine import sock_syscalls
from shiftroute.engine.link_hub import (
    READ_AGAIN,
    READ_EMPTY,
    HubMember,
    LinkHub,
    LinkProtocol,
    ProtocolMaker,
    after_bytes,
    hub_for,
)

log = logging.getLogger("shiftroute.engine")

# asyncio's default marks for a transport's write buffer.
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024
READ_SIZE = 65536  # per read, as uvloop reads
ACCEPT_BATCH = 128  # connections accepted per readiness event at most: the others wait one iteration
ACCEPT_PAUSE = 0.1  # after EMFILE and the like: seconds before accepting again (not a busy loop)

_IN = sock_syscalls.EPOLLIN
_OUT = sock_syscalls.EPOLLOUT
_ERR_HUP = sock_syscalls.EPOLLERR | sock_syscalls.EPOLLHUP
_AGAIN = READ_AGAIN  # compiled: C values (the .pxd)
_EMPTY = READ_EMPTY
_ET = sock_syscalls.EPOLLET
_RDHUP = sock_syscalls.EPOLLRDHUP

# accept(2) errors that say the process or system is out of something: wait, then accept again.
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

ProtocolFactory = Callable[[], LinkProtocol]


def use_router_sockets() -> bool:
    """Whether the HTTPS listener runs here (the default) or on the loop's own server and transports."""
    return os.environ.get("SHIFTROUTE_HTTPS_SOCKETS", "router") != "loop"


def describe() -> str:
    """For the router's log: which sockets serve HTTPS."""
    if use_router_sockets():
        return "the router's own sockets, in one epoll set per loop (engine/client_link.py)"
    return "the event loop's server and transports (SHIFTROUTE_HTTPS_SOCKETS=loop)"


class ClientLink(HubMember):
    """An accepted connection as an asyncio transport (see the module docstring)."""

    def __init__(self, hub: LinkHub, fd: int, peer: Any, protocol: LinkProtocol, server: HubServer) -> None:
        # HubMember's fields, set here: compiled, super().__init__ would be a Python-level call.
        self.fd = fd
        self._watched = 0
        self.hub = hub
        self.peer = peer
        self.protocol = protocol
        self.server = server
        self._pending: list[bytes] = []  # written, not yet taken by the kernel
        self._pending_size = 0
        self._reading = True  # the protocol has not paused reading
        self._read_eof = False
        self._closing = False  # close or abort was called, or the connection failed
        self._close_after_write = False
        self._eof_after_write = False
        self._eof_written = False
        self._protocol_paused = False  # pause_writing was called, resume_writing not yet
        self._shared = False  # the descriptor was handed out (the "socket" extra), and may be duplicated
        self._lost_exc: BaseException | None = None
        self._lost_reported = False
        self._high = WRITE_HIGH
        self._low = WRITE_LOW

    def __repr__(self) -> str:
        return f"<ClientLink fd={self.fd} peer={self.peer!r}>"

    # -- events, from the hub ------------------------------------------------------------------------

    def on_events(self, events: int) -> None:
        # Edge-triggered (see _rewatch): an event says something changed, once.
        if events & (_OUT | _ERR_HUP) and self._pending_size:
            self._flush()  # the bytes waiting, or the error a write meets
            if self.fd < 0:
                return
        if self._reading and not self._read_eof and events & (_IN | _RDHUP | _ERR_HUP):
            self._read(events)  # the data, the EOF or the error

    def _read(self, events: int) -> None:
        """Read until the socket is empty, the protocol pauses reading, or the connection ends (when to
        read again: link_hub.after_bytes, the rule EndpointLink reads by too)."""
        while True:
            try:
                data = sock_syscalls.recv_bytes(self.fd, READ_SIZE)
            except OSError as exc:
                self.fail(exc)
                return
            if data is None:
                return
            if data:
                try:
                    self.protocol.data_received(data)
                except Exception as exc:
                    self._callback_failed("data_received", exc)
                    return
                if not self._reading or self.fd < 0:
                    return
                step = after_bytes(len(data), READ_SIZE, events)
                if step == _AGAIN:
                    continue
                if step == _EMPTY:
                    return
            self._read_eof = True  # no event follows (edge-triggered): nothing to take out of the set
            try:
                keep_open = self.protocol.eof_received()
            except Exception as exc:
                self._callback_failed("eof_received", exc)
                return
            if not keep_open:
                self.close()
            return

    def _callback_failed(self, name: str, exc: Exception) -> None:
        # As uvloop does: logged with the traceback, and this connection aborted.
        log.error("protocol.%s() failed on %r", name, self, exc_info=exc)
        self.abort()

    # -- writing ---------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self._closing or self._eof_written or not data:
            return
        if self._pending_size:
            self._pending.append(data)
            self._pending_size += len(data)
        else:
            try:
                sent = sock_syscalls.send_bytes(self.fd, data, 0)
            except OSError as exc:
                self.fail(exc)
                return
            if sent == len(data):
                return
            self._pending.append(data[sent:])
            self._pending_size = len(data) - sent
            self._rewatch()
        if not self._protocol_paused and self._pending_size > self._high:
            self._protocol_paused = True
            try:
                self.protocol.pause_writing()
            except Exception as exc:
                self._callback_failed("pause_writing", exc)

    def writelines(self, pieces: list[bytes]) -> None:
        self.write(b"".join(pieces))

    def _flush(self) -> None:
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        try:
            sent = sock_syscalls.send_bytes(self.fd, data, 0)
        except OSError as exc:
            self.fail(exc)
            return
        self._pending_size = len(data) - sent
        self._pending = [data[sent:]] if self._pending_size else []
        if not self._pending_size:
            if self._close_after_write:
                self._close_fd()
                self.hub.defer_lost(self)
                return
            if self._eof_after_write:
                self._eof_after_write = False
                self._shutdown()
            self._rewatch()
        if self._protocol_paused and self._pending_size <= self._low:
            self._protocol_paused = False
            try:
                self.protocol.resume_writing()
            except Exception as exc:
                self._callback_failed("resume_writing", exc)

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = WRITE_HIGH if high is None else high
        self._low = (self._high // 4 if high is not None else WRITE_LOW) if low is None else low

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.fd < 0 or self._closing or self._eof_written:
            return
        self._eof_written = True
        if self._pending_size:
            self._eof_after_write = True
        else:
            self._shutdown()

    def _shutdown(self) -> None:
        try:  # noqa: SIM105 - compiled, a try costs nothing; contextlib.suppress is an object and two calls
            sock_syscalls.shutdown_write(self.fd)
        except OSError:
            pass  # the client has gone already: its reset is what the next read finds

    # -- reading, as the protocol wants it -----------------------------------------------------------

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._rewatch()

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._rewatch(True)  # re-armed: bytes that came while paused raise an event now

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # -- the end ---------------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close once what waits has been written; connection_lost(None) follows."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self._pending_size and self.fd >= 0:
            self._close_after_write = True
            self._rewatch()
            return
        self._close_fd()
        self.hub.defer_lost(self)

    def abort(self) -> None:
        """Close now, dropping what waits; connection_lost(None) follows."""
        if self._lost_reported or (self._closing and self.fd < 0):
            return
        self._closing = True
        self._close_fd()
        self.hub.defer_lost(self)

    def fail(self, exc: Exception) -> None:
        """A read or write failed (the client reset the connection), or the hub's handling of this
        connection's events raised: close; connection_lost(exc) follows."""
        if self.fd < 0:
            return
        self._closing = True
        self._lost_exc = exc
        self._close_fd()
        self.hub.defer_lost(self)

    def report_lost(self) -> None:
        if self._lost_reported:
            return
        self._lost_reported = True
        exc, self._lost_exc = self._lost_exc, None
        try:
            self.protocol.connection_lost(exc)
        except Exception as error:
            log.error("protocol.connection_lost() failed on %r", self, exc_info=error)

    # -- what a transport also tells -----------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return self._sockname()
        if name == "socket":
            if self.fd < 0:
                return default
            # For splice (engine/splice.py), which duplicates it. A duplicate of its own, so that closing
            # the returned socket object leaves this connection's descriptor alone.
            self._shared = True
            return socket.socket(fileno=os.dup(self.fd))
        return default

    def _sockname(self) -> Any:
        if self.fd < 0:
            return None
        family = socket.AF_INET6 if len(self.peer) == 4 else socket.AF_INET
        return self.server.sockname_of(family, self.fd)

    def get_protocol(self) -> LinkProtocol:
        return self.protocol

    def set_protocol(self, protocol: LinkProtocol) -> None:
        self.protocol = protocol

    # -- the epoll set -------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the socket, once the protocol has been told of the connection. (Not read at once: the
        ClientHello was in the socket at accept time for about one connection in seven on the handshake
        benchmark, so a read then was mostly a recv(2) for nothing.)"""
        self._rewatch()

    def _rewatch(self, rearm: bool = False) -> None:
        """Watch for what the connection waits for: input while reading, output while bytes wait.

        Edge-triggered (EPOLLET), as nginx watches its sockets: an event when input arrives or the kernel
        takes more output, not on every poll while a condition lasts. So an ended input (EOF) or an error
        raises one event and the socket can stay in the set until it is closed (close(2) takes it out):
        level-triggered, each needed an EPOLL_CTL_DEL (two per passthrough connection, both sides). Paused
        with nothing to write, the socket leaves the set (a splice relay moving its bytes would otherwise
        raise an event per piece); `rearm` (resume) re-adds or modifies it even when the events are the
        same, and the kernel then raises an event at once for what came in meanwhile."""
        if self.fd < 0:
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
        self._pending = []
        self._pending_size = 0
        # close(2) takes the socket out of the epoll set by itself, unless a duplicate of the descriptor is
        # still open (a splice relay's): only then is an explicit EPOLL_CTL_DEL needed.
        self.hub.forget(fd, self._watched != 0 and self._shared)
        self._watched = 0
        sock_syscalls.close_fd(fd)


class _Listening(HubMember):
    """One listening socket of a HubServer, in the hub's epoll set while serving."""

    def __init__(self, server: HubServer, sock: socket.socket) -> None:
        self.fd = sock.fileno()
        self._watched = 0
        self.server = server
        self.sock = sock

    def on_events(self, events: int) -> None:
        server = self.server
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = sock_syscalls.accept_peer(self.fd)
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    server.out_of_resources(self, exc)
                    return
                continue  # ECONNABORTED and the like: that connection is gone, the next one may be fine
            if accepted is None:
                return
            server.accepted(accepted[0], accepted[1])

    def abort(self) -> None:
        self.server.close()


class HubServer:
    """The HTTPS listening sockets, accepting into the loop's LinkHub (see the module docstring)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, make_protocol: ProtocolFactory | ProtocolMaker
    ) -> None:
        self.loop = loop
        # A ProtocolMaker is called in C (link_hub.pxd); any other factory is wrapped in one.
        self.make_protocol = (
            make_protocol if isinstance(make_protocol, ProtocolMaker) else ProtocolMaker(make_protocol)
        )
        self.hub = hub_for(loop)
        self.sockets: list[socket.socket] = []
        self._listening: list[_Listening] = []
        self._locals: dict[int, Any] = {}  # family: the bound address, when not a wildcard
        self._backlog = 100
        self.serving = False
        self.closed = False
        self._resume: asyncio.TimerHandle | None = None

    def bind(self, host: str | None, port: int, backlog: int) -> None:
        """Bind a socket per address of `host` (None: every interface, IPv4 and IPv6) as create_server
        does: SO_REUSEADDR, SO_REUSEPORT (the router's workers share the port), IPv6 sockets IPv6 only;
        and TCP_NODELAY, as uvloop sets it on each connection it accepts.
        OSError names the address that could not be bound; nothing stays bound then."""
        self._backlog = backlog
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        done: set[tuple[Any, ...]] = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in done:
                    continue
                done.add((family, address))
                try:
                    sock = socket.socket(family, kind, proto)
                except OSError:
                    continue  # a family the kernel does not have (IPv6 disabled): as create_server does
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # Every accepted connection inherits it (sock_syscalls.accept_peer): no setsockopt(2) each.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    sock.bind(address)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"error while attempting to bind on address {address!r}: {exc.strerror}"
                    ) from None
                sock.setblocking(False)
                if address[0] not in ("0.0.0.0", "::"):
                    self._locals[family] = sock.getsockname()  # else asked per connection (sockname_of)
            if not self.sockets:
                raise OSError(errno.EAFNOSUPPORT, f"no socket could be made for {host or '*'}:{port}")
        except BaseException:
            for sock in self.sockets:
                sock.close()
            self.sockets = []
            raise

    async def start_serving(self) -> None:
        """Listen and accept (asyncio.Server's method of the same name, for the router)."""
        if self.serving or self.closed:
            return
        self.serving = True
        for sock in self.sockets:
            sock.listen(self._backlog)
            listening = _Listening(self, sock)
            self._listening.append(listening)
            self.hub.watch(listening, _IN)

    def accepted(self, fd: int, peer: Any) -> None:
        try:
            protocol = self.make_protocol.make()
        except Exception:
            log.exception("making the protocol of a new connection failed")
            sock_syscalls.close_fd(fd)
            return
        link = ClientLink(self.hub, fd, peer, protocol, self)
        try:
            protocol.connection_made(link)
        except Exception as exc:
            link._callback_failed("connection_made", exc)
            return
        link.start()

    def out_of_resources(self, listening: _Listening, exc: OSError) -> None:
        """accept(2) failed for want of descriptors or memory: stop accepting for a moment rather than spin
        (the waiting connections stay in the kernel's queue), then go on."""
        log.warning("accepting paused for %.1fs: %s", ACCEPT_PAUSE, exc)
        for each in self._listening:
            if each._watched:
                self.hub.watch(each, 0)
        if self._resume is None:
            self._resume = self.loop.call_later(ACCEPT_PAUSE, self._accept_again)

    def _accept_again(self) -> None:
        self._resume = None
        if self.closed:
            return
        for each in self._listening:
            if not each._watched:
                self.hub.watch(each, _IN)

    def sockname_of(self, family: int, fd: int) -> Any:
        """The local address of accepted connection `fd`: the listening socket's, unless that one is bound
        to a wildcard address (then the kernel is asked)."""
        local = self._locals.get(family)
        if local is not None:
            return local
        sock = socket.socket(fileno=fd)
        try:
            return sock.getsockname()
        finally:
            sock.detach()

    def close(self) -> None:
        """Stop accepting and close the listening sockets (open connections go on)."""
        if self.closed:
            return
        self.closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for listening in self._listening:
            # Forgotten even when not watched (paused by out_of_resources): its number may be reused.
            self.hub.forget(listening.fd, listening._watched != 0)
            listening._watched = 0
        self._listening = []
        for sock in self.sockets:
            sock.close()
