# cython: annotation_typing=False
"""One epoll set per event loop for the sockets the router reads and writes itself, watched by the loop as
one reader (issue 5): a passthrough relay's endpoint side (engine/endpoint_link.py), and the HTTPS
listener's client connections with their listening sockets (engine/client_link.py).

When any of its sockets is ready the loop calls `LinkHub._ready`, which reads the ready events without
waiting and hands each to the socket's `HubMember`. Compiled, that is a C call per event: no uvloop
transport, protocol callback or handle is made for it. A member that ends a connection while a batch is
handed out (`forget`) makes the batch's later events for that descriptor number stale: they belonged to the
closed socket, not to a new one that got the same number.

Closes are reported after the batch (`defer_lost`): a connection's `connection_lost` is never called from
within one of its own calls (a write that fails, say), as asyncio guarantees for its transports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shiftroute.engine import sock_syscalls

log = logging.getLogger("shiftroute.engine")

# What the edge-triggered read loop of a socket of the router's own does after a read that returned bytes
# (`after_bytes`; ClientLink._read and EndpointLink._read).
READ_EMPTY = 0  # stop: the socket is empty, and the next bytes raise a new event
READ_AGAIN = 1  # read again: more may be there, or a reset or error waits to be read
READ_END = 2  # the peer's end: every byte before its FIN has been read


def after_bytes(got: int, asked: int, events: int) -> int:
    """After a read of `asked` bytes that returned `got` (at least one) in an event with `events`.

    Edge-triggered, no event comes again for what is already there. A read shorter than asked for has
    emptied the socket: what arrives after it raises a new event. Not so an end already there when the
    event was read: a FIN, a reset or an error (EPOLLRDHUP, EPOLLHUP, EPOLLERR) has raised its only event.
    - A FIN with no error is the end at once: the kernel processes a FIN in sequence, so every byte before
      it was queued when the event was read, and the short read took them all (HAProxy's rule too, which
      saves the recv(2) that would return 0 on every connection that closes after its last bytes).
    - A reset or error is read until recv(2) reports it, so that a reset is never taken for a clean end."""
    if got == asked:
        return READ_AGAIN
    if events & sock_syscalls.EPOLLRDHUP and not events & sock_syscalls.EPOLLERR:
        return READ_END
    if events & (sock_syscalls.EPOLLERR | sock_syscalls.EPOLLHUP):
        return READ_AGAIN
    return READ_EMPTY


class HubMember:
    """A socket in a LinkHub's epoll set: `fd` (-1 once closed), the events watched (`_watched`, 0: not in
    the set), and what to do when it is ready (`on_events`). A base type so that, compiled, the hub calls
    each kind in C."""

    def __init__(self) -> None:
        # Subclasses set both themselves (compiled, a super().__init__ call per connection is a Python call).
        self.fd = -1
        self._watched = 0

    def on_events(self, events: int) -> None:
        pass

    def abort(self) -> None:
        pass

    def fail(self, exc: Exception) -> None:
        """Handling this member's events raised `exc` (LinkHub._ready logged it): end it, and tell whoever
        relies on it. The base aborts."""
        self.abort()

    def report_lost(self) -> None:
        """Called by the hub after the batch that closed this member (`LinkHub.defer_lost`)."""


class LinkProtocol:
    """The protocol of a connection on a socket of the router's own (engine/client_link.py): asyncio's
    protocol methods, on a base type so that, compiled, the connection calls them in C (the HTTPS
    listener, engine/listeners.py, derives from it; so does the HTTP one, which stays on the loop's
    transports, and is called by the loop as any protocol is)."""

    def connection_made(self, transport: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Any) -> None:  # an Exception or None (Any: the .pxd's `object`)
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class ProtocolMaker:
    """Makes the protocol of each connection a HubServer accepts (engine/client_link.py): `factory()`, or
    a subclass's own `make` (the HTTPS listener's, engine/listeners.py), which the server then calls in C
    where a factory (functools.partial, then the protocol's __init__ with an argument tuple) was two
    Python-level calls per connection. Callable, so it serves as a loop server's protocol factory too."""

    def __init__(self, factory: Callable[[], LinkProtocol]) -> None:
        self.factory = factory

    def make(self) -> LinkProtocol:
        return self.factory()

    def __call__(self) -> LinkProtocol:
        return self.make()


class LinkHub:
    """The epoll set of one event loop's HubMembers (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epfd = sock_syscalls.epoll_open()
        self.links: dict[int, HubMember] = {}
        # Descriptors closed while a batch of events is handed out: the batch's later events for such a
        # number are the closed socket's, not those of a new socket that reuses the number.
        self._stale: set[int] = set()
        self._dispatching = False
        self._lost: list[HubMember] = []  # closed: connection_lost is reported after the batch
        self._lost_scheduled = False
        loop.add_reader(self.epfd, self._ready)

    def watch(self, member: HubMember, events: int) -> None:
        """Watch `member`'s socket for `events` (0: take it out of the set)."""
        fd = member.fd
        if events == 0:
            sock_syscalls.epoll_remove(self.epfd, fd)
        elif member._watched:
            sock_syscalls.epoll_modify(self.epfd, fd, events)
        else:
            sock_syscalls.epoll_add(self.epfd, fd, events)
            self.links[fd] = member
        member._watched = events

    def forget(self, fd: int, remove: bool) -> None:
        """`fd` is about to be closed; `remove`: take it out of the epoll set first (close(2) does that
        itself when no duplicate of the descriptor remains open)."""
        if remove:
            sock_syscalls.epoll_remove(self.epfd, fd)
        self.links.pop(fd, None)
        if self._dispatching:
            self._stale.add(fd)

    def defer_lost(self, member: HubMember) -> None:
        """Call `member.report_lost()` once the current batch (or the current loop callback) is done."""
        self._lost.append(member)
        if not self._dispatching and not self._lost_scheduled:
            self._lost_scheduled = True
            self.loop.call_soon(self._report_lost)

    def _report_lost(self) -> None:
        self._lost_scheduled = False
        while self._lost:
            lost, self._lost = self._lost, []
            for member in lost:
                member.report_lost()

    def _ready(self) -> None:
        while True:
            count = sock_syscalls.epoll_poll(self.epfd)
            self._dispatching = True
            try:
                for i in range(count):
                    fd = sock_syscalls.ready_fd(i)
                    link = self.links.get(fd)
                    if link is not None and not (self._stale and fd in self._stale):
                        try:
                            link.on_events(sock_syscalls.ready_events(i))
                        except Exception as exc:
                            # One member's failure must not cost the rest of the batch its events: they
                            # were taken from the kernel, and edge-triggered they do not come again.
                            self._member_failed(link, exc)
            finally:
                self._dispatching = False
                self._stale.clear()
            if self._lost:
                self._report_lost()
            if count < sock_syscalls.MAX_EVENTS:
                return

    def _member_failed(self, member: HubMember, exc: Exception) -> None:
        log.error("handling the events of %r failed; it is closed", member, exc_info=exc)
        try:
            member.fail(exc)
        except Exception:
            log.exception("closing %r after a failure failed too", member)


_hubs: dict[asyncio.AbstractEventLoop, LinkHub] = {}


def hub_for(loop: asyncio.AbstractEventLoop) -> LinkHub:
    """The loop's LinkHub, made on first use."""
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            sock_syscalls.epoll_close(_hubs.pop(old).epfd)  # its loop has gone, and the loop's reader too
        hub = _hubs[loop] = LinkHub(loop)
    return hub
