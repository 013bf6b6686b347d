"""Issue 2's store figure: a change committed by one process reaches a watcher in another process.

    python -m bench.store_latency [--changes 200] [--interval 0.02] [--store URL]

The watcher (`--watch`, pinned to CPU 0 like a router) lists, then watches Routes from the next revision
and stamps every event with CLOCK_MONOTONIC, which is the same clock in every process on Linux. The
writer (this process, CPU 1) creates one route per interval and stamps before and after each commit.
Latency = watcher's stamp - writer's stamp before the commit (the commit's own time included). Bounded:
the watcher gives up after a deadline, the writer waits for it with a timeout."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import report, source
from bench.procs import exit_on_signals, pinned, stop_bounded
from bench.routes import BenchRoute, route_manifest

WATCHER_CPU, WRITER_CPU = 0, 1


def watch(store_url: str, count: int, out: Path, deadline_s: float) -> None:
    from shiftroute.store import open_store

    store = open_store(store_url)
    watcher = store.watch(["Route"], store.revision() + 1)
    print("ready", flush=True)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + deadline_s
    try:
        while len(seen) < count and time.monotonic() < deadline:
            for event in watcher.next_batch(0.5):
                now = time.monotonic_ns()
                if event.type == "ADDED":
                    seen.setdefault(event.key.name, now)
    finally:
        watcher.close()
        store.close()
    out.write_text(json.dumps(seen))


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(store_url: str, changes: int, interval: float, workdir: Path) -> dict[str, object]:
    from shiftroute.store import open_store

    os.sched_setaffinity(0, {WRITER_CPU})
    out = workdir / "watcher.json"
    argv = [
        sys.executable,
        "-m",
        "bench.store_latency",
        "--watch",
        "--store",
        store_url,
        "--changes",
        str(changes),
        "--out",
        str(out),
        "--deadline",
        str(changes * interval + 60),
    ]
    watcher = subprocess.Popen(pinned(WATCHER_CPU, argv), stdout=subprocess.PIPE, text=True, cwd=report.ROOT)
    store = open_store(store_url)
    stamps: dict[str, tuple[int, int]] = {}
    try:
        assert watcher.stdout is not None
        if watcher.stdout.readline().strip() != "ready":
            raise RuntimeError("the watcher did not start")
        for i in range(changes):
            route = BenchRoute(f"latency-{i:04d}", "edge", f"latency-{i:04d}.bench.test", 8080)
            before = time.monotonic_ns()
            store.create(route_manifest(route, ""))
            stamps[route.name] = (before, time.monotonic_ns())
            time.sleep(interval)
        watcher.wait(changes * interval + 90)
    finally:
        stop_bounded(watcher)  # type: ignore[arg-type]
        store.close()
    received = json.loads(out.read_text()) if out.exists() else {}
    from_start = sorted((received[n] - b) / 1e6 for n, (b, _) in stamps.items() if n in received)
    after_commit = sorted((received[n] - a) / 1e6 for n, (_, a) in stamps.items() if n in received)
    commit = sorted((a - b) / 1e6 for b, a in stamps.values())
    return {
        "store": store_url.split("://", 1)[0] if "://" in store_url else "sqlite",
        "changes": changes,
        "received": len(from_start),
        "interval_ms": interval * 1000,
        "p50_ms": statistics.median(from_start),
        "p99_ms": _percentile(from_start, 0.99),
        "max_ms": from_start[-1],
        "after_commit_p50_ms": statistics.median(after_commit),
        "after_commit_p99_ms": _percentile(after_commit, 0.99),
        "commit_p50_ms": statistics.median(commit),
        "commit_p99_ms": _percentile(commit, 0.99),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.store_latency", description=__doc__)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.02, help="seconds between changes")
    p.add_argument("--store", help="store URL (default: a new SQLite file in a temp dir)")
    p.add_argument("--ref", help="measure src/shiftroute at this git ref (see python -m bench --help)")
    p.add_argument("--no-update", action="store_true", help="do not touch BENCHMARKS.md")
    p.add_argument("--watch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_signals()
    source.use_ref(args.ref)
    if args.watch:
        watch(args.store, args.changes, args.out, args.deadline)
        return
    with tempfile.TemporaryDirectory(prefix="store-latency-") as tmp:
        url = args.store or str(Path(tmp) / "store.db")
        result = run(url, args.changes, args.interval, Path(tmp))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    path = report.RESULTS / f"store-latency-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    text = (
        f"{result['store']} store, {result['received']}/{result['changes']} changes received, one every "
        f"{result['interval_ms']:.0f} ms (`bench/results/{path.name}`):\n\n"
        "| from the start of the commit to the watcher | p50 | p99 | max |\n|---|---:|---:|---:|\n"
        f"| latency, ms | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} |\n"
        f"| of which the commit itself, ms | {result['commit_p50_ms']:.1f} | "
        f"{result['commit_p99_ms']:.1f} | |\n"
        f"| after the commit returned, ms | {result['after_commit_p50_ms']:.1f} | "
        f"{result['after_commit_p99_ms']:.1f} | |\n"
    )
    print(text)
    if not args.no_update:
        report.update_benchmarks_md({"store-latency": text})


if __name__ == "__main__":
    main()
