"""The client-facing listeners: HTTP (plain) and HTTPS (ClientHello inspection, then passthrough relay or
TLS termination), one asyncio Protocol per connection."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, cast

from shiftroute.engine import clock
from shiftroute.engine.client_link import ClientLink
from shiftroute.engine.context import RouterContext
from shiftroute.engine.link_hub import LinkProtocol, ProtocolMaker
from shiftroute.engine.outbox import Outbox
from shiftroute.engine.tls import TlsLayer
from shiftroute.protocol import responses
from shiftroute.protocol.tls_hello import ClientHelloError, NotTLSError, parse_client_hello
from shiftroute.routing.table import passthrough_for

if TYPE_CHECKING:
    from shiftroute.engine.http_session import HttpSession
    from shiftroute.engine.passthrough import Passthrough
    from shiftroute.routing.table import Backend

log = logging.getLogger("shiftroute.engine")


# The session and relay types, imported on first use, not at the top: compiled, the session's base type
# cimports _ClientBase (session_base.pxd) and the relay cimports HttpsClientProtocol (passthrough.pxd), so
# importing either imports this module first, and a top-level import back would find it half made. Kept
# once imported: an import statement per connection costs a microsecond.
_session_type: type[HttpSession] | None = None
_passthrough_type: type[Passthrough] | None = None


def _new_session(ctx: RouterContext, down: _ClientBase) -> HttpSession:
    global _session_type
    if _session_type is None:
        from shiftroute.engine.http_session import HttpSession

        _session_type = HttpSession
    return _session_type(ctx, down)


def _new_passthrough(client: HttpsClientProtocol, backend: Backend, hello: bytes) -> Passthrough:
    global _passthrough_type
    if _passthrough_type is None:
        from shiftroute.engine.passthrough import Passthrough

        _passthrough_type = Passthrough
    return _passthrough_type(client, backend, hello)


class _ClientBase(LinkProtocol):
    """What both listeners share: the Downstream interface of HttpSession, limits and bookkeeping.

    An asyncio protocol by its methods, not by inheritance: compiled, the listeners are extension types
    (listeners.pxd), which cannot subclass asyncio.Protocol; uvloop and asyncio take any object with the
    protocol's methods (router.py casts the factories for mypy). A LinkProtocol (engine/link_hub.py), so
    that a ClientLink (engine/client_link.py) calls the HTTPS listener's methods in C."""

    def __init__(self, ctx: RouterContext) -> None:
        self._setup(ctx)

    def _setup(self, ctx: RouterContext) -> None:
        """__init__ of both listeners (the HTTPS one calls it in C, where super().__init__ was a Python
        call per connection)."""
        self.ctx = ctx
        self.secure = False  # an instance attribute (in the C struct when compiled), set by the HTTPS one
        self.transport: asyncio.Transport | None = None
        # The transport again when it is the router's own (engine/client_link.py, the HTTPS default),
        # else None. Typed (listeners.pxd), so the calls that each connection makes on it (write, EOF,
        # close, reading paused) are C calls; the transport's are Python method calls (a lookup by name
        # through its type), about 0.3k instructions each.
        self.link: ClientLink | None = None
        # Every write to the client goes through it (engine/outbox.py), and it is flushed before the
        # transport is closed, aborted or half-closed. Made by the first write (_outbox): a passthrough
        # relay writes to the transport directly and never needs one.
        self.outbox: Outbox | None = None
        # Kept, and taken from the context when the router put its loop there: asyncio.get_running_loop()
        # makes a getpid() system call each time (CPython 3.11), and the relay asks for the time on every
        # piece it moves.
        self.loop = ctx.loop if ctx.loop is not None else asyncio.get_running_loop()
        self.session: HttpSession | None = None
        self.peer_ip = ""
        self.local_port = 0
        self.sni: str | None = None
        self.writing_paused = False
        self._reading_paused = False
        self.closed = False
        self.lingering = False  # finished: reading only to discard, until the peer closes or time is up
        self.peer_eof = False  # the client has half-closed: it sends nothing more
        # The connection's current deadline (see arm), and its slot in ctx.deadlines (0: none).
        self.deadline = 0.0
        self._deadline_slot = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made(transport)

    def _made(self, transport: asyncio.BaseTransport) -> bool:
        """connection_made of both listeners (they call it in C, where `super().connection_made` made a
        super object and looked the method up): False when the connection was refused."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        # The local port is converted only when a request needs it (server_port).
        peer: Any
        if isinstance(transport, ClientLink):  # compiled, a C type check
            link = self.link = transport
            peer = link.peer  # from accept4 (engine/sock_syscalls.py)
        else:
            # uvloop reads both addresses when it makes the transport: a lookup, not a system call.
            peer = transport.get_extra_info("peername")
        if peer is None:
            peer = ("", 0)
        self.peer_ip = str(peer[0])
        counters = self.ctx.counters
        if len(self.ctx.connections) >= self.ctx.limits.max_connections:
            # hardening.md rule 15: above the limit new connections are refused; open ones keep working.
            counters.connections_refused += 1
            self.abort()
            return False
        self.ctx.connections.add(self)
        counters.connections_total += 1
        counters.connections_current += 1
        return True

    def server_port(self) -> int:
        """The port the client connected to (X-Forwarded-Port), read from the transport on first use: a
        passthrough relay never needs it, and uvloop makes a tuple and a string of the address each time."""
        if not self.local_port and self.transport is not None:
            local = self.transport.get_extra_info("sockname") or ("", 0)
            self.local_port = int(local[1])
        return int(self.local_port)

    def connection_lost(self, exc: Any) -> None:  # an Exception or None (Any: compiled, the .pxd's `object`)
        self._lost()

    def _lost(self) -> None:
        """connection_lost of both listeners (a C call from the HTTPS one, as _made)."""
        if self.closed:
            return
        self.closed = True
        # Taken out, not left to find a closed transport: a pending deadline would hold this connection
        # (its session, TLS objects and buffers) in memory until it passed.
        self.disarm()
        connections = self.ctx.connections
        if self in connections:
            connections.discard(self)
            self.ctx.counters.connections_current -= 1
        if self.session is not None:
            self.session.connection_lost()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.session is not None:
            self.session.client_writable()

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            link = self.link
            if link is not None:
                link.pause_reading()
            else:
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            link = self.link
            if link is not None:
                link.resume_reading()
            else:
                self.transport.resume_reading()

    def finish(self) -> None:
        """Close after what was written has been sent, in stages (RFC 9112 §9.6): stop writing, then keep
        reading and discarding for up to the fin timeout, so a client with unread request bytes in flight
        gets our last response rather than a TCP reset that can destroy it."""
        if self.closed or self.lingering or self.transport_closing():
            return
        self.flush()
        transport = self.transport
        if self.peer_eof or (self.link is None and transport is not None and not transport.can_write_eof()):
            # Nothing can arrive any more that a reset could destroy: close now (after what is buffered
            # has been written), as HAProxy does once both sides are done, rather than hold the socket
            # for the fin timeout. (A ClientLink can always write EOF.)
            self.close_transport()
            return
        self.lingering = True
        self.write_eof_now()
        self.resume_reading()
        self.arm(self.ctx.limits.client_fin_timeout)

    # -- the deadline --------------------------------------------------------------------------------

    def arm(self, seconds: float) -> None:
        """Move the connection's deadline: the ClientHello and handshake, then a passthrough relay's
        connect and its idle tunnel, or the fin timeout of a finished connection. One entry in the
        router's deadlines (engine/deadlines.py) serves them all: it is moved only when the deadline
        comes earlier (a later one is found when it fires), so a short connection adds one entry and a
        relayed piece costs only a clock read."""
        self.arm_from(clock.monotonic(), seconds)

    def arm_from(self, now: float, seconds: float) -> None:
        """`arm`, for a caller that has just read the clock (`now`, engine/clock.py): one read saved."""
        self.deadline = deadline = now + seconds
        self._deadline_slot = self.ctx.deadlines.move(self, self._deadline_slot, deadline)

    def disarm(self) -> None:
        if self._deadline_slot:
            self.ctx.deadlines.remove(self, self._deadline_slot)
            self._deadline_slot = 0

    def on_deadline(self) -> None:
        """Called by the router's deadlines when the slot this connection was in has ended."""
        self._deadline_slot = 0
        if self.closed:
            return
        if clock.monotonic() < self.deadline:
            self._deadline_slot = self.ctx.deadlines.add(self, self.deadline)  # moved later meanwhile
            return
        self.deadline_passed()

    def deadline_passed(self) -> None:
        if self.lingering:
            self._close_now()  # the fin timeout: the client did not close in time

    def _close_now(self) -> None:
        if not self.transport_closing():
            self.flush()
            self.close_transport()

    def abort(self) -> None:
        if self.transport is not None:
            # What was sent before reaches the socket first, as it did when every write went out at once
            # (an error response followed by an abort).
            self.flush()
            link = self.link
            if link is not None:
                link.abort()
            else:
                self.transport.abort()

    def flush(self) -> None:
        """Hand what this iteration wrote to the transport now (engine/outbox.py)."""
        if self.outbox is not None:
            self.outbox.flush()

    def _outbox(self) -> Outbox | None:
        """The connection's outbox, made on first use; None before connection_made."""
        outbox = self.outbox
        if outbox is None and self.transport is not None:
            outbox = self.outbox = Outbox(self.transport, self.loop, self.ctx.writes)
        return outbox

    def send(self, data: bytes) -> None:
        """To the client as it is (the HTTP listener; the HTTPS one encrypts first). Defined here, on the
        type the session holds, so that the session's call is a C call when compiled. Nothing is sent
        once the connection has half-closed (finish): a late 408 from the session's timer, say."""
        if not self.closed and not self.lingering:
            outbox = self._outbox()
            if outbox is not None:
                outbox.write(data)

    # -- the transport, without the outbox (the passthrough relay) ----------------------------------

    def write_now(self, data: bytes) -> None:
        """Write to the transport at once (what the passthrough relay moves: not batched, see
        engine/outbox.py). Nothing once the connection is lost."""
        if self.closed:
            return
        link = self.link
        if link is not None:
            link.write(data)
        elif self.transport is not None:
            self.transport.write(data)

    def write_eof_now(self) -> None:
        """Half-close the transport (after what it holds); nothing once the connection is lost."""
        if self.closed:
            return
        link = self.link
        if link is not None:
            link.write_eof()
        elif self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def transport_closing(self) -> bool:
        """No transport, or it is closing (closed, aborted or lost)."""
        link = self.link
        if link is not None:
            return link.is_closing()
        return self.transport is None or self.transport.is_closing()

    def close_transport(self) -> None:
        """Close the transport after what it holds."""
        link = self.link
        if link is not None:
            link.close()
        elif self.transport is not None:
            self.transport.close()

    @property
    def idle(self) -> bool:
        """No request in flight: safe to close when draining."""
        session = self.session
        return session is None or (not session.queue and session.tunnel is None)


class HttpClientProtocol(_ClientBase):
    """The HTTP listener (OpenShift: port 80)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._made(transport):
            self.session = _new_session(self.ctx, self)

    def data_received(self, data: bytes) -> None:
        if self.session is not None and not self.lingering:
            self.session.feed(data)

    def eof_received(self) -> bool:
        if self.lingering:
            return False
        self.peer_eof = True
        if self.session is not None:
            self.session.peer_eof()
        return True


class HttpsClientProtocol(_ClientBase):
    """The HTTPS listener (OpenShift: port 443): read the ClientHello without terminating; relay it to a
    passthrough route chosen by SNI, or terminate TLS with the route's or the default certificate."""

    def __init__(self, ctx: RouterContext, default_context: Any) -> None:
        self._setup_https(ctx, default_context)

    def _setup_https(self, ctx: RouterContext, default_context: Any) -> None:
        """__init__, called in C by HttpsProtocols.make."""
        self._setup(ctx)
        self.secure = True
        self._default_context = default_context  # a callable returning the current default SSLContext
        self._hello: bytearray | None = None  # a ClientHello that came in pieces, until it is whole
        self._tls: TlsLayer | None = None
        self._passthrough: Passthrough | None = None
        self._phase = "hello"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._made(transport):
            # routes.md §7: wait at most 5 s for the ClientHello (and the handshake).
            self.arm(self.ctx.limits.hello_timeout)

    def deadline_passed(self) -> None:
        if self.lingering:
            self._close_now()
        elif self._passthrough is not None:
            self._passthrough.deadline_reached()  # its connect timeout, or its tunnel idle too long
        else:
            self.abort()  # no ClientHello or handshake in time

    def connection_lost(self, exc: Any) -> None:  # an Exception or None (Any: compiled, the .pxd's `object`)
        self.disarm()
        if self._passthrough is not None:
            self._passthrough.client_lost(exc)
        self._lost()

    @property
    def idle(self) -> bool:
        return self._phase in ("hello", "handshake") or (self._phase == "http" and super().idle)

    # -- bytes in ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        phase = self._phase
        if phase == "http":
            self._decrypt(data)
        elif (passthrough := self._passthrough) is not None:
            passthrough.client_data(data)
        elif phase == "hello":
            self._hello_in(data)
        elif phase == "handshake":
            self._decrypt(data)

    def eof_received(self) -> bool:
        if self.lingering:
            return False
        self.peer_eof = True
        if self._passthrough is not None:
            self._passthrough.client_eof()
            return True
        if self._phase == "http" and self.session is not None:
            self.session.peer_eof()
            return True
        self.flush()  # asyncio closes the transport on False: what was written goes first
        return False

    def _hello_in(self, data: bytes) -> None:
        buffer = self._hello
        received: bytes | bytearray
        if buffer is None:
            received = data  # the usual case, the whole ClientHello in one read: parsed as it came
        else:
            buffer += data  # amortized: a client sending a byte at a time costs no quadratic copying
            received = buffer
        try:
            hello = parse_client_hello(received)
        except NotTLSError:
            # Plain HTTP on the HTTPS port: say so in plain HTTP, then close.
            self.send_raw(responses.error(400, "this port speaks TLS (use https://)"))
            self.finish()
            return
        except ClientHelloError as exc:
            log.debug("client %s: bad ClientHello: %s", self.peer_ip, exc)
            self.abort()
            return
        if hello is None:
            if buffer is None:
                self._hello = bytearray(data)
            return
        self._hello = None
        whole = data if buffer is None else bytes(buffer)
        table = self.ctx.holder.current
        sni = hello.sni
        self.sni = sni
        backend = passthrough_for(table, sni) if sni else None
        if backend is not None:
            self._phase = "relay"
            self._passthrough = _new_passthrough(self, backend, whole)
            self._passthrough.start()
            return
        context = (table.serving_context(sni) if sni else None) or self._default_context()
        self._phase = "handshake"
        self._tls = TlsLayer(context, server_side=True)
        self._decrypt(whole)

    def _decrypt(self, data: bytes) -> None:
        tls = self._tls
        assert tls is not None
        try:
            pieces, out, peer_closed = tls.feed(data)
        except ssl.SSLError as exc:
            log.debug("client %s: TLS handshake failed: %s", self.peer_ip, exc)
            if out := tls.close_notify():
                self.send_raw(out)
            self.abort()
            return
        if out:
            self.send_raw(out)
        if self._phase == "handshake" and tls.handshake_done:
            self._phase = "http"
            self.disarm()  # the session keeps its own deadlines
            self.session = _new_session(self.ctx, self)
        session = self.session
        if session is not None:
            for piece in pieces:
                session.feed(piece)
                if session.closed:
                    return
            if peer_closed:
                session.peer_eof()

    # -- Downstream (HttpSession writes through TLS) ----------------------------------------------

    def send_raw(self, data: bytes) -> None:
        if not self.closed and not self.lingering:
            outbox = self._outbox()
            if outbox is not None:
                outbox.write(data)

    def send(self, data: bytes) -> None:
        if self._tls is not None and not self.closed and not self.lingering:
            outbox = self._outbox()
            if outbox is not None:
                outbox.write(self._tls.encrypt(data))

    def finish(self) -> None:
        if self.closed or self.lingering or self.transport_closing():
            return  # finished already (the drain asks every idle connection, lingering ones too)
        if self._tls is not None and self._phase == "http":
            self.send_raw(self._tls.close_notify())
        # The base class named, not super(): compiled, finish is a cpdef method, which has no __class__ cell.
        _ClientBase.finish(self)

    def resume_writing(self) -> None:
        _ClientBase.resume_writing(self)  # named, not super(): compiled, a cpdef method has no __class__ cell
        if self._passthrough is not None:
            self._passthrough.client_writable()


class HttpsProtocols(ProtocolMaker):
    """The HTTPS listener's protocol for each connection the router's own server accepts
    (engine/client_link.py calls `make` in C), and for the loop's server (called)."""

    def __init__(self, ctx: RouterContext, default_context: Any) -> None:
        # ProtocolMaker.__init__ not called: `factory` serves only the base type's `make`, overridden here.
        self.ctx = ctx
        self.default_context = default_context  # a callable returning the current default SSLContext

    def make(self) -> HttpsClientProtocol:
        # Made without calling the type (compiled: tp_new, then _setup_https as a C call, no argument
        # tuple for __init__).
        protocol = HttpsClientProtocol.__new__(HttpsClientProtocol)
        protocol._setup_https(self.ctx, self.default_context)
        return protocol
