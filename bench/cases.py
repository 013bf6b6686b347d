"""The benchmark cases: every workload of issue 5 for each termination, selectable with --only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench import workloads
from bench.env import Env
from bench.idle import idle_connections
from bench.results_model import CaseResult
from bench.routechange import BigWorld, churn, route_change
from bench.routes import TERMINATIONS


@dataclass(frozen=True, slots=True)
class Case:
    workload: str
    termination: str

    @property
    def id(self) -> str:
        return f"{self.termination}-{self.workload}"


WORKLOADS = ("keepalive", "keepalive-1k", "handshake", "1m", "idle", "route-change", "churn", "fixed-rate")
ALL_CASES = [Case(w, t) for w in WORKLOADS for t in TERMINATIONS]


def select(only: str | None) -> list[Case]:
    """`--only` takes case ids (reencrypt-keepalive), workloads (handshake) or terminations (edge)."""
    if not only:
        return list(ALL_CASES)
    tokens = {t.strip() for t in only.split(",") if t.strip()}
    known = {c.id for c in ALL_CASES} | set(WORKLOADS) | set(TERMINATIONS)
    unknown = tokens - known
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return [c for c in ALL_CASES if tokens & {c.id, c.workload, c.termination}]


class Runner:
    """Runs cases in order; keeps what later cases need (HAProxy's peak rate, the 10 000-route world)."""

    def __init__(self, env: Env, progress: Callable[[str], None]) -> None:
        self.env = env
        self.progress = progress
        self.results: list[CaseResult] = []
        self.big: BigWorld | None = None

    def run(self, cases: list[Case]) -> list[CaseResult]:
        try:
            for index, case in enumerate(cases):
                self.progress(f"{case.id} ...")
                result = CaseResult(case.id, case.workload)
                try:
                    self._run_one(case, result)
                except Exception as exc:  # one broken case must not hide the others' numbers
                    result.error = f"{type(exc).__name__}: {exc}"
                self.results.append(result)
                self.progress(f"{case.id} done" + (f" ({result.error})" if result.error else ""))
                following = cases[index + 1].workload if index + 1 < len(cases) else None
                if self.big is not None and following != "route-change":
                    self.big.stop()  # its routers must not run beside later measurements
                    self.big = None
        finally:
            if self.big is not None:
                self.big.stop()
        return self.results

    def _haproxy_peak(self, termination: str) -> float | None:
        for result in self.results:
            if result.case == f"{termination}-keepalive" and not result.error:
                return result.median("haproxy", "rps")
        return None

    def _big_world(self) -> BigWorld:
        if self.big is None:
            self.big = BigWorld(self.env)
            self.big.start()
        return self.big

    def _run_one(self, case: Case, result: CaseResult) -> None:
        env, t = self.env, case.termination
        match case.workload:
            case "keepalive":
                workloads.keepalive(env, result, t, "hello", access_log_row=t == "reencrypt")
            case "keepalive-1k":
                workloads.keepalive(env, result, t, "1k", access_log_row=False)
            case "handshake":
                workloads.handshakes(env, result, t)
            case "1m":
                workloads.large(env, result, t)
            case "idle":
                idle_connections(env, result, t)
            case "route-change":
                route_change(env, result, self._big_world(), t)
            case "churn":
                churn(env, result, t)
            case "fixed-rate":
                workloads.fixed_rate(env, result, t, self._haproxy_peak(t))
