"""A Diagnosis as text (one PASS/FAIL line per check, details indented, the fix after a failure) or JSON."""

from __future__ import annotations

import json
from typing import Any

from shiftroute.diagnose.checks import Diagnosis

_TITLE_WIDTH = 20


def render_text(diagnosis: Diagnosis) -> list[str]:
    lines = [f"diagnose route {diagnosis.namespace}/{diagnosis.name}"]
    for check in diagnosis.checks:
        mark = "PASS" if check.passed else "FAIL"
        lines.append(f"{mark}  {check.title:<{_TITLE_WIDTH}}{check.reason}")
        indent = " " * (6 + _TITLE_WIDTH)
        lines.extend(indent + detail for detail in check.details)
        if check.fix:
            lines.append(f"{indent}fix: {check.fix}")
    if diagnosis.ok:
        lines.append(f"all {len(diagnosis.checks)} checks passed")
    elif diagnosis.not_run:
        lines.append(f"stopped at the first failure; not checked: {', '.join(diagnosis.not_run)}")
    return lines


def to_dict(diagnosis: Diagnosis) -> dict[str, Any]:
    failed = next((c for c in diagnosis.checks if not c.passed), None)
    return {
        "route": {"namespace": diagnosis.namespace, "name": diagnosis.name},
        "ok": diagnosis.ok,
        "failed": failed.id if failed else None,
        "checks": [
            {
                "id": c.id,
                "title": c.title,
                "status": "PASS" if c.passed else "FAIL",
                "reason": c.reason,
                "fix": c.fix or None,
                "details": list(c.details),
            }
            for c in diagnosis.checks
        ],
        "notRun": list(diagnosis.not_run),
    }


def render_json(diagnosis: Diagnosis) -> str:
    return json.dumps(to_dict(diagnosis), indent=2)
