"""Workloads 1-4 and the fixed-rate latency row: wrk against each router in turn (A B A B ...), the other
routers paused, router CPU time from /proc around each run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.backends import PATHS
from bench.env import Env, Router
from bench.haproxy import HAProxyRouter
from bench.loadgen import WrkResult, run_wrk
from bench.procs import cpu_seconds
from bench.results_model import CaseResult, Target

WARMUP_S = 1.0
LOWER_1_0 = Target("<= 1.0x", max_ratio=1.0)


@dataclass(frozen=True, slots=True)
class Load:
    path: str
    connections: int
    headers: tuple[str, ...] = ()


def measure(
    env: Env,
    router: Router,
    termination: str,
    load: Load,
    seconds: float,
    delay_ms: float | None = None,
    during: Any = None,
) -> tuple[WrkResult, dict[str, float]]:
    """One wrk run against `router` alone; the sample holds rates, latency and router CPU time."""
    route = env.route(termination)
    with env.only(router):
        timer = threading.Timer(seconds / 2, during) if during is not None else None
        cpu0 = cpu_seconds(router.pids())
        if timer is not None:
            timer.start()
        try:
            result = run_wrk(
                env.workdir,
                host=route.host,
                port=router.https_port,
                path=load.path,
                connections=load.connections,
                seconds=seconds,
                cpu=env.layout.load_cpu,
                headers=load.headers,
                delay_ms=delay_ms,
            )
        finally:
            if timer is not None:
                timer.join(10)
        cpu = cpu_seconds(router.pids()) - cpu0
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
    }
    return result, sample


def ab_rounds(
    env: Env,
    case: CaseResult,
    routers: list[Router],
    termination: str,
    load: Load,
    during: dict[str, Any] | None = None,
) -> None:
    opts = env.options
    for router in routers:
        measure(env, router, termination, load, WARMUP_S)
    for _ in range(opts.rounds):
        for router in routers:
            hook = (during or {}).get(router.name)
            _, sample = measure(env, router, termination, load, opts.seconds, during=hook)
            case.add(router.name, sample)


def _rps_target(termination: str, case: CaseResult) -> tuple[Target | None, str]:
    """reencrypt: requests/s >= 1.0x where the router saturates (its CPU >= 90 % busy)."""
    if termination != "reencrypt":
        return None, ""
    util = case.median("shiftroute", "router_util") or 0.0
    if util >= 0.9:
        return Target(">= 1.0x (router saturated)", min_ratio=1.0), f"shiftroute CPU {util:.0%} busy"
    return None, f"shiftroute CPU {util:.0%} busy: not saturated, no target"


def keepalive(env: Env, case: CaseResult, termination: str, size: str, access_log_row: bool) -> None:
    load = Load(PATHS[size], env.options.connections)
    routers: list[Router] = [env.shiftroute, env.haproxy]
    if access_log_row:
        routers.append(env.shiftroute_with_access_log())
    ab_rounds(env, case, routers, termination, load)
    n = "1" if size == "hello" else "2"
    label = (
        f"{n}. keep-alive {load.connections} conns, {'Hello' if size == 'hello' else '1 KiB'}, {termination}"
    )
    case.row(label, "router CPU µs/request", "cpu_us_per_req", LOWER_1_0)
    rps_target, note = _rps_target(termination, case)
    case.row(label, "requests/s", "rps", rps_target, note)
    if size == "hello":
        case.row(label, "p50 latency ms", "p50_ms")
        case.row(label, "p99 latency ms", "p99_ms")
    if access_log_row:
        case.row(
            label + " (shiftroute access log on)",
            "router CPU µs/request",
            "cpu_us_per_req",
            LOWER_1_0,
            router="shiftroute+log",
        )
        case.row(label + " (shiftroute access log on)", "requests/s", "rps", router="shiftroute+log")


def handshakes(env: Env, case: CaseResult, termination: str) -> None:
    """A new TLS connection per request: wrk with `Connection: close`. wrk keeps no TLS session between
    connections, so every connection is a full handshake; HAProxy's own counters, read mid-run, confirm
    that no session was resumed (SslFrontendSessionReuse_pct)."""
    load = Load(PATHS["hello"], env.options.connections, ("Connection: close",))
    reuse: list[dict[str, str]] = []

    def read_haproxy_counters(router: HAProxyRouter = env.haproxy) -> None:
        try:
            reuse.append(router.show_info())
        except OSError as exc:
            reuse.append({"error": str(exc)})

    ab_rounds(
        env, case, [env.shiftroute, env.haproxy], termination, load, during={"haproxy": read_haproxy_counters}
    )
    keys = ("SslFrontendKeyRate", "SslFrontendSessionReuse_pct", "SslRate", "ConnRate")
    case.info["haproxy_mid_run"] = [{k: info.get(k) for k in (*keys, "error") if k in info} for info in reuse]
    label = f"3. new TLS connection per request, {termination}"
    case.row(label, "router CPU µs/handshake", "cpu_us_per_req", Target("<= 1.05x", max_ratio=1.05))
    case.row(label, "handshakes/s", "rps")


def large(env: Env, case: CaseResult, termination: str) -> None:
    load = Load(PATHS["1m"], 10)
    ab_rounds(env, case, [env.shiftroute, env.haproxy], termination, load)
    label = f"4. 1 MiB responses, {load.connections} conns, {termination}"
    limit = 1.0 if termination == "passthrough" else 1.1
    case.row(label, "router CPU ms/MB", "cpu_ms_per_mb", Target(f"<= {limit}x", max_ratio=limit))
    case.row(label, "MB/s", "mb_per_s")


def _paced_delay(env: Env, router: Router, termination: str, load: Load, rate: float) -> tuple[float, float]:
    """wrk's delay() paces each connection: rate = C / (delay + latency). One short run measures the
    latency part, then the delay is set so the expected rate is `rate`."""
    interval_ms = load.connections / rate * 1000
    result, _ = measure(env, router, termination, load, 2.0, delay_ms=interval_ms)
    latency_ms = max(0.0, load.connections / max(result.rps, 1.0) * 1000 - interval_ms)
    return max(0.0, interval_ms - latency_ms), result.rps


def fixed_rate(env: Env, case: CaseResult, termination: str, haproxy_peak: float | None) -> None:
    """p99 latency at 50 % of HAProxy's peak keep-alive rate. wrk2 is not packaged, so this is wrk with a
    Lua delay() per connection, calibrated per router: a paced closed loop, not wrk2's open loop, and
    latency is not corrected for coordinated omission. The rate each router really got is reported."""
    load = Load(PATHS["hello"], env.options.connections)
    if haproxy_peak is None:
        _, peak = measure(env, env.haproxy, termination, load, 3.0)
        haproxy_peak = peak["rps"]
    rate = haproxy_peak / 2
    delays = {}
    for router in (env.shiftroute, env.haproxy):
        delays[router.name], _ = _paced_delay(env, router, termination, load, rate)
    for _ in range(env.options.rounds):
        for router in (env.shiftroute, env.haproxy):
            _, sample = measure(
                env, router, termination, load, env.options.seconds, delay_ms=delays[router.name]
            )
            case.add(router.name, sample)
    case.info.update(target_rps=rate, haproxy_peak_rps=haproxy_peak, delay_ms=delays)
    label = f"8. fixed rate {rate:,.0f} req/s (50 % of HAProxy's peak), {termination}"
    got = case.median("shiftroute", "rps") or 0.0
    note = f"paced wrk; shiftroute got {got:,.0f}/s, HAProxy {case.median('haproxy', 'rps') or 0:,.0f}/s"
    if got < 0.95 * rate:
        note += " (shiftroute could not reach the rate)"
    case.row(label, "p99 latency ms", "p99_ms", Target("<= 1.5x", max_ratio=1.5), note)
    case.row(label, "p50 latency ms", "p50_ms")
    case.row(label, "requests/s achieved", "rps")


def idle_cpu(env: Env, seconds: float = 3.0) -> dict[str, float]:
    """Router CPU while nothing happens (shiftroute polls its store every few ms): ms of CPU per second."""
    out = {}
    for router in (env.shiftroute, env.haproxy):
        with env.only(router):
            cpu0 = cpu_seconds(router.pids())
            time.sleep(seconds)
            out[router.name] = (cpu_seconds(router.pids()) - cpu0) / seconds * 1000
    return out
