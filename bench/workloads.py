"""Workloads 1-4 and the fixed-rate latency row: load against each router in turn (A B A B ...), the other
routers paused, router CPU time from /proc around each run."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.backends import PATHS
from bench.env import Env, Router
from bench.handshake_client import run_handshakes
from bench.haproxy import HAProxyRouter
from bench.loadgen import LoadResult, run_h2load_rate, run_wrk
from bench.procs import cpu_busy_seconds, cpu_seconds
from bench.results_model import CaseResult, Target

WARMUP_S = 1.0
LOWER_1_0 = Target("<= 1.0x", max_ratio=1.0)
HANDSHAKE_CONCURRENCY = 16

# (router, seconds) -> what the load generator saw
Load = Callable[[Router, float], LoadResult]


@dataclass(frozen=True, slots=True)
class WrkLoad:
    """wrk, keep-alive, against one route of the router."""

    env: Env
    termination: str
    path: str
    connections: int

    def __call__(self, router: Router, seconds: float) -> LoadResult:
        route = self.env.route(self.termination)
        return run_wrk(
            self.env.workdir,
            host=route.host,
            port=router.https_port,
            path=self.path,
            connections=self.connections,
            seconds=seconds,
            cpu=self.env.layout.load_cpu,
        )


def measure(
    env: Env, router: Router, load: Load, seconds: float, during: Callable[[], None] | None = None
) -> tuple[LoadResult, dict[str, float]]:
    """One run against `router` alone; the sample holds rates, latency and the router's CPU time."""
    with env.only(router):
        timer = threading.Timer(seconds / 2, during) if during is not None else None
        cpu0, busy0, t0 = cpu_seconds(router.pids()), cpu_busy_seconds(), time.monotonic()
        if timer is not None:
            timer.start()
        try:
            result = load(router, seconds)
        finally:
            if timer is not None:
                timer.join(10)
        cpu = cpu_seconds(router.pids()) - cpu0
        busy1, wall = cpu_busy_seconds(), time.monotonic() - t0
    router_cpu = env.layout.router_cpu
    requests = max(result.requests, 1)
    sample = {
        "requests": result.requests,
        "seconds": result.seconds,
        "rps": result.rps,
        "mb_per_s": result.mb_per_s,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "router_cpu_s": cpu,
        "router_util": cpu / result.seconds if result.seconds else 0.0,
        "cpu_us_per_req": cpu / requests * 1e6,
        "cpu_ms_per_mb": cpu / (result.bytes / 1e6) * 1e3 if result.bytes else 0.0,
        "failed": result.failed,
        "resumed": result.resumed,
        # Noise: CPU time others (other users of the machine) took on the router's CPU during the run.
        "foreign_router_cpu": max(0.0, busy1[router_cpu] - busy0[router_cpu] - cpu) / wall,
        "load_cpu_busy": (busy1[env.layout.load_cpu] - busy0[env.layout.load_cpu]) / wall,
    }
    return result, sample


def ab_rounds(
    env: Env,
    case: CaseResult,
    routers: list[Router],
    load: Load,
    during: dict[str, Callable[[], None]] | None = None,
    noisy: bool = False,
) -> int:
    """Warm up, then `rounds` rounds (`noisy_rounds` if `noisy` and more), each router once per round, in
    turn. Returns the number of rounds."""
    opts = env.options
    rounds = max(opts.rounds, opts.noisy_rounds) if noisy else opts.rounds
    for router in routers:
        with contextlib.suppress(RuntimeError):  # best effort; the measured rounds raise if the load fails
            measure(env, router, load, WARMUP_S)
    for _ in range(rounds):
        for router in routers:
            _, sample = measure(env, router, load, opts.seconds, during=(during or {}).get(router.name))
            case.add(router.name, sample)
    return rounds


def _rps_target(termination: str, case: CaseResult) -> tuple[Target | None, str]:
    """reencrypt: requests/s >= 1.0x where the router saturates (its CPU >= 90 % busy)."""
    if termination != "reencrypt":
        return None, ""
    util = case.median("shiftroute", "router_util") or 0.0
    if util >= 0.9:
        return Target(">= 1.0x (router saturated)", min_ratio=1.0), f"shiftroute CPU {util:.0%} busy"
    return None, f"shiftroute CPU {util:.0%} busy: not saturated, no target"


def _util_note(case: CaseResult) -> str:
    sr, ha = case.median("shiftroute", "router_util") or 0.0, case.median("haproxy", "router_util") or 0.0
    note = f"router CPU busy: shiftroute {sr:.0%}, HAProxy {ha:.0%}"
    foreign = max(case.median(r, "foreign_router_cpu") or 0.0 for r in ("shiftroute", "haproxy"))
    if foreign >= 0.05:
        note += f"; other processes took {foreign:.0%} of the router CPU"
    return note


def keepalive(env: Env, case: CaseResult, termination: str, size: str, access_log_row: bool) -> None:
    load = WrkLoad(env, termination, PATHS[size], env.options.connections)
    routers: list[Router] = [env.shiftroute, env.haproxy]
    if access_log_row:
        routers.append(env.shiftroute_with_access_log())
    ab_rounds(env, case, routers, load)
    n, what = ("1", "Hello") if size == "hello" else ("2", "1 KiB")
    label = f"{n}. keep-alive {load.connections} conns, {what}, {termination}"
    case.row(label, "router CPU µs/request", "cpu_us_per_req", LOWER_1_0, _util_note(case))
    rps_target, note = _rps_target(termination, case)
    case.row(label, "requests/s", "rps", rps_target, note)
    if size == "hello":
        case.row(label, "p50 latency ms", "p50_ms")
        case.row(label, "p99 latency ms", "p99_ms")
    if access_log_row:
        logged = label + ", shiftroute with access log"
        case.row(logged, "router CPU µs/request", "cpu_us_per_req", LOWER_1_0, router="shiftroute+log")
        case.row(logged, "requests/s", "rps", router="shiftroute+log")


def handshakes(env: Env, case: CaseResult, termination: str) -> None:
    """A new TLS connection per request, each a full handshake (see bench/handshake_client.py); HAProxy's
    counters are read mid-run as a second check that nothing was resumed."""
    route = env.route(termination)
    counters: list[dict[str, str]] = []

    def load(router: Router, seconds: float) -> LoadResult:
        return run_handshakes(router.https_port, route.host, PATHS["hello"], HANDSHAKE_CONCURRENCY, seconds)

    def read_haproxy_counters(router: HAProxyRouter = env.haproxy) -> None:
        try:
            counters.append(router.show_info())
        except OSError as exc:
            counters.append({"error": str(exc)})

    rounds = ab_rounds(
        env, case, [env.shiftroute, env.haproxy], load, during={"haproxy": read_haproxy_counters}, noisy=True
    )
    keys = (
        "SslFrontendKeyRate",
        "SslFrontendSessionReuse_pct",
        "SslBackendKeyRate",
        "SslRate",
        "ConnRate",
        "error",
    )
    case.info["haproxy_mid_run"] = [{k: c[k] for k in keys if k in c} for c in counters]
    resumed = sum(s["resumed"] for r in case.samples.values() for s in r)
    label = f"3. new TLS connection per request (full handshakes), {termination}"
    note = (
        f"{rounds} rounds; Python client, {HANDSHAKE_CONCURRENCY} concurrent; sessions resumed: {resumed}; "
        + _util_note(case)
    )
    case.row(label, "router CPU µs/handshake", "cpu_us_per_req", Target("<= 1.05x", max_ratio=1.05), note)
    case.row(label, "handshakes/s", "rps")


def large(env: Env, case: CaseResult, termination: str) -> None:
    load = WrkLoad(env, termination, PATHS["1m"], 10)
    ab_rounds(env, case, [env.shiftroute, env.haproxy], load)
    label = f"4. 1 MiB responses, {load.connections} conns, {termination}"
    limit = 1.0 if termination == "passthrough" else 1.1
    case.row(
        label, "router CPU ms/MB", "cpu_ms_per_mb", Target(f"<= {limit}x", max_ratio=limit), _util_note(case)
    )
    case.row(label, "MB/s", "mb_per_s")


def fixed_rate(env: Env, case: CaseResult, termination: str, haproxy_peak: float | None) -> None:
    """p99 latency at 50 % of HAProxy's peak keep-alive rate (workload 1's median, or measured here).
    wrk2 is not packaged; h2load's --rps gives each connection a fixed request rate instead."""
    route = env.route(termination)
    connections = env.options.connections
    if haproxy_peak is None:
        _, peak = measure(env, env.haproxy, WrkLoad(env, termination, PATHS["hello"], connections), 3.0)
        haproxy_peak = peak["rps"]
    rate = haproxy_peak / 2

    def load(router: Router, seconds: float) -> LoadResult:
        return run_h2load_rate(
            env.workdir,
            host=route.host,
            port=router.https_port,
            path=PATHS["hello"],
            connections=connections,
            rate=rate,
            seconds=seconds,
            cpu=env.layout.load_cpu,
        )

    rounds = ab_rounds(env, case, [env.shiftroute, env.haproxy], load, noisy=True)
    case.info.update(target_rps=rate, haproxy_peak_rps=haproxy_peak)
    label = f"8. fixed rate {rate:,.0f} req/s (50 % of HAProxy's peak), {connections} conns, {termination}"
    got = case.median("shiftroute", "rps") or 0.0
    note = (
        f"{rounds} rounds; h2load --rps; shiftroute got {got:,.0f}/s, "
        f"HAProxy {case.median('haproxy', 'rps') or 0:,.0f}/s"
    )
    if got < 0.95 * rate:
        note += " (shiftroute could not keep the rate: target missed)"
    row = case.row(label, "p99 latency ms", "p99_ms", Target("<= 1.5x", max_ratio=1.5), note)
    if got < 0.95 * rate:
        row.met = False
    case.row(label, "p50 latency ms", "p50_ms")
    case.row(label, "router CPU µs/request", "cpu_us_per_req")


def idle_cpu(env: Env, seconds: float = 3.0) -> dict[str, float]:
    """Router CPU while nothing happens (shiftroute polls its store every few ms): ms of CPU per second."""
    out = {}
    for router in (env.shiftroute, env.haproxy):
        with env.only(router):
            cpu0 = cpu_seconds(router.pids())
            time.sleep(seconds)
            out[router.name] = (cpu_seconds(router.pids()) - cpu0) / seconds * 1000
    return out


__all__ = [
    "Load",
    "WrkLoad",
    "ab_rounds",
    "fixed_rate",
    "handshakes",
    "idle_cpu",
    "keepalive",
    "large",
    "measure",
]
