"""The backend's half of an HTTP session (http_session.py adds the client's): what an endpoint connection
sends back, made into the client's response; keep-alive reuse of that connection; retries of a request
the endpoint never answered; bad responses (502, hardening.md rule 12); the start of a WebSocket tunnel
once the endpoint answers 101; and the response parser's callbacks (ResponseCallbacks), which hand
llhttp's events to those steps.

The steps of the request side that a backend event leads to (opening another connection, trying another
endpoint) are HttpSession's; they are declared here so that both halves type-check and, compiled, call
each other in C (backend_side.pxd).
"""

from __future__ import annotations

import base64
import hashlib

import httptools

# Names imported, not modules: compiled, a module global is a cached read; `module.name` would be a
# generic attribute lookup on every request.
from shiftroute.engine.context import RouterContext
from shiftroute.engine.exchange import Downstream, Exchange
from shiftroute.engine.headers import client_framing, client_head, switching_head
from shiftroute.engine.session_base import SessionBase
from shiftroute.engine.upstream import UpstreamConnection
from shiftroute.protocol import head_scan, responses
from shiftroute.protocol.http1 import (
    CHUNKED,
    LAST_CHUNK,
    MAX_HEADERS,
    UNTIL_CLOSE,
    HttpError,
    chunk,
    parse_response_head,
)
from shiftroute.routing.table import Server

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

# A response head longer than this is left to llhttp (head_scan reads whole responses in one read only).
MAX_SCANNED_RESPONSE_HEAD = 64 * 1024


def scan_response(data: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes] | None:
    """What the shortcut of upstream_data makes of one read (head_scan.response as this module runs it: the
    C version when compiled, None from the sources); tests/unit/test_head_scan.py compares it with llhttp."""
    return head_scan.response(data, MAX_SCANNED_RESPONSE_HEAD, MAX_HEADERS)


class BackendSide(SessionBase):
    """Responses from endpoints, for the requests HttpSession sends them."""

    def __init__(self, ctx: RouterContext, down: Downstream) -> None:
        super().__init__(ctx, down)
        self._hold: list[bytes] | None = None  # response bytes held back during one upstream read
        self._hold_clean = False  # nothing of the held response has reached the client yet
        self._returning: UpstreamConnection | None = None  # to the pool once its read is parsed

    # -- what the request side provides (HttpSession; declared here as SessionBase declares _pump) -----

    def _open(self, ex: Exchange, server: Server, reuse: bool) -> None:
        """Send `ex` to `server` on a pooled connection (when `reuse`) or a new one."""
        raise NotImplementedError

    def _retry_or_fail(self, ex: Exchange) -> None:
        """Send `ex` to another endpoint if rule 19 allows it, else answer 503."""
        raise NotImplementedError

    # -- upstream callbacks (UpstreamOwner) -------------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        if self.tunnel is not None:
            self._touch(self.tunnel.backend.timeouts.tunnel if self.tunnel.backend else 3600.0)
            self.down.send(data)
            if self.down.writing_paused and self.tunnel.upstream is not None:
                self.tunnel.upstream.pause_reading()
            return
        ex: Exchange | None = self.queue[0] if self.queue else None  # typed: struct reads, compiled
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
            if ex.resp_fed or not self._scan_response(ex, data):
                ex.resp_fed = True
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
        except Exception:
            # Raised by the steps the shortcut ran (_scan_response): what llhttp reports, for the same steps
            # run from its callbacks, as HttpParserCallbackError above, and handled the same way.
            if not ex.done and not self.closed:
                self._bad_response(ex, "backend response rejected")
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

    def _scan_response(self, ex: Exchange, data: bytes) -> bool:
        """Whether head_scan read `data` as one whole plain response (compiled only; see head_scan.pxd),
        handled here as llhttp's callbacks would have. False: nothing happened, llhttp reads it."""
        if ex.done or ex.head.method == b"HEAD":
            return False  # bytes after a response (rule 12), and HEAD's bodiless answers, are llhttp's
        scanned = head_scan.response(data, MAX_SCANNED_RESPONSE_HEAD, MAX_HEADERS)
        if scanned is None:
            return False
        status, reason, fields, body = scanned
        ex.resp_status = status
        ex.resp_reason = reason
        ex.resp_headers = fields
        self._response_head(ex)  # raises HttpError on a head the router refuses (upstream_data)
        if body:
            self._response_body(ex, body)
        self._response_complete(ex)
        return True

    def _response_head(self, ex: Exchange) -> None:
        assert ex.backend is not None
        status = ex.resp_status
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


class ResponseCallbacks:
    """httptools response-parser callbacks, forwarded to the session for the exchange they belong to. Here,
    beside BackendSide, so that compiled they call its steps in C (backend_side.pxd types `session`)."""

    __slots__ = ("conn", "ex", "session")

    def __init__(self, session: BackendSide, ex: Exchange, conn: UpstreamConnection) -> None:
        self.session = session
        self.ex = ex
        self.conn = conn  # the backend connection whose parser calls these (one per connection)

    def on_message_begin(self) -> None:
        if self.ex.done:
            # A second message in what the backend sent after the response it owed (hardening.md rule 12):
            # nothing of it reaches the client, and the connection is not used again. Raising stops llhttp.
            self.session._backend_sent_extra(self.ex, self.conn)
            raise HttpError(502, "backend sent more than its response")
        self.ex.resp_headers = []
        self.ex.resp_reason = b""  # after an interim 100 Continue, the final response's reason alone

    def on_status(self, reason: bytes) -> None:
        self.ex.resp_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.ex.resp_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.ex.resp_parser
        assert parser is not None  # the parser calling this
        self.ex.resp_status = parser.get_status_code()
        if not parser.should_keep_alive():
            # llhttp takes the connection as closing (HTTP/1.0, `Connection: close`, `Proxy-Connection:
            # close`, a body until close): it would refuse a next response, so the connection is not reused.
            self.ex.upstream_extra = True
        self.session._response_head(self.ex)

    def on_body(self, data: bytes) -> None:
        self.session._response_body(self.ex, data)

    def on_message_complete(self) -> None:
        self.session._response_complete(self.ex)
