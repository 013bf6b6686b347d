"""One client connection speaking HTTP/1.1 through the router: parse (httptools), route, forward to an
endpoint, stream the answer back; keep-alive and pipelining on both sides; WebSocket tunnels.

Requests are handled strictly in order (pipelined requests wait their turn; the client is not read while
a queue exists), so responses go out in order. Bodies are streamed, never buffered whole: a side that
cannot write pauses the side that reads (hardening.md rule 16).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib

import httptools

# Names imported, not modules: compiled, a module global is a cached read; `module.name` would be a
# generic attribute lookup on every request.
from shiftroute.engine.context import RouterContext
from shiftroute.engine.decide import MISDIRECTED, REDIRECT, admit_connection, admit_request, http_backend
from shiftroute.engine.exchange import Downstream, Exchange, ResponseCallbacks
from shiftroute.engine.headers import (
    ClientInfo,
    client_cookie,
    client_framing,
    client_head,
    switching_head,
    upstream_head,
)
from shiftroute.engine.request_reader import Refused, RequestReader, Upgraded
from shiftroute.engine.session_base import SessionBase
from shiftroute.engine.upstream import ConnectError, UpstreamConnection
from shiftroute.protocol import responses
from shiftroute.protocol.http1 import (
    CHUNKED,
    LAST_CHUNK,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    HttpError,
    chunk,
    parse_response_head,
)
from shiftroute.routing.table import Backend, Server

MAX_BUFFERED_BODY = 64 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class HttpSession(SessionBase):
    """One client connection's requests: read, routed, forwarded to an endpoint, answered in order (the
    connection's state, timer and endings are SessionBase's)."""

    def __init__(self, ctx: RouterContext, down: Downstream) -> None:
        super().__init__(ctx, down)
        self.reader = RequestReader(self, ctx.limits, ctx.holder)
        self._client_info: ClientInfo | None = None
        self._hold: list[bytes] | None = None  # response bytes held back during one upstream read
        self._hold_clean = False  # nothing of the held response has reached the client yet
        self._returning: UpstreamConnection | None = None  # to the pool once its read is parsed
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
        backend = decision
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
        server = None
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
            self._client_info = ClientInfo(self.down.peer_ip, self.down.local_port, self.down.secure)
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

    # -- upstream callbacks (UpstreamOwner) -------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        if self.tunnel is not None:
            self._touch(self.tunnel.backend.timeouts.tunnel if self.tunnel.backend else 3600.0)
            self.down.send(data)
            if self.down.writing_paused and self.tunnel.upstream is not None:
                self.tunnel.upstream.pause_reading()
            return
        ex = self.queue[0] if self.queue else None
        if ex is None or ex.resp_parser is None:
            return
        if ex.backend is not None:
            self._touch(ex.backend.timeouts.server)
        # hardening.md rule 12: what this read makes for the client is held until llhttp has accepted all of
        # it, so a response that is bad within its first read gets a clean 502 and nothing of it goes out.
        self._hold = []
        self._hold_clean = not ex.resp_started
        conn = ex.upstream  # _response_complete lets go of it when the response ends within this read
        self._returning = None
        try:
            ex.resp_parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._start_tunnel(ex, data[exc.args[0] :])
        except httptools.HttpParserCallbackError:
            if not ex.done and not self.closed:
                self._bad_response(ex, "backend response rejected")
        except httptools.HttpParserError as exc:
            if not ex.done:
                self._bad_response(ex, f"bad response from backend: {exc}")
            elif conn is not None:
                self._backend_sent_extra(ex, conn)  # bytes after the response that are not even HTTP
        returning, self._returning = self._returning, None
        if returning is not None:
            self.ctx.pool.give_back(returning)  # (not if the rest of the read closed it: give_back checks)
        self._flush()
        if self.down.writing_paused and ex.upstream is not None:
            ex.upstream.pause_reading()

    def upstream_closed(self, exc: BaseException | None) -> None:
        if self.tunnel is not None:
            self.close()
            return
        ex = self.queue[0] if self.queue else None
        if ex is None or self.closed:
            return
        ex.upstream = None
        if ex.server is not None:
            self._release_server(ex)
        head = ex.resp_head
        if head is not None and head.body == UNTIL_CLOSE and ex.resp_started:
            self._response_complete(ex, upstream_gone=True)
            return
        if ex.resp_started:
            self.abort()  # the response was cut short; the client must not take it for complete
            return
        backend = ex.backend
        assert backend is not None
        endpoint = ex.server.label if ex.server else "-"
        # Rule 19: retry a request the endpoint may not have seen, if replaying it cannot do harm. A pooled
        # connection the backend had already closed is the usual case: try the same endpoint afresh.
        if ex.head.idempotent and ex.reused and ex.server is not None:
            ex.request_sent = False
            ex.resp_parser = None
            self._open(ex, ex.server, reuse=False)
            return
        if ex.head.idempotent and len(ex.tried) < self.ctx.limits.max_connect_attempts:
            self._retry_or_fail(ex)
            return
        self.ctx.log_failure(backend, endpoint, "connection closed before a response")
        self._local(ex, responses.error_cached(502), 502, close=True)

    def upstream_writable(self) -> None:
        if not self.closed:
            self.down.resume_reading()

    def client_writable(self) -> None:
        """The client drained its buffer: read the backend again."""
        if self.tunnel is not None and self.tunnel.upstream is not None:
            self.tunnel.upstream.resume_reading()
            return
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # -- response ------------------------------------------------------------------------------------

    def _response_head(self, ex: Exchange) -> None:
        parser = ex.resp_parser
        assert parser is not None and ex.backend is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim responses: the router already answered 100-continue itself
        try:
            head = parse_response_head(status, ex.resp_reason.strip(), ex.resp_headers, ex.head.method)
        except HttpError as exc:
            self._bad_response(ex, exc.reason)
            raise
        if status == 101:
            ex.resp_head = head
            return  # llhttp raises HttpParserUpgrade next; see _start_tunnel
        if ex.head.websocket_key is not None:
            self._bad_response(ex, f"WebSocket upgrade answered {status}, not 101")
            raise HttpError(502, "no upgrade")
        ex.resp_head = head
        ex.status = status
        ex.framing = client_framing(head, ex.head)
        keep = (
            not ex.close_after
            and not self.peer_closed
            and ex.framing != UNTIL_CLOSE
            and not self.ctx.draining
        )
        if not keep:
            ex.close_after = True
        data = client_head(head, ex.head, ex.backend, ex.framing, ex.set_cookie, self.down.secure, keep)
        ex.resp_started = True
        ex.sent += len(data)
        self._to_client(data)
        if ex.head.method == b"HEAD":
            # llhttp would wait for a body a HEAD response never has; finish here and drop the connection.
            ex.upstream_extra = True
            self._response_complete(ex)
            raise HttpError(0, "head done")

    def _response_body(self, ex: Exchange, data: bytes) -> None:
        if ex.resp_head is None or not ex.resp_started:
            return
        ex.sent += len(data)
        self._to_client(chunk(data) if ex.framing == CHUNKED else data)
        if self.down.writing_paused and ex.upstream is not None:
            ex.upstream.pause_reading()

    def _to_client(self, data: bytes) -> None:
        if self._hold is not None:
            self._hold.append(data)
        else:
            self.down.send(data)

    def _flush(self) -> None:
        held, self._hold = self._hold, None
        if held:
            self.down.send(b"".join(held))

    def _response_complete(self, ex: Exchange, upstream_gone: bool = False) -> None:
        if ex.done or ex.resp_head is None or self.closed or not self.queue or self.queue[0] is not ex:
            return
        if ex.resp_head.status == 101:
            return  # llhttp ends a 101 before it raises HttpParserUpgrade: _start_tunnel decides (rule 17)
        ex.done = True
        if ex.framing == CHUNKED:
            self._to_client(LAST_CHUNK)  # in the same write (and TLS record) as the end of the body
        self._flush()  # llhttp saw the whole message: what was held is good
        backend = ex.backend
        self.ctx.log_request(
            backend,
            ex.server.label if ex.server else "",
            ex.head.method,
            ex.head.path,
            ex.status,
            ex.sent,
            ex.started,
            self.down.peer_ip,
        )
        conn = ex.upstream
        ex.upstream = None
        if conn is not None:
            conn.owner = None
            reusable = (
                not upstream_gone
                and ex.resp_head.keep_alive
                and ex.body_done
                and ex.request_sent
                and not ex.upstream_extra
                and ex.resp_head.body != UNTIL_CLOSE
            )
            if reusable:
                # Back into the pool once llhttp has seen the rest of this read (upstream_data): were it
                # pooled now, a pipelined request pumped below could take it, and bytes the backend sent
                # after this response would be taken for that request's answer (rule 12).
                self._returning = conn
            else:
                self.ctx.pool.remember_session(conn)
                conn.close()
            self._release_server(ex)
        self.queue.popleft()
        if ex.close_after or not ex.body_done:
            self.finish()
            return
        self._next()

    def _backend_sent_extra(self, ex: Exchange, conn: UpstreamConnection) -> None:
        """hardening.md rule 12: the backend sent more than the response it owed, in the same read. The
        response itself went out (it was complete); the rest is dropped with the connection (not yet back
        in the pool: see _response_complete), as an unasked-for byte on an idle pooled connection closes
        it (UpstreamConnection._unexpected)."""
        if ex.backend is not None:
            self.ctx.log_failure(
                ex.backend, ex.server.label if ex.server else "-", "backend sent more than its response"
            )
        conn.owner = None
        conn.close()

    def _bad_response(self, ex: Exchange, reason: str) -> None:
        """hardening.md rule 12: bad framing from the backend is a 502, nothing of it is forwarded."""
        if ex.done:
            return
        if ex.backend is not None:
            self.ctx.log_failure(ex.backend, ex.server.label if ex.server else "-", reason)
        if ex.upstream is not None:
            ex.upstream.owner = None
            ex.upstream.close()
            ex.upstream = None
        unsent = self._hold is not None and self._hold_clean
        self._hold = None  # whatever of it was held is dropped
        if ex.resp_started and not unsent:
            self.abort()
        else:
            self._local(ex, responses.error_cached(502), 502, close=True)

    # -- WebSocket -----------------------------------------------------------------------------------

    def _start_tunnel(self, ex: Exchange, backend_rest: bytes) -> None:
        head = ex.resp_head
        key = ex.head.websocket_key
        expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()) if key else None
        if (
            head is None
            or key is None
            or head.upgrade.lower() != b"websocket"
            or head.websocket_accept != expected
        ):
            self._bad_response(
                ex, "WebSocket upgrade refused: backend 101 without a valid Sec-WebSocket-Accept"
            )
            return
        ex.status = 101
        self.tunnel = ex
        ex.resp_started = True
        self.down.send(switching_head(head))
        if backend_rest:
            self.down.send(backend_rest)
        backend = ex.backend
        assert backend is not None
        self._arm(backend.timeouts.tunnel, "tunnel")
        if ex.client_leftover and ex.upstream is not None:
            ex.upstream.send(ex.client_leftover)
        self.down.resume_reading()
        self.ctx.log_request(
            backend,
            ex.server.label if ex.server else "",
            ex.head.method,
            ex.head.path,
            101,
            0,
            ex.started,
            self.down.peer_ip,
        )

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
