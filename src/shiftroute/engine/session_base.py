"""One client connection's life as the HTTP flow (http_session.py) builds on it: its state, the one deadline
timer, moving on to the next queued request, and the endings: an answer from the router itself, close and
abort. HttpSession adds what happens to requests and responses in between.
"""

from __future__ import annotations

import time
from collections import deque

from shiftroute.engine import decide
from shiftroute.engine.context import RouterContext
from shiftroute.engine.exchange import Downstream, Exchange
from shiftroute.protocol import responses


class SessionBase:
    def __init__(self, ctx: RouterContext, down: Downstream) -> None:
        self.ctx = ctx
        self.down = down
        self.loop = down.loop  # the connection's (asyncio.get_running_loop() makes a getpid() call)
        self._clock = self.loop.time  # the bound method kept: no method lookup on every deadline move
        self.queue: deque[Exchange] = deque()
        self.closed = False
        self.tunnel: Exchange | None = None
        self.peer_closed = False
        self._pending_error: tuple[int, str] | None = None  # a refusal waiting for earlier responses
        self._counted_routes: set[str] = set()
        self._deadline = 0.0
        self._deadline_slot = 0  # this session's slot in ctx.deadlines (0: none)
        self._phase = "head"

    # -- what the HTTP flow provides -------------------------------------------------------------------

    def _pump(self) -> None:
        """Start the first queued exchange if it has not started."""
        raise NotImplementedError

    def _reject(self, status: int, reason: str) -> None:
        """Refuse with `status`: the error page with `Connection: close`, logged, and the connection closes
        (nothing of the refused request was forwarded). A response already under way is cut off instead.
        HttpSession first answers the pipelined requests received whole before the bad bytes."""
        if self.closed:
            return
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.resp_started:
            self.abort()
            return
        self.down.send(responses.error(status, reason))
        self.ctx.log_request(None, "", b"-", b"-", status, 0, time.monotonic(), self.down.peer_ip)
        self.finish()

    # -- the deadline (one entry in the router's deadlines, engine/deadlines.py; activity only moves it) --

    def _arm(self, seconds: float, phase: str) -> None:
        self._phase = phase
        self._touch(seconds)

    def _touch(self, seconds: float) -> None:
        """Move the deadline; its entry is only moved when the deadline comes earlier."""
        deadline = self._clock() + seconds
        self._deadline = deadline
        self._deadline_slot = self.ctx.deadlines.move(self, self._deadline_slot, deadline)

    def on_deadline(self) -> None:
        """Called by the router's deadlines when this session's slot has ended."""
        self._deadline_slot = 0
        if self.closed:
            return
        if self._clock() < self._deadline:
            self._deadline_slot = self.ctx.deadlines.add(self, self._deadline)
            return
        phase = self._phase
        if phase == "idle":
            self.close()
        elif phase == "head":
            self._reject(408, "request head not received in time")
        elif phase == "tunnel":
            self.close()
        else:
            ex = self.queue[0] if self.queue else None
            if ex is not None and not ex.body_done and not ex.resp_started:
                # The client stopped sending its body: its timeout, not the backend's (rule 13).
                self._reject(408, "request body not received in time")
            elif ex is not None and ex.backend is not None and not ex.resp_started:
                self.ctx.log_failure(ex.backend, ex.server.label if ex.server else "-", "backend timed out")
                self._local(ex, responses.error_cached(504), 504, close=True)
            else:
                self.close()

    # -- after a response -----------------------------------------------------------------------------

    def _next(self) -> None:
        if self.queue:
            self._pump()
            return
        if self._pending_error is not None:
            status, reason = self._pending_error
            self._pending_error = None
            self._reject(status, reason)
            return
        if self.peer_closed:
            self.finish()
            return
        self._arm(self.ctx.limits.keepalive_timeout, "idle")
        self.down.resume_reading()

    def _release_server(self, ex: Exchange) -> None:
        if ex.counted and ex.server is not None:
            ex.counted = False
            state = self.ctx.registry.state(ex.server)
            state.active = max(0, state.active - 1)

    # -- endings -------------------------------------------------------------------------------------

    def _local(self, ex: Exchange, data: bytes, status: int, close: bool) -> None:
        """Answer from the router itself (503 page, redirect, 421, 502, 504)."""
        ex.done = True
        ex.status = status
        ex.resp_started = True
        self.ctx.log_request(
            ex.backend,
            ex.server.label if ex.server else "",
            ex.head.method,
            ex.head.path,
            status,
            len(data),
            ex.started,
            self.down.peer_ip,
        )
        if ex.upstream is not None:
            ex.upstream.owner = None
            ex.upstream.close()
            ex.upstream = None
        self._release_server(ex)
        if ex.head.method == b"HEAD" and status == 503:
            data = responses.SERVICE_UNAVAILABLE_HEAD
        self.down.send(data)
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if close or not ex.body_done:
            self.finish()
        else:
            self._next()

    def finish(self) -> None:
        """Close after what was written has been sent."""
        if not self.closed:
            self._cleanup()
            self.down.finish()

    def close(self) -> None:
        self.finish()

    def abort(self) -> None:
        if not self.closed:
            self._cleanup()
            self.down.abort()

    def _cleanup(self) -> None:
        self.closed = True
        if self._deadline_slot:
            self.ctx.deadlines.remove(self, self._deadline_slot)
            self._deadline_slot = 0
        for ex in self.queue:
            if ex.upstream is not None:
                ex.upstream.owner = None
                ex.upstream.close()
                ex.upstream = None
            self._release_server(ex)
        self.queue.clear()
        for label in self._counted_routes:
            decide.release_connection(self.ctx, label, self.down.peer_ip)
        self._counted_routes.clear()

    def connection_lost(self) -> None:
        if not self.closed:
            self._cleanup()
