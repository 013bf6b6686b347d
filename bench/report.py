"""The table (stdout and BENCHMARKS.md), the JSON result file, and BENCHMARKS.md's generated sections.

BENCHMARKS.md keeps hand-written analysis; only the text between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` markers is replaced by the harness."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_model import CaseResult, Row, Target

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _met(row: Row) -> str:
    if row.met is None:
        return ""
    return "yes" if row.met else "**no**"


def table(results: list[CaseResult]) -> str:
    lines = [
        "| workload | metric | shiftroute | HAProxy | ratio | target | met? | note |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for result in results:
        if result.error:
            lines.append(f"| {result.case} | error | - | - | - | - | **no** | {result.error} |")
        for row in result.rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
            target = row.target.text if row.target else ""
            lines.append(
                f"| {row.workload} | {row.metric} | {_num(row.shiftroute)} | {_num(row.haproxy)} | "
                f"{ratio} | {target} | {_met(row)} | {row.note} |"
            )
    return "\n".join(lines)


def save_result(prefix: str, command: str, fields: dict[str, Any]) -> Path:
    """bench/results/<prefix><UTC date>.json: the date, the command, then `fields`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    path = RESULTS / f"{prefix}{stamp}.json"
    payload = {"date": stamp, "command": command, **fields}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


def write_json(
    results: list[CaseResult], machine: dict[str, Any], command: str, options: dict[str, Any]
) -> Path:
    fields = {"machine": machine, "options": options, "results": [r.to_json() for r in results]}
    return save_result("", command, fields)


def machine_block(machine: dict[str, Any]) -> str:
    keys = [
        ("nproc", "nproc"),
        ("cpu", "CPU"),
        ("kernel", "kernel"),
        ("python", "Python"),
        ("python_speed_us", "Python speed probe, µs for sum(range(1000)) (lower is faster)"),
        ("uvloop", "uvloop"),
        ("httptools", "httptools"),
        ("openssl_python", "OpenSSL (Python)"),
        ("shiftroute_source", "shiftroute measured"),
        ("haproxy", "HAProxy"),
        ("nginx", "nginx"),
        ("wrk", "wrk"),
        ("load_average_start", "load average at start"),
        ("load_average_end", "load average at end"),
        ("idle_router_cpu_ms_per_s", "router CPU with no traffic, ms/s"),
    ]
    return "\n".join(f"- {label}: {_plain(machine[key])}" for key, label in keys if key in machine)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_num(v) if isinstance(v, float) else v}" for k, v in value.items())
    return str(value)


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text)
    return text.rstrip() + f"\n\n{block}\n"


def update_benchmarks_md(sections: dict[str, str], path: Path = BENCHMARKS) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, body in sections.items():
        text = replace_section(text, name, body)
    path.write_text(text)


def load_results(path: Path) -> tuple[list[CaseResult], dict[str, Any], str]:
    """A results file back into CaseResults (for re-rendering without re-running)."""
    payload = json.loads(path.read_text())
    results = []
    for item in payload["results"]:
        case = CaseResult(
            item["case"], item["workload"], item["samples"], info=item["info"], error=item["error"]
        )
        for raw in item["rows"]:
            fields = {k: v for k, v in raw.items() if k != "ratio"}
            target = fields.pop("target")
            case.rows.append(Row(**fields, target=Target(**target) if target else None))
        results.append(case)
    return results, payload["machine"], payload["command"]


def sections(
    results: list[CaseResult], machine: dict[str, Any], command: str, results_file: str
) -> dict[str, str]:
    idle = machine.get("idle_router_cpu_ms_per_s", {})
    head = f"Results file: `bench/results/{results_file}`."
    if idle:
        head += (
            f" Router CPU with no traffic at all: shiftroute {idle['shiftroute']:.1f} ms/s, "
            f"HAProxy {idle['haproxy']:.1f} ms/s."
        )
    return {
        "table": head + "\n\n" + table(results),
        "machine": machine_block(machine) + f"\n- wall time: {machine.get('wall_seconds', '-')} s",
        "command": f"```\n{command}\n```",
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.report bench/results/<date>.json`: rewrite BENCHMARKS.md's generated sections."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m bench.report bench/results/<date>.json")
    path = Path(args[0])
    results, machine, command = load_results(path)
    update_benchmarks_md(sections(results, machine, command, path.name))
    print(table(results))


if __name__ == "__main__":
    main()
