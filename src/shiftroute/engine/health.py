"""Active health checks (routes.md §6, hardening.md rule 20): a TCP connect to each endpoint of routes
with more than one endpoint, every 5 s by default or as the route's health-check annotation says.
Three failures in a row mark an endpoint down; two successes bring it back (HAProxy's fall 3 / rise 2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from shiftroute.engine.context import RouterContext
from shiftroute.routing.table import Server

log = logging.getLogger("shiftroute.health")

DEFAULT_INTERVAL = 5.0
FALL = 3
RISE = 2
CHECK_TIMEOUT = 2.0


class HealthChecker:
    def __init__(self, ctx: RouterContext) -> None:
        self.ctx = ctx
        self._next: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self._oks: dict[str, int] = {}
        self._running: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        due: dict[str, tuple[Server, float]] = {}
        for backend in self.ctx.holder.current.backends:
            if len(backend.servers) < 2:
                continue
            interval = backend.health_interval or DEFAULT_INTERVAL
            for server in backend.servers:
                if server.id not in due or interval < due[server.id][1]:
                    due[server.id] = (server, interval)
        for sid in [s for s in self._next if s not in due]:
            self._next.pop(sid, None)
            self._fails.pop(sid, None)
            self._oks.pop(sid, None)
        for sid, (server, interval) in due.items():
            if sid in self._running or self._next.get(sid, 0.0) > now:
                continue
            self._next[sid] = now + interval
            self._running.add(sid)
            asyncio.get_running_loop().create_task(self._check(server))

    async def _check(self, server: Server) -> None:
        ok = True
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                _reader, writer = await asyncio.open_connection(server.address, server.port)
            writer.close()
        except (OSError, TimeoutError):
            ok = False
        finally:
            self._running.discard(server.id)
        state = self.ctx.registry.state(server)
        if ok:
            self._fails[server.id] = 0
            self._oks[server.id] = self._oks.get(server.id, 0) + 1
            if state.checked_down and self._oks[server.id] >= RISE:
                state.checked_down = False
                log.info("endpoint %s (%s) is up again", server.label, server.service)
        else:
            self._oks[server.id] = 0
            self._fails[server.id] = self._fails.get(server.id, 0) + 1
            if not state.checked_down and self._fails[server.id] >= FALL:
                state.checked_down = True
                log.warning(
                    "endpoint %s (%s) is down: %d health checks failed", server.label, server.service, FALL
                )
