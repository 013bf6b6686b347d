"""Workloads 6 and 7: how fast a new route serves with 10 000 routes stored, and whether requests fail
while routes come and go every 100 ms under load.

shiftroute: the harness writes the route through the store API (what the CLI does), and the router
picks it up from its watch. HAProxy: the harness renders the whole configuration (maps, backends, one CA
file per reencrypt route, as OpenShift's template does) and reloads (`-x` socket transfer + `-sf`).
OpenShift itself also waits up to its 5 s RELOAD_INTERVAL before a reload; that is reported beside."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from bench.backends import PATHS
from bench.client import https_get
from bench.env import Env, Router
from bench.haproxy import HAProxyRouter
from bench.results_model import CaseResult, Target
from bench.routes import NAMESPACE, BenchRoute, bench_route, filler_routes, route_manifest
from bench.shiftroute_router import ShiftrouteRouter, fill_store_apply
from bench.workloads import WrkLoad, measure

PROBE_INTERVAL_S = 0.005
PROBE_DEADLINE_S = 60.0
CHURN_INTERVAL_S = 0.1
OPENSHIFT_RELOAD_INTERVAL_S = 5.0


def wait_200(port: int, host: str, deadline_s: float = PROBE_DEADLINE_S) -> float:
    """Probe with a new TLS connection every PROBE_INTERVAL_S until the host answers 200; the time it
    answered (monotonic). Bounded."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            status, _, _ = https_get(port, host, PATHS["hello"], timeout=2)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(PROBE_INTERVAL_S)
    raise TimeoutError(f"{host} did not answer 200 within {deadline_s}s")


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile (of 20 values: the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered) + 0.5) - 1))]


class BigWorld:
    """A second pair of routers with `stored` filler routes (the three terminations in turn)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.store_path = env.workdir / "store-big.db"
        self.filler = filler_routes(env.backend, env.options.stored_routes)
        self.haproxy_routes = list(env.routes) + self.filler
        self.info: dict[str, float] = {}
        self.shiftroute = ShiftrouteRouter(
            "shiftroute-big", env.procs, env.workdir, self.store_path, env.certs
        )
        self.haproxy = HAProxyRouter("haproxy-big", env.procs, env.workdir, env.certs)
        self._store = None

    def start(self) -> None:
        env = self.env
        t = time.monotonic()
        fill_store_apply(self.store_path, env.backend, env.certs, self.env.routes + self.filler)
        self.info["shiftroute_apply_s"] = time.monotonic() - t
        with env.all_paused():
            t = time.monotonic()
            self.shiftroute.start(cpu=env.layout.router_cpu, timeout=600)
            self.info["shiftroute_start_to_ready_s"] = time.monotonic() - t
            self.shiftroute.pause()
            t = time.monotonic()
            self.haproxy.config.render(self.haproxy_routes)
            self.info["haproxy_render_s"] = time.monotonic() - t
            t = time.monotonic()
            self.haproxy.start(cpu=env.layout.router_cpu)
            self.info["haproxy_start_s"] = time.monotonic() - t
            self.shiftroute.resume()
        from shiftroute.store import open_store

        self._store = open_store(str(self.store_path))

    def stop(self) -> None:
        for router in (self.shiftroute, self.haproxy):
            router.stop()
        if self._store is not None:
            self._store.close()

    def change_shiftroute(self, route: BenchRoute) -> dict[str, float]:
        assert self._store is not None
        t0 = time.monotonic()
        self._store.create(route_manifest(route, self.env.certs.ca.read_text()))
        written = time.monotonic()
        answered = wait_200(self.shiftroute.https_port, route.host)
        return {"ms": (answered - t0) * 1000, "write_ms": (written - t0) * 1000}

    def change_haproxy(self, route: BenchRoute) -> dict[str, float]:
        t0 = time.monotonic()
        self.haproxy_routes.append(route)
        self.haproxy.config.render(self.haproxy_routes)
        rendered = time.monotonic()
        self.haproxy.reload()
        answered = wait_200(self.haproxy.https_port, route.host)
        self.haproxy.reap()
        return {"ms": (answered - t0) * 1000, "render_ms": (rendered - t0) * 1000}


def _paused(routers: list[Router], active: Router) -> Callable[[], None]:
    for router in routers:
        if router is not active:
            router.pause()
    active.resume()

    def undo() -> None:
        for router in routers:
            router.resume()

    return undo


def route_change(env: Env, case: CaseResult, world: BigWorld, termination: str) -> None:
    pair: list[Router] = [world.shiftroute, world.haproxy]
    with env.all_paused():
        for i in range(env.options.changes):
            for router, change in (
                (world.shiftroute, world.change_shiftroute),
                (world.haproxy, world.change_haproxy),
            ):
                route = bench_route(env.backend, termination, f"new-{router.name}-{termination}-{i:02d}")
                undo = _paused(pair, router)
                try:
                    case.add("shiftroute" if router is world.shiftroute else "haproxy", change(route))
                finally:
                    undo()
    stored = env.options.stored_routes
    label = f"6. route change to first 200, {stored:,} routes stored, {termination}"
    sr = [s["ms"] for s in case.samples["shiftroute"]]
    ha = [s["ms"] for s in case.samples["haproxy"]]
    case.info.update(world.info)
    case.info["shiftroute_p50_ms"] = statistics.median(sr)
    case.info["haproxy_p50_ms"] = statistics.median(ha)
    case.info["haproxy_render_p50_ms"] = statistics.median(s["render_ms"] for s in case.samples["haproxy"])
    case.rows_from_values(
        label,
        f"p99 ms of {len(sr)} changes",
        p99(sr),
        p99(ha),
        Target("<= 100 ms absolute", max_absolute=100.0),
        note=f"p50: shiftroute {statistics.median(sr):.0f} ms, HAProxy {statistics.median(ha):.0f} ms "
        f"(render {case.info['haproxy_render_p50_ms']:.0f} ms)",
    )
    case.rows_from_values(
        label + " + OpenShift's reload interval",
        "p99 ms, HAProxy up to +5 s",
        p99(sr),
        p99(ha) + OPENSHIFT_RELOAD_INTERVAL_S * 1000,
        None,
        note="OpenShift coalesces reloads: a change waits up to RELOAD_INTERVAL=5s",
    )


class Churn:
    """Every CHURN_INTERVAL_S: add a route and remove the one added before (bounded by `stop`)."""

    def __init__(self, env: Env, router: Router, termination: str) -> None:
        self.env = env
        self.router = router
        self.termination = termination
        self.stop = threading.Event()
        self.changes = 0
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if isinstance(self.router, HAProxyRouter):
                self._run_haproxy(self.router)
            else:
                self._run_shiftroute()
        except Exception as exc:  # reported in the results, never silently
            self.errors.append(repr(exc))

    def _route(self, k: int) -> BenchRoute:
        return bench_route(self.env.backend, "edge", f"churn-{self.router.name}-{k:04d}")

    def _run_shiftroute(self) -> None:
        from shiftroute.store import open_store

        assert isinstance(self.router, ShiftrouteRouter)
        store = open_store(str(self.router.store))
        ca = self.env.certs.ca.read_text()
        previous: BenchRoute | None = None
        try:
            while not self.stop.wait(CHURN_INTERVAL_S):
                route = self._route(self.changes)
                store.create(route_manifest(route, ca))
                if previous is not None:
                    store.delete("Route", NAMESPACE, previous.name)
                previous = route
                self.changes += 1
            if previous is not None:
                store.delete("Route", NAMESPACE, previous.name)
        finally:
            store.close()

    def _run_haproxy(self, router: HAProxyRouter) -> None:
        while not self.stop.wait(CHURN_INTERVAL_S):
            router.config.render([*self.env.routes, self._route(self.changes)])
            router.reload()
            self.changes += 1
        router.config.render(self.env.routes)
        router.reload()


def churn(env: Env, case: CaseResult, termination: str) -> None:
    load = WrkLoad(env, termination, PATHS["hello"], env.options.connections)
    for _ in range(env.options.rounds):
        for router in (env.shiftroute, env.haproxy):
            worker = Churn(env, router, termination)
            worker.thread.start()
            try:
                _, sample = measure(env, router, load, env.options.seconds)
            finally:
                worker.stop.set()
                worker.thread.join(30)
            if isinstance(router, HAProxyRouter):
                _settle_haproxy(router)
            sample["changes"] = worker.changes
            if worker.errors:
                case.info.setdefault("churn_errors", []).extend(worker.errors)
            case.add(router.name, sample)
    label = f"7. route churn every 100 ms under keep-alive load, {termination}"
    for key in ("failed", "requests", "changes"):
        total_sr = sum(s[key] for s in case.samples["shiftroute"])
        total_ha = sum(s[key] for s in case.samples["haproxy"])
        target = Target("0", max_absolute=0.0) if key == "failed" else None
        metric = {
            "failed": "failed requests (all rounds)",
            "requests": "requests (all rounds)",
            "changes": "route changes applied",
        }[key]
        case.rows_from_values(label, metric, total_sr, total_ha, target, show_ratio=False)


def _settle_haproxy(router: HAProxyRouter, timeout: float = 15.0) -> None:
    """Old processes finish once wrk's connections are gone; wait (bounded), then stop stragglers."""
    deadline = time.monotonic() + timeout
    while router.old and time.monotonic() < deadline:
        router.reap()
        time.sleep(0.05)
    for proc in list(router.old):
        router.procs.stop(proc)
    router.reap()
