# cython: annotation_typing=False
"""What every connection of one router process shares: the table holder, endpoint state, the upstream
pool, limits, counters and the access log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from shiftroute.engine.balance import Registry
from shiftroute.engine.deadlines import Deadlines
from shiftroute.engine.outbox import WriteBatch
from shiftroute.engine.upstream import Pool
from shiftroute.routing.table import Backend, TableHolder

access_log = logging.getLogger("shiftroute.access")


class AccessLog:
    """The per-request line, written straight to the log stream in the same format as the other log lines.

    Going through `logging` costs about 25 µs a request (a LogRecord, handler locks, a formatter): half as
    much again as proxying a keep-alive request. This writes one preformatted line, the timestamp made once
    a second; when the access logger is routed elsewhere (not to a stream handler) it uses `logging`.

    The lines of one loop iteration are written together at its end: the log stream (stderr) is
    line-buffered, so each line was a write(2) of its own. Measured in-process on a file, 20 lines per
    iteration: 5.2 µs per logged request with a write per line, 2.5 µs batched (BENCHMARKS.md, session 7).
    A line waits at most for the rest of its iteration; `flush` writes what waits at once (the router calls
    it when it stops)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._lines: list[str] = []  # waiting for the end of the loop iteration
        self._stream: Any = None  # where they go (the log stream as of the last line)

    def write(self, message: str) -> None:
        stream = _stream_of(access_log)
        if stream is None:
            access_log.info("%s", message)
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
            self._prefix = f"{stamp} INFO    shiftroute.access: "
        line = self._prefix + message + "\n"
        if not self._lines:
            try:
                # Once per iteration that logs, not per line (CPython 3.11 checks the pid on each call).
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop running (a tool, a test): written at once
                stream.write(line)
                return
            loop.call_soon(self.flush)
        self._lines.append(line)
        self._stream = stream

    def flush(self) -> None:
        lines = self._lines
        if lines:
            self._lines = []
            self._stream.write("".join(lines))


def _stream_of(logger: logging.Logger) -> Any:
    """The stream of the root logger's single StreamHandler when access lines would go there as is."""
    if not logger.isEnabledFor(logging.INFO) or logger.handlers or not logger.propagate:
        return None
    handlers = logging.getLogger().handlers
    if len(handlers) == 1 and type(handlers[0]) is logging.StreamHandler:
        return handlers[0].stream
    return None


decision_log = logging.getLogger("shiftroute.routing")


@dataclass(frozen=True, slots=True)
class Limits:
    """hardening.md rules 13-15 and routes.md §7; all configurable."""

    head_timeout: float = 10.0
    keepalive_timeout: float = 300.0
    client_timeout: float = 30.0
    hello_timeout: float = 5.0
    max_head_bytes: int = 24 * 1024
    max_connections: int = 50_000
    client_fin_timeout: float = 1.0
    max_connect_attempts: int = 3


@dataclass(slots=True)
class Counters:
    """Prometheus counters for /metrics; plain ints, this process only."""

    requests: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    connections_total: int = 0
    connections_current: int = 0
    connections_refused: int = 0
    backend_failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tunnels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_in: int = 0
    bytes_out: int = 0


class RateTracker:
    """Per-route, per-source-IP counters for the rate-limit-connections annotations (routes.md §6)."""

    def __init__(self) -> None:
        self.concurrent: dict[tuple[str, str], int] = defaultdict(int)
        self._events: dict[tuple[str, str, str], deque[float]] = {}

    def _hits(self, route: str, ip: str, kind: str, window: float) -> deque[float]:
        key = (route, ip, kind)
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        now = time.monotonic()
        while events and events[0] <= now - window:
            events.popleft()
        return events

    def allow(self, route: str, ip: str, kind: str, limit: int, window: float) -> bool:
        events = self._hits(route, ip, kind, window)
        if len(events) >= limit:
            return False
        events.append(time.monotonic())
        return True

    def prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._events.items() if not v or v[-1] < now - 60]:
            del self._events[key]


class RouterContext:
    __slots__ = (
        "access",
        "access_log_enabled",
        "connections",
        "counters",
        "deadlines",
        "draining",
        "holder",
        "limits",
        "loop",
        "pool",
        "rates",
        "registry",
        "writes",
    )

    def __init__(self, holder: TableHolder, limits: Limits, access_log_enabled: bool = True) -> None:
        self.holder = holder
        self.limits = limits
        self.registry = Registry()
        # What the connections wrote in this loop iteration, written at its end (engine/outbox.py).
        self.writes = WriteBatch()
        self.pool = Pool(self.writes)
        self.counters = Counters()
        self.rates = RateTracker()
        self.access_log_enabled = access_log_enabled
        self.access = AccessLog()
        self.connections: set[Any] = set()  # live client connections, for draining
        self.deadlines = Deadlines()  # the client connections' deadlines, on one loop timer
        # The router's loop, once it listens: connections take it from here rather than ask asyncio.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.draining = False

    def log_request(
        self,
        backend: Backend | None,
        endpoint: str,
        method: bytes,
        path: bytes,
        status: int,
        sent: int,
        started: float,
        client: str,
    ) -> None:
        label = backend.label if backend is not None else "-"
        self.counters.requests[(label, status)] += 1
        if self.access_log_enabled:
            self.access.write(
                f"{label} {endpoint or '-'} {method.decode('latin-1')} "
                f"{path.decode('latin-1', 'replace')[:200]} {status} {sent} "
                f"{(time.monotonic() - started) * 1000:.1f}ms client={client}"
            )

    def log_tunnel(
        self, backend: Backend, endpoint: str, sni: str, up: int, down: int, started: float, client: str
    ) -> None:
        """One line per passthrough connection, when it ends: bytes each way and how long it lasted."""
        self.counters.tunnels[backend.label] += 1
        if self.access_log_enabled:
            self.access.write(
                f"{backend.label} {endpoint} TLS sni={sni or '-'} up={up} down={down} "
                f"{(time.monotonic() - started) * 1000:.1f}ms client={client}"
            )

    def log_failure(self, backend: Backend, endpoint: str, reason: str) -> None:
        """One line per failed routing decision: what an operator needs to fix a 503."""
        self.counters.backend_failures[backend.label] += 1
        kind = backend.termination or "http"
        decision_log.warning("%s %s endpoint %s: %s", kind, backend.label, endpoint, reason)
