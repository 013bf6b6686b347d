"""What a workload hands back: per-router samples (one per round) and the table rows made from their
medians."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    text: str  # as the issue states it, e.g. "<= 1.0x"
    max_ratio: float | None = None  # met when shiftroute/HAProxy <= this
    min_ratio: float | None = None  # met when shiftroute/HAProxy >= this
    max_absolute: float | None = None  # met when shiftroute's own value <= this


@dataclass(slots=True)
class Row:
    case: str
    workload: str
    metric: str
    shiftroute: float | None
    haproxy: float | None
    target: Target | None = None
    note: str = ""
    met: bool | None = None
    show_ratio: bool = True  # counts (failed requests, changes) have no meaningful ratio

    @property
    def ratio(self) -> float | None:
        if not self.show_ratio or self.shiftroute is None or self.haproxy in (None, 0):
            return None
        return self.shiftroute / self.haproxy  # type: ignore[operator]

    def judge(self) -> Row:
        t = self.target
        if t is None or self.shiftroute is None:
            return self
        checks = []
        ratio = self.ratio
        if t.max_ratio is not None:
            checks.append(ratio is not None and ratio <= t.max_ratio)
        if t.min_ratio is not None:
            checks.append(ratio is not None and ratio >= t.min_ratio)
        if t.max_absolute is not None:
            checks.append(self.shiftroute <= t.max_absolute)
        self.met = all(checks) if checks else None
        return self

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class CaseResult:
    case: str
    workload: str
    samples: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # router -> rounds
    rows: list[Row] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def add(self, router: str, sample: dict[str, float]) -> None:
        self.samples.setdefault(router, []).append(sample)

    def median(self, router: str, key: str) -> float | None:
        values = [s[key] for s in self.samples.get(router, []) if s.get(key) is not None]
        return statistics.median(values) if values else None

    def row(
        self,
        workload: str,
        metric: str,
        key: str,
        target: Target | None = None,
        note: str = "",
        router: str = "shiftroute",
    ) -> Row:
        made = Row(
            self.case, workload, metric, self.median(router, key), self.median("haproxy", key), target, note
        ).judge()
        self.rows.append(made)
        return made

    def rows_from_values(
        self,
        workload: str,
        metric: str,
        shiftroute: float | None,
        haproxy: float | None,
        target: Target | None = None,
        note: str = "",
        show_ratio: bool = True,
    ) -> Row:
        made = Row(
            self.case, workload, metric, shiftroute, haproxy, target, note, show_ratio=show_ratio
        ).judge()
        self.rows.append(made)
        return made

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "workload": self.workload,
            "samples": self.samples,
            "rows": [r.to_json() for r in self.rows],
            "info": self.info,
            "error": self.error,
        }
