"""One client connection speaking HTTP/1.1 through the router: parse (httptools), route, forward to an
endpoint; keep-alive and pipelining on both sides; WebSocket upgrades. The answers from the endpoints
are backend_side.py's (BackendSide, which this class extends).

Requests are handled strictly in order (pipelined requests wait their turn; the client is not read while
a queue exists), so responses go out in order. Bodies are streamed, never buffered whole: a side that
cannot write pauses the side that reads (hardening.md rule 16).
"""

from __future__ import annotations

import asyncio
import functools

import httptools

# Names imported, not modules: compiled, a module global is a cached read; `module.name` would be a
# generic attribute lookup on every request.
from shiftroute.engine.backend_side import BackendSide, ResponseCallbacks
from shiftroute.engine.context import RouterContext
from shiftroute.engine.decide import MISDIRECTED, REDIRECT, admit_connection, admit_request, http_backend
from shiftroute.engine.exchange import Downstream, Exchange
from shiftroute.engine.headers import ClientInfo, client_cookie, upstream_head
from shiftroute.engine.request_reader import Refused, RequestReader, Upgraded
from shiftroute.engine.session_base import SessionBase
from shiftroute.engine.upstream import ConnectError, UpstreamConnection
from shiftroute.protocol import responses
from shiftroute.protocol.http1 import CHUNKED, LAST_CHUNK, LENGTH, NO_BODY, chunk
from shiftroute.routing.table import Backend, Server

MAX_BUFFERED_BODY = 64 * 1024


class HttpSession(BackendSide):
    """One client connection's requests: read, routed, forwarded to an endpoint, answered in order (the
    answers are BackendSide's; the connection's state, timer and endings are SessionBase's)."""

    def __init__(self, ctx: RouterContext, down: Downstream) -> None:
        super().__init__(ctx, down)
        self.reader = RequestReader(self, ctx.limits, ctx.holder)
        self._client_info: ClientInfo | None = None
        self._arm(ctx.limits.head_timeout, "head")

    # -- client bytes in -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.closed or self._pending_error is not None:
            return
        if self.tunnel is not None:
            self._touch(self.tunnel.backend.timeouts.tunnel if self.tunnel.backend else 3600.0)
            upstream = self.tunnel.upstream
            if upstream is not None:
                upstream.send(data)
                if upstream.paused:
                    self.down.pause_reading()
            return
        if self.queue and self.queue[-1].head.websocket_key is not None:
            # Behind a WebSocket upgrade everything is tunnel data, kept until the backend answers 101.
            self.queue[-1].client_leftover += data
            return
        starting = self._phase == "idle"
        if starting:
            # The head timeout runs from the first byte of a head; it is armed below only if the head did
            # not arrive whole (the usual case is one read: the timer is then moved once, not twice).
            self._phase = "head"
        outcome = self.reader.feed(data, expecting_head=self._phase == "head")
        if self.closed:
            return
        if isinstance(outcome, Refused):
            self._reject(outcome.status, outcome.reason)
            return
        if isinstance(outcome, Upgraded):
            self._upgraded(outcome.rest)
            if self.closed:
                return
        self._pump()
        if starting and self._phase == "head" and not self.closed:
            self._touch(self.ctx.limits.head_timeout)

    def peer_eof(self) -> None:
        """The client half-closed: answer what is in flight, then close."""
        self.peer_closed = True
        if not self.queue and self.tunnel is None:
            self.close()

    # -- requests, as the reader delivers them ---------------------------------------------------------

    def request_started(self, ex: Exchange) -> None:
        self.queue.append(ex)
        if len(self.queue) > 1:
            # Pipelined: hold the client until the earlier responses are out.
            self.down.pause_reading()

    def request_body(self, ex: Exchange, data: bytes) -> None:
        if ex.request_sent and ex.upstream is not None and not ex.upstream.closed:
            ex.upstream.send(chunk(data) if ex.head.body == CHUNKED else data)
            if ex.backend is not None:
                self._touch(ex.backend.timeouts.server)
            if ex.upstream.paused:
                self.down.pause_reading()
        else:
            ex.body_buffer.append(data)
            ex.body_buffered += len(data)
            if ex.body_buffered > MAX_BUFFERED_BODY:
                self.down.pause_reading()

    def request_done(self, ex: Exchange) -> None:
        if ex.request_sent and ex.upstream is not None and ex.head.body == CHUNKED:
            ex.upstream.send(LAST_CHUNK)

    def _upgraded(self, rest: bytes) -> None:
        """llhttp stops at an Upgrade (or CONNECT) request; `rest` is what followed the head. It has already
        called on_message_complete, so the request is the last one queued."""
        ex = self.queue[-1] if self.queue else None
        if ex is None or not ex.body_done or ex.head.body != NO_BODY:
            self._reject(400, "unsupported upgrade")
            return
        self.reader.restart()
        if ex.head.websocket_key is None:
            # Not a WebSocket: serve it as a plain request (Upgrade was dropped as hop-by-hop).
            if rest:
                self._pump()
                self.feed(rest)
            return
        ex.client_leftover = rest
        self.down.pause_reading()  # until the backend answers 101

    # -- routing -------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start the first queued exchange if it has not started."""
        if self.closed or not self.queue:
            return
        ex = self.queue[0]
        if ex.backend is not None or ex.status:
            return
        # The deadline is set by _route: the route's server timeout, or the router answers at once.
        self._phase = "exchange"
        self._route(ex)

    def _route(self, ex: Exchange) -> None:
        head = ex.head
        down = self.down
        decision = http_backend(ex.table, head, down.secure, down.sni)
        if not isinstance(decision, Backend):  # checked first: a route is the usual answer
            if decision == REDIRECT:
                self._redirect(ex)
            elif decision == MISDIRECTED:
                self._local(ex, responses.error_cached(421), 421, close=True)
            else:
                self._local(ex, responses.SERVICE_UNAVAILABLE, 503, close=True)
            return
        backend: Backend = decision  # typed: struct reads, compiled (routing/table.pxd)
        ex.backend = backend
        if not self._admit_client(backend):
            self.abort()  # refused at connection level, as HAProxy's `tcp-request content reject` does
            return
        self._touch(backend.timeouts.server)
        self._pick_server(ex)

    def _admit_client(self, backend: Backend) -> bool:
        ip = self.down.peer_ip
        if backend.label not in self._counted_routes:
            if not admit_connection(self.ctx, backend, ip):
                return False
            self._counted_routes.add(backend.label)
        return admit_request(self.ctx, backend, ip)

    def _redirect(self, ex: Exchange) -> None:
        location = b"https://" + ex.head.host.encode() + ex.head.path + ex.head.query
        keep = ex.head.keep_alive and ex.body_done and not self.peer_closed
        self._local(ex, responses.redirect(location, keep), 302, close=not keep)

    def _pick_server(self, ex: Exchange) -> None:
        backend = ex.backend
        assert backend is not None
        registry = self.ctx.registry
        server: Server | None = None  # typed: struct reads, compiled
        if backend.cookie_prefix is not None and not ex.tried:
            value = client_cookie(ex.head, backend.cookie_prefix)
            if value is not None:
                server = registry.pinned(backend, value.decode("latin-1"))
        if server is None:
            server = registry.choose(backend, self.down.peer_ip, ex.tried)
            if server is not None and backend.cookie_name is not None:
                ex.set_cookie = server
        elif ex.set_cookie is not None:
            ex.set_cookie = None
        if server is None:
            why = (
                "no endpoints"
                if not backend.servers
                else "no endpoint available (all down, at capacity or weight 0)"
            )
            self.ctx.log_failure(backend, "-", why)
            self._local(ex, responses.SERVICE_UNAVAILABLE, 503, close=True)
            return
        ex.server = server
        ex.tried = ex.tried | {server.id}
        self._open(ex, server, reuse=True)

    def _open(self, ex: Exchange, server: Server, reuse: bool) -> None:
        """A pooled connection to `server` when there is one (and `reuse`), else a new one."""
        backend = ex.backend
        assert backend is not None
        context = backend.backend_context
        hostname = backend.backend_hostname(server)
        if reuse:
            conn = self.ctx.pool.take(
                self.ctx.pool.key_for(server.address, server.port, context, hostname), self
            )
            if conn is not None:
                ex.reused = True
                self._attach(ex, conn)
                return
        ex.reused = False
        ex.connecting = True
        task = self.loop.create_task(
            self.ctx.pool.connect(
                server.address, server.port, context, hostname, self, backend.timeouts.connect
            )
        )
        # A partial, not a lambda: compiled, _open is a cpdef method, which cannot hold a closure.
        task.add_done_callback(functools.partial(self._connected, ex, server))

    def _connected(self, ex: Exchange, server: Server, task: asyncio.Task[UpstreamConnection]) -> None:
        ex.connecting = False
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if self.closed or not self.queue or self.queue[0] is not ex:
            if exc is None:
                task.result().close()
            return
        backend = ex.backend
        assert backend is not None
        if exc is not None:
            reason = exc.reason if isinstance(exc, ConnectError) else str(exc)
            self.ctx.registry.connect_failed(server)
            self.ctx.log_failure(backend, server.label, reason)
            self._retry_or_fail(ex)
            return
        self.ctx.registry.connect_succeeded(server)
        self._attach(ex, task.result())

    def _retry_or_fail(self, ex: Exchange) -> None:
        """hardening.md rule 19: before any byte was sent, any request may go to another endpoint."""
        ex.upstream = None
        ex.request_sent = False
        ex.resp_parser = None
        backend = ex.backend
        if (
            backend is not None
            and len(ex.tried) < self.ctx.limits.max_connect_attempts
            and self.ctx.registry.candidates(backend, ex.tried)
        ):
            self._pick_server(ex)
            return
        self._local(ex, responses.SERVICE_UNAVAILABLE, 503, close=True)

    def _attach(self, ex: Exchange, conn: UpstreamConnection) -> None:
        backend = ex.backend
        server = ex.server
        assert backend is not None and server is not None
        ex.upstream = conn
        conn.owner = self
        # A named local: Cython 3.1 miscompiles `registry.state(server).active += 1` (a C call's result).
        state = self.ctx.registry.state(server)
        state.active += 1
        ex.counted = True
        # One response parser per backend connection, pointed at the exchange it now answers.
        if conn.parser is None:
            conn.callbacks = ResponseCallbacks(self, ex, conn)
            conn.parser = httptools.HttpResponseParser(conn.callbacks)
        else:
            callbacks: ResponseCallbacks = conn.callbacks  # typed: two struct writes when compiled
            assert callbacks is not None
            callbacks.session, callbacks.ex = self, ex
        ex.resp_parser = conn.parser
        if self._client_info is None:
            self._client_info = ClientInfo(self.down.peer_ip, self.down.server_port(), self.down.secure)
        head = upstream_head(ex.head, backend, server, self._client_info)
        if ex.body_buffer:
            if ex.head.body == CHUNKED:
                # A list, not a generator: compiled, _attach is a cpdef method, which cannot hold a closure.
                body = b"".join([chunk(piece) for piece in ex.body_buffer])
            else:
                body = b"".join(ex.body_buffer)
            ex.body_buffer = []
            ex.body_buffered = 0
            head += body
        if ex.body_done and ex.head.body == CHUNKED:
            head += LAST_CHUNK
        conn.send(head)
        ex.request_sent = True
        if ex.head.expect_continue and not ex.body_done:
            self.down.send(responses.CONTINUE)
        if len(self.queue) == 1 and ex.head.websocket_key is None:
            self.down.resume_reading()

    # -- refusals ------------------------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        """A request the router refuses to parse: status, Connection: close, nothing forwarded."""
        if self.closed:
            return
        bad = self.reader.parsing  # None when the bad bytes are in a head
        if self.queue and self.queue[0] is not bad:
            # Pipelined requests received whole before the bad bytes are answered first, in order; the error
            # follows them (RFC 9112 §9.3.2), and nothing after the bad bytes is parsed.
            if bad is not None:
                self.queue.remove(bad)
            self.reader.parsing = None
            self._pending_error = (status, reason)
            self.down.pause_reading()
            self._pump()
            return
        SessionBase._reject(self, status, reason)


__all__ = ["LENGTH", "Downstream", "HttpSession"]
