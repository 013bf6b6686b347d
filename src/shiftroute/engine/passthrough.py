# cython: annotation_typing=False
"""A passthrough route's connection once its ClientHello is read (routes.md §4 step 1): admit the client,
choose an endpoint, connect (moving on to the next endpoint when one refuses or does not accept in time),
relay the untouched TLS bytes both ways, hand bulk transfers to splice(2), and write the access-log line
when it ends.

The client side stays the HTTPS listener's protocol (engine/listeners.py): it owns the socket and the
connection's deadline (engine/deadlines.py), and passes its bytes, its EOF, its deadline and its close on
to Passthrough. The endpoint side is an EndpointLink, a socket of the router's own (numeric endpoint
addresses), or a RelayUpstream on a loop transport (names): engine/endpoint_link.py. Back-pressure both
ways (a side that cannot write pauses the other side's reading, hardening.md rule 16) and half-close: EOF
from one side is passed on as a write EOF to the other; the connection ends when both sides are done or
the tunnel has been idle too long.

Compiled (passthrough.pxd, endpoint_link.pxd), the two sides call each other in C: a relayed piece crosses
them once per direction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from shiftroute.engine import clock, decide, splice
from shiftroute.engine.endpoint_link import EndpointLink, RelayPeer, RelayUpstream
from shiftroute.engine.link_hub import hub_for
from shiftroute.engine.upstream import describe_connect_error
from shiftroute.routing.table import Backend, Server

if TYPE_CHECKING:
    from shiftroute.engine.listeners import HttpsClientProtocol

# Read once: module attributes are dictionary lookups each time, and a relayed piece checks both.
_SPLICE_AVAILABLE = splice.AVAILABLE
_SPLICE_AFTER_BYTES = splice.AFTER_BYTES


class Passthrough(RelayPeer):
    """One relayed connection: the client protocol on one side, the endpoint side (an EndpointLink or a
    RelayUpstream) on the other; it calls the relay_* and link_* methods below."""

    def __init__(self, client: HttpsClientProtocol, backend: Backend, hello: bytes) -> None:
        self.client = client
        # Read through the typed attribute (passthrough.pxd): compiled, struct reads, where the untyped
        # argument's were generic attribute lookups.
        self.ctx = self.client.ctx
        self.loop = self.client.loop
        self.backend = backend
        self.relay: RelayUpstream | None = None
        self._hello = hello  # sent to each endpoint tried, first
        self._buffer: list[bytes] = []  # what the client sent after it, before the endpoint accepted
        self._tried: frozenset[str] = frozenset()
        # The connect in progress: an EndpointLink connecting, or the loop's create_connection coroutine
        # (an endpoint named, not numeric) and the future it waits on.
        self._connect_link: EndpointLink | None = None
        self._connecting: Coroutine[Any, Any, tuple[asyncio.BaseTransport, asyncio.Protocol]] | None = None
        self._connect_waiting: asyncio.Future[Any] | None = None
        self._connect_server: Server | None = None
        self._connect_timed_out = False
        self._server: Server | None = None  # the endpoint relayed to, until the access-log line is written
        self._splice: splice.SpliceRelay | None = None
        self._admitted = False  # counted in the route's per-client connection limits
        self._started = 0.0
        self._bytes_up = 0
        self._bytes_down = 0
        # The idle timeout (tunnel, or client-fin once one side is done) is checked, not moved per piece:
        # a relayed piece only adds to the byte counts, and the connection's timer, firing every
        # `_idle_step`, compares them with what it saw last (see deadline_reached).
        self._idle_limit = 0.0
        self._idle_step = 0.0
        self._quiet_since = 0.0  # the check that last saw bytes move (or the relay's start)
        self._seen = 0  # bytes moved as of that check

    def start(self) -> None:
        client = self.client
        if not decide.admit_connection(self.ctx, self.backend, client.peer_ip):
            client.abort()  # refused at connection level (allowlist, rate limits)
            return
        self._admitted = True
        self._connect()
        if self.relay is None and not client.closed:
            # Still connecting: nothing more is read from the client until the endpoint has accepted
            # (hardening.md rule 16; _connected resumes). Paused only now: on loopback the connect has
            # usually completed within _connect, and a pause and resume in one iteration would cost two
            # calls into the loop and an epoll change for nothing.
            client.pause_reading()

    # -- connecting ----------------------------------------------------------------------------------

    def _connect(self) -> None:
        backend, client = self.backend, self.client
        server = self.ctx.registry.choose(backend, client.peer_ip, self._tried)
        if server is None:
            why = "no endpoints" if not backend.servers else "no endpoint available"
            self.ctx.log_failure(backend, "-", why)
            client.abort()
            return
        self._tried = self._tried | {server.id}
        self._connect_server = server
        self._connect_timed_out = False
        client.arm(backend.timeouts.connect)  # the connect timeout: deadline_reached cancels the connect
        # The hub of the client's own link when it has one: hub_for looks the loop up in a dictionary.
        client_link = client.link
        hub = client_link.hub if client_link is not None else hub_for(self.loop)
        link = self._connect_link = EndpointLink(self, hub)
        try:
            numeric = link.connect(server.address, server.port, self._hello)  # the link sends the hello
        except OSError as exc:  # refused at once (no route to the address, no descriptors left)
            self._connect_link = None
            self._connected(None, exc)
            return
        if numeric:
            return  # link_connected or link_failed follows, or has been called already (loopback)
        self._connect_link = None
        # A name: the loop's create_connection resolves it. Its coroutine is driven here, not by an
        # asyncio Task: a Task is an object registered in asyncio's WeakSet of tasks (Python code, again
        # when it dies), stepped through two more callbacks. _connect_step does what Task.__step does for
        # this one coroutine: it resumes it, and waits on the future it yields.
        self._connecting = self.loop.create_connection(self._make_relay, server.address, server.port)
        self._connect_step(None)

    def link_connected(self, link: RelayUpstream) -> None:
        self._connect_link = None
        self._connected(link, None)

    def link_failed(self, exc: Any) -> None:  # an OSError (Any: compiled, the .pxd's `object`)
        self._connect_link = None
        self._connected(None, exc)

    def _connect_step(self, waited: asyncio.Future[Any] | None) -> None:
        """Resume the connect coroutine (after `waited`, the future it yielded, is done); on its end, pass
        its result or error to _connected. A cancelled `waited` (deadline_reached, client_lost) is thrown
        into it as CancelledError, as a Task would: create_connection then closes its transport."""
        coro = self._connecting
        if coro is None:
            return
        self._connect_waiting = None
        try:
            if waited is not None and waited.cancelled():
                yielded = coro.throw(asyncio.CancelledError())
            else:
                yielded = coro.send(None)
        except StopIteration as finished:
            self._connecting = None
            self._connected(finished.value[1], None)  # (transport, protocol): the protocol is the relay
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._connecting = None
            self._connected(None, exc)
            return
        if yielded is None:  # a bare yield (asyncio.sleep(0)): resume on the next iteration
            self.loop.call_soon(self._connect_step, None)
            return
        if not isinstance(yielded, asyncio.Future) and not asyncio.isfuture(yielded):  # a C check first
            coro.close()
            self._connecting = None
            self._connected(None, RuntimeError(f"connect awaited {yielded!r}, not a future"))
            return
        self._connect_waiting = yielded
        yielded.add_done_callback(self._connect_step)

    def _cancel_connect(self, timed_out: bool) -> None:
        """Stop a connect in progress: the endpoint did not accept in time (`timed_out`: _connected logs it
        and tries another one), or the client has gone. A connecting link is closed at once; the coroutine's
        future is cancelled, and _connect_step throws CancelledError into it when the future's callback runs
        (on the next iteration, as with a Task)."""
        link = self._connect_link
        if link is not None:
            self._connect_link = None
            link.abort()
            if timed_out:
                self._connected(None, TimeoutError())
            return
        waiting = self._connect_waiting
        if waiting is not None:
            waiting.cancel()

    def _make_relay(self) -> asyncio.Protocol:
        return cast(asyncio.Protocol, RelayUpstream(self))  # a protocol by its methods (see RelayUpstream)

    def _connected(self, relay: RelayUpstream | None, exc: BaseException | None) -> None:
        """The connect ended: `relay` is the connected endpoint side, or `exc` what failed."""
        backend, server, client = self.backend, self._connect_server, self.client
        assert server is not None
        if isinstance(exc, asyncio.CancelledError) and self._connect_timed_out:
            exc = TimeoutError()  # cancelled by deadline_reached: the connect timeout
        if client.closed:
            if relay is not None:
                relay.abort()
            return
        if exc is not None:
            self.ctx.registry.connect_failed(server)
            self.ctx.log_failure(backend, server.label, describe_connect_error(exc))
            if len(self._tried) < self.ctx.limits.max_connect_attempts and self.ctx.registry.candidates(
                backend, self._tried
            ):
                self._connect()
            else:
                client.abort()
            return
        self.ctx.registry.connect_succeeded(server)
        assert relay is not None
        self.relay = relay
        # A named local: Cython 3.1 miscompiles `registry.state(server).active += 1` (a C call's result).
        state = self.ctx.registry.state(server)
        state.active += 1
        self._server = server
        self._bytes_up += len(self._hello)
        if not isinstance(relay, EndpointLink):
            relay.write(self._hello)  # an EndpointLink has sent it already (EndpointLink.connect)
        for piece in self._buffer:
            self._bytes_up += len(piece)
            relay.write(piece)
        self._buffer = []
        self._started = clock.monotonic()
        self._idle_after(backend.timeouts.tunnel)
        if client.peer_eof:
            relay.write_eof()
        client.resume_reading()

    # -- the client side's events, passed on by the listener -----------------------------------------

    def client_data(self, data: bytes) -> None:
        relay = self.relay
        if relay is None:
            self._buffer.append(data)
            return
        self._bytes_up += len(data)
        relay.write(data)
        self._maybe_splice()

    def client_eof(self) -> None:
        relay = self.relay
        if relay is not None:
            if relay.eof:
                # Both sides are done: closing the client closes the endpoint too (client_lost), which
                # sends it our EOF; a shutdown(2) before that would be a system call for nothing.
                self.client.finish()
            else:
                relay.write_eof()

    def client_writable(self) -> None:
        if self.relay is not None:
            self.relay.resume_reading()

    def deadline_reached(self) -> None:
        if self._connect_link is not None or self._connecting is not None:
            # The endpoint did not accept in time: _connected logs it and tries another one.
            self._connect_timed_out = True
            self._cancel_connect(True)
            return
        if self.relay is None:
            self.client.abort()
            return
        now = clock.monotonic()
        moved = self._moved()
        if moved != self._seen:
            # Bytes moved within the last step: idle for less than a step. A moving half-closed relay is
            # back on the tunnel timeout (as when every piece moved the deadline).
            self._seen = moved
            self._quiet_since = now
            self._set_idle_limit(self.backend.timeouts.tunnel)
        elif now - self._quiet_since >= self._idle_limit:
            self.client.abort()  # the tunnel sat idle too long (closed within a step of its timeout)
            return
        self.client.arm(min(self._idle_step, self._quiet_since + self._idle_limit - now))

    def _idle_after(self, seconds: float) -> None:
        """From now on the relay is closed after `seconds` without a byte moving either way."""
        self._set_idle_limit(seconds)
        self._quiet_since = now = clock.monotonic()
        self._seen = self._moved()
        self.client.arm_from(now, min(self._idle_step, seconds))

    def _set_idle_limit(self, seconds: float) -> None:
        """The idle check runs every eighth of the timeout, at most every minute: a tunnel idle for 1 h
        is closed within 1 h 1 min. In exchange a relayed piece costs no clock read and no timer move."""
        self._idle_limit = seconds
        self._idle_step = max(0.001, min(seconds / 8, 60.0))

    def _moved(self) -> int:
        spliced = self._splice
        if spliced is None:
            return self._bytes_up + self._bytes_down
        return self._bytes_up + self._bytes_down + spliced.up.moved + spliced.down.moved

    def client_lost(self, exc: Exception | None) -> None:
        if self._connect_link is not None or self._connecting is not None:
            self._cancel_connect(False)
        if self._splice is not None:
            self._splice.close(error=True)
        relay = self.relay
        if relay is not None:
            if exc is None and self.client.peer_eof and relay.eof:
                relay.close()  # both sides are done: what is still buffered for the endpoint goes out first
            else:
                relay.abort()
        self._done()
        if self._admitted:
            self._admitted = False
            decide.release_connection(self.ctx, self.backend.label, self.client.peer_ip)

    # -- the endpoint side's events, passed on by RelayUpstream ---------------------------------------

    def relay_data(self, data: bytes) -> None:
        client = self.client
        if not client.closed:
            self._bytes_down += len(data)
            client.write_now(data)
            if client.writing_paused and self.relay is not None:
                self.relay.pause_reading()
            else:
                self._maybe_splice()

    def relay_eof(self) -> None:
        client = self.client
        client.write_eof_now()
        if client.peer_eof:
            client.finish()
        else:
            # routes.md §7: client-fin/server-fin 1 s once one side has finished (HAProxy: inactivity on a
            # half-closed connection).
            self._idle_after(self.ctx.limits.client_fin_timeout)

    def relay_closed(self) -> None:
        self._done()
        self.client.finish()

    def relay_paused(self, paused: bool) -> None:
        if paused:
            self.client.pause_reading()
        else:
            self.client.resume_reading()

    # -- splice(2) -----------------------------------------------------------------------------------

    def _maybe_splice(self) -> None:
        """Bulk transfers go to the kernel once they prove to be bulk: setting splice up (two pipes, two
        duplicate sockets) costs more than it saves on a connection that carries a request or two."""
        if (
            self._bytes_up + self._bytes_down >= _SPLICE_AFTER_BYTES  # first: false on short connections
            and _SPLICE_AVAILABLE
            and self._splice is None
            and self.relay is not None
            and not self.client.peer_eof
            and not self.relay.eof
        ):
            self._start_splice(self.relay)

    def _start_splice(self, relay: RelayUpstream) -> bool:
        """Hand the relay to the kernel (splice) when both transports have nothing left to write."""
        client = self.client.transport
        if client is None or client.get_write_buffer_size() or relay.buffered():
            return False
        client_sock, upstream_fd = client.get_extra_info("socket"), relay.fileno()
        if client_sock is None or upstream_fd < 0:
            return False
        try:
            spliced = splice.SpliceRelay(self.loop, client_sock.fileno(), upstream_fd, self._splice_done)
        except OSError:
            return False  # no descriptors for the pipes and duplicates: the relay goes on as it is
        self.client.pause_reading()
        relay.pause_reading()
        self._splice = spliced
        return True

    def _splice_done(self, error: bool) -> None:
        moved = self._splice
        self._splice = None
        if moved is not None:
            self._bytes_up += moved.up.moved
            self._bytes_down += moved.down.moved
        self._done()
        relay, client = self.relay, self.client
        if error:
            if relay is not None:
                relay.abort()
            client.abort()
            return
        if relay is not None:
            relay.close()
        if not client.transport_closing():
            client.close_transport()

    # -- the end -------------------------------------------------------------------------------------

    def _done(self) -> None:
        """Once per relayed connection: release the endpoint and write the access-log line."""
        server = self._server
        if server is None:
            return
        self._server = None
        state = self.ctx.registry.state(server)
        state.active = max(0, state.active - 1)
        client = self.client
        self.ctx.log_tunnel(
            self.backend,
            server.label,
            client.sni or "",
            self._bytes_up,
            self._bytes_down,
            self._started,
            client.peer_ip,
        )
