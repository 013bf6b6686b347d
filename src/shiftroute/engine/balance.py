"""Choosing an endpoint: the algorithms of routes.md §5, per-endpoint connection counts, and passive and
active health (hardening.md rule 20).

Endpoint state (active connections, failures, down-until) lives in a registry keyed by endpoint ID, so it
survives routing-table swaps; round-robin positions live with the backend they belong to.
"""

from __future__ import annotations

import hashlib
import math
import random
from time import monotonic  # a module global: compiled, no attribute lookup on the time module per call

from shiftroute.routing.table import Backend, Server

# Passive health: this many connect failures in a row mark an endpoint down for DOWN_FOR seconds.
FAILURES_TO_MARK_DOWN = 3
DOWN_FOR = 10.0

# Endpoint IDs already tried for a request. A named alias also keeps Cython from reading
# `frozenset[str]` as a type of its own (Cython 3.3 then refuses the cpdef in balance.pxd).
Exclude = frozenset[str]


class ServerState:
    """One endpoint's state. A plain class rather than a dataclass: compiled, it is an extension type
    (balance.pxd), which a dataclass cannot be."""

    __slots__ = ("active", "checked_down", "consecutive_failures", "down_until")

    def __init__(
        self,
        active: int = 0,
        consecutive_failures: int = 0,
        down_until: float = 0.0,
        checked_down: bool = False,
    ) -> None:
        self.active = active
        self.consecutive_failures = consecutive_failures
        self.down_until = down_until
        self.checked_down = checked_down  # active health checks say down

    def __repr__(self) -> str:
        return (
            f"ServerState(active={self.active!r}, consecutive_failures={self.consecutive_failures!r}, "
            f"down_until={self.down_until!r}, checked_down={self.checked_down!r})"
        )

    def usable(self, now: float) -> bool:
        return not self.checked_down and self.down_until <= now


class Registry:
    """Per-process endpoint state and round-robin positions."""

    __slots__ = ("_rr", "servers")

    def __init__(self) -> None:
        self.servers: dict[str, ServerState] = {}
        self._rr: dict[tuple[str, str, int], dict[str, float]] = {}

    def state(self, server: Server) -> ServerState:
        state: ServerState | None = self.servers.get(server.id)
        if state is None:
            state = self.servers[server.id] = ServerState()
        return state

    def connect_failed(self, server: Server) -> None:
        state = self.state(server)
        state.consecutive_failures += 1
        if state.consecutive_failures >= FAILURES_TO_MARK_DOWN:
            state.down_until = monotonic() + DOWN_FOR

    def connect_succeeded(self, server: Server) -> None:
        state = self.state(server)
        state.consecutive_failures = 0
        state.down_until = 0.0

    def candidates(self, backend: Backend, exclude: Exclude = frozenset()) -> list[Server]:
        """Servers that may take new traffic: weight > 0, healthy, under their connection cap. When every
        weighted server is marked down, try them anyway (a guess beats a certain 503)."""
        now = monotonic()
        cap = backend.max_conn_per_server
        # A loop rather than a comprehension: compiled, `s` is then typed (balance.pxd) and its fields are
        # struct reads.
        weighted: list[Server] = []
        for s in backend.servers:
            if s.weight > 0 and s.id not in exclude:
                weighted.append(s)
        healthy = [s for s in weighted if self.state(s).usable(now)]
        pool = healthy or weighted
        if cap is not None:
            pool = [s for s in pool if self.state(s).active < cap]
        return pool

    def choose(self, backend: Backend, client_ip: str, exclude: Exclude = frozenset()) -> Server | None:
        pool = self.candidates(backend, exclude)
        if not pool:
            return None
        if len(pool) == 1:
            return pool[0]
        algorithm = backend.balance
        if algorithm == "source":
            return _rendezvous(pool, client_ip)
        if algorithm == "leastconn":
            return self._least_connections(pool)
        if algorithm == "random":
            return random.choices(pool, weights=[s.weight for s in pool])[0]
        return self._round_robin(backend, pool)

    def _least_connections(self, pool: list[Server]) -> Server:
        # Its own method: compiled, choose is a cpdef method, which cannot hold the key's closure.
        return min(pool, key=lambda s: (self.state(s).active / s.weight, s.id))

    def _round_robin(self, backend: Backend, pool: list[Server]) -> Server:
        """Smooth weighted round-robin (as nginx does it): evenly interleaved, exact over a cycle."""
        key = (backend.namespace, backend.name, backend.generation)
        current = self._rr.setdefault(key, {})
        total = 0.0
        best: Server | None = None
        best_value = 0.0
        for server in pool:
            value = current.get(server.id, 0.0) + server.weight
            current[server.id] = value
            total += server.weight
            if best is None or value > best_value:
                best, best_value = server, value
        assert best is not None
        current[best.id] = best_value - total
        return best

    def pinned(self, backend: Backend, cookie_value: str) -> Server | None:
        """The server a sticky cookie names, if it still exists and is up. Weight 0 servers still take
        their sticky clients (no *new* traffic), as HAProxy does."""
        server = backend.servers_by_cookie.get(cookie_value)
        if server is None:
            return None
        state = self.state(server)
        if not state.usable(monotonic()):
            return None
        if backend.max_conn_per_server is not None and state.active >= backend.max_conn_per_server:
            return None
        return server


def _rendezvous(pool: list[Server], client_ip: str) -> Server:
    """Source balancing: weighted rendezvous hashing of the client address. Deterministic across
    replicas and restarts; removing one endpoint moves only its own clients."""
    best: Server | None = None
    best_score = -1.0
    for server in pool:
        digest = hashlib.blake2b(f"{client_ip}|{server.id}".encode(), digest_size=8).digest()
        unit = (int.from_bytes(digest, "big") + 1) / 2**64
        score = -server.weight / math.log(unit)
        if score > best_score:
            best, best_score = server, score
    assert best is not None
    return best
