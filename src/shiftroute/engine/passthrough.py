"""A passthrough route's connection once its ClientHello is read (routes.md §4 step 1): admit the client,
choose an endpoint, connect (moving on to the next endpoint when one refuses or does not accept in time),
relay the untouched TLS bytes both ways, hand bulk transfers to splice(2), and write the access-log line
when it ends.

The client side stays the HTTPS listener's protocol (engine/listeners.py): it owns the socket and the
connection's one deadline timer, and passes its bytes, its EOF, its timer and its close on to this object.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from shiftroute.engine import decide, splice
from shiftroute.engine.context import RouterContext
from shiftroute.engine.relay import RelayUpstream
from shiftroute.engine.upstream import describe_connect_error
from shiftroute.routing.table import Backend, Server


class RelayClient(Protocol):
    """The client connection, as the relay sees it (HttpsClientProtocol)."""

    ctx: RouterContext
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    peer_ip: str
    sni: str | None
    closed: bool
    peer_eof: bool
    writing_paused: bool

    def arm(self, seconds: float) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class Passthrough:
    """One relayed connection: the client protocol on one side, a RelayUpstream to the endpoint on the
    other (it calls the RelayPeer methods below)."""

    def __init__(self, client: RelayClient, backend: Backend, hello: bytes) -> None:
        self.client = client
        self.ctx = client.ctx
        self.loop = client.loop
        self.backend = backend
        self.relay: RelayUpstream | None = None
        self._buffer = [hello]  # what the client sent before the endpoint accepted
        self._tried: frozenset[str] = frozenset()
        self._connecting: asyncio.Task[tuple[asyncio.BaseTransport, RelayUpstream]] | None = None
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
        client.pause_reading()
        self._connect()

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
        client.arm(backend.timeouts.connect)  # the connect timeout: deadline_reached cancels the task
        # No coroutine of our own and no asyncio.timeout around it: the task runs uvloop's
        # create_connection alone, and the connection's one timer bounds it.
        task = self.loop.create_task(
            self.loop.create_connection(self._make_relay, server.address, server.port)
        )
        self._connecting = task
        task.add_done_callback(self._connected)

    def _make_relay(self) -> RelayUpstream:
        return RelayUpstream(self)

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, RelayUpstream]]) -> None:
        self._connecting = None
        backend, server, client = self.backend, self._connect_server, self.client
        assert server is not None
        exc: BaseException | None
        if task.cancelled():  # by deadline_reached (the connect timeout) or by client_lost
            exc = TimeoutError() if self._connect_timed_out else asyncio.CancelledError()
        else:
            exc = task.exception()
        if client.closed:
            if exc is None:
                task.result()[1].abort()
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
        relay = task.result()[1]
        self.relay = relay
        self.ctx.registry.state(server).active += 1
        self._server = server
        for piece in self._buffer:
            self._bytes_up += len(piece)
            relay.write(piece)
        self._buffer = []
        self._started = time.monotonic()
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
            relay.write_eof()
            if relay.eof:
                self.client.finish()

    def client_writable(self) -> None:
        if self.relay is not None and self.relay.transport is not None:
            self.relay.transport.resume_reading()

    def deadline_reached(self) -> None:
        connecting = self._connecting
        if connecting is not None:
            # The endpoint did not accept in time: _connected logs it and tries another one.
            self._connect_timed_out = True
            connecting.cancel()
            return
        if self.relay is None:
            self.client.abort()
            return
        now = self.loop.time()
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
        self._quiet_since = self.loop.time()
        self._seen = self._moved()
        self.client.arm(min(self._idle_step, seconds))

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
        if self._connecting is not None:
            self._connecting.cancel()
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

    # -- RelayPeer: the endpoint side calls these ---------------------------------------------------

    def relay_data(self, data: bytes) -> None:
        client = self.client
        transport = client.transport
        if transport is not None and not client.closed:
            self._bytes_down += len(data)
            transport.write(data)
            if client.writing_paused and self.relay is not None and self.relay.transport is not None:
                self.relay.transport.pause_reading()
            else:
                self._maybe_splice()

    def relay_eof(self) -> None:
        client = self.client
        transport = client.transport
        if transport is not None and not client.closed and transport.can_write_eof():
            transport.write_eof()
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
            splice.AVAILABLE
            and self._splice is None
            and self.relay is not None
            and not self.client.peer_eof
            and not self.relay.eof
            and self._bytes_up + self._bytes_down >= splice.AFTER_BYTES
        ):
            self._start_splice(self.relay)

    def _start_splice(self, relay: RelayUpstream) -> bool:
        """Hand the relay to the kernel (splice) when both transports have nothing left to write."""
        client, upstream = self.client.transport, relay.transport
        if (
            client is None
            or upstream is None
            or client.get_write_buffer_size()
            or upstream.get_write_buffer_size()
        ):
            return False
        client_sock, upstream_sock = client.get_extra_info("socket"), upstream.get_extra_info("socket")
        if client_sock is None or upstream_sock is None:
            return False
        self.client.pause_reading()
        upstream.pause_reading()
        self._splice = splice.SpliceRelay(
            self.loop, client_sock.fileno(), upstream_sock.fileno(), self._splice_done
        )
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
        if client.transport is not None and not client.transport.is_closing():
            client.transport.close()

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
