"""Balancing (routes.md §5) and passive health (hardening.md rule 20) on compiled backends."""

from __future__ import annotations

import collections
import dataclasses
import time

import pytest

from shiftroute.engine import balance
from shiftroute.engine.balance import DOWN_FOR, FAILURES_TO_MARK_DOWN, Registry
from shiftroute.routing.compile import cookie_value_for
from shiftroute.routing.table import Backend, Server


def server(name: str, weight: float = 1.0) -> Server:
    sid = f"ept:svc:80-tcp:{name}:80"
    return Server(
        id=sid, cookie_value=cookie_value_for(sid), address=name, port=80, service="svc", weight=weight
    )


def backend(servers: list[Server], balance: str = "roundrobin", cap: int | None = None) -> Backend:
    return Backend(
        namespace="ns",
        name="web",
        host="web.example.com",
        wildcard=False,
        path="",
        termination="",
        insecure_policy="None",
        servers=tuple(servers),
        balance=balance,
        cookie_name="c",
        cookie_suffix=b"",
        servers_by_cookie={s.cookie_value: s for s in servers},
        backend_context=None,
        verify_service_hostname=False,
        serving_context=None,
        max_conn_per_server=cap,
    )


def test_roundrobin_is_exact_over_a_cycle_and_interleaved() -> None:
    b = backend([server("10.0.0.1", 3.0), server("10.0.0.2", 1.0)])
    registry = Registry()
    picks = [registry.choose(b, "1.2.3.4").address for _ in range(8)]  # type: ignore[union-attr]
    assert collections.Counter(picks) == {"10.0.0.1": 6, "10.0.0.2": 2}
    assert picks[:4].count("10.0.0.2") == 1  # spread out, not three in a row then one


def test_weight_zero_takes_no_new_traffic_but_keeps_sticky_clients() -> None:
    drained, live = server("10.0.0.1", 0.0), server("10.0.0.2", 1.0)
    b = backend([drained, live])
    registry = Registry()
    assert {registry.choose(b, "1.2.3.4") for _ in range(10)} == {live}
    assert registry.pinned(b, drained.cookie_value) == drained
    assert registry.choose(backend([server("10.0.0.1", 0.0)]), "1.2.3.4") is None  # every weight 0: 503


def test_source_balancing_is_deterministic_across_replicas() -> None:
    servers = [server(f"10.0.0.{i}") for i in range(1, 6)]
    b = backend(servers, balance="source")
    first, second = Registry(), Registry()  # two routers that never talked to each other
    for client in ("192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1"):
        assert first.choose(b, client) == second.choose(b, client)
    # Removing one endpoint moves only the clients it had.
    clients = [f"203.0.113.{i}" for i in range(200)]
    before = {c: first.choose(b, c) for c in clients}
    fewer = backend(servers[1:], balance="source")
    moved = [c for c in clients if before[c] != servers[0] and first.choose(fewer, c) != before[c]]
    assert moved == []


def test_leastconn_prefers_the_least_busy() -> None:
    a, c = server("10.0.0.1"), server("10.0.0.2")
    b = backend([a, c], balance="leastconn")
    registry = Registry()
    registry.state(a).active = 5
    assert registry.choose(b, "1.2.3.4") == c


def test_passive_health_marks_down_after_repeated_connect_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    bad, good = server("10.0.0.1"), server("10.0.0.2")
    b = backend([bad, good])
    registry = Registry()
    for _ in range(FAILURES_TO_MARK_DOWN - 1):
        registry.connect_failed(bad)
    assert bad in registry.candidates(b)
    registry.connect_failed(bad)
    assert registry.candidates(b) == [good]
    assert registry.pinned(b, bad.cookie_value) is None  # a sticky client falls back to balancing
    later = time.monotonic() + DOWN_FOR + 1
    monkeypatch.setattr(balance, "monotonic", lambda: later)  # the clock balance.py reads
    assert bad in registry.candidates(b)  # skipped only for a while


def test_all_down_still_tries_rather_than_a_certain_503() -> None:
    only = server("10.0.0.1")
    b = backend([only, server("10.0.0.2")])
    registry = Registry()
    for s in b.servers:
        for _ in range(FAILURES_TO_MARK_DOWN):
            registry.connect_failed(s)
    assert len(registry.candidates(b)) == 2


def test_per_endpoint_cap() -> None:
    a, c = server("10.0.0.1"), server("10.0.0.2")
    b = backend([a, c], cap=1)
    registry = Registry()
    registry.state(a).active = 1
    assert registry.candidates(b) == [c]
    registry.state(c).active = 1
    assert registry.choose(b, "1.2.3.4") is None
    assert dataclasses.replace(b, max_conn_per_server=None).max_conn_per_server is None
