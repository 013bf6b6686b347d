"""`python -m bench`: the side-by-side benchmark of issue 5. See BENCHMARKS.md for what each row means."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import machine, report, source
from bench.cases import WORKLOADS, Runner, select
from bench.env import Env, Options
from bench.procs import exit_on_signals
from bench.workloads import idle_cpu


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--only",
        help="comma-separated case ids (reencrypt-keepalive), workloads "
        f"({', '.join(WORKLOADS)}) or terminations (reencrypt, edge, passthrough)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 round of 2 s, 1 000 idle connections, 5 route changes: a smoke run, not a result",
    )
    p.add_argument("--rounds", type=int, help="A/B rounds per case (default 3; the median is reported)")
    p.add_argument(
        "--noisy-rounds",
        type=int,
        help="rounds at least for full handshakes and fixed-rate latency, whose per-round ratio moves most "
        "(default 9; --rounds if larger)",
    )
    p.add_argument("--seconds", type=float, help="length of each measured run (default 5)")
    p.add_argument("--connections", type=int, help="keep-alive connections (default 50)")
    p.add_argument("--idle-connections", type=int, help="workload 5 (default 5000)")
    p.add_argument("--stored-routes", type=int, help="workload 6 (default 10000)")
    p.add_argument("--changes", type=int, help="workload 6: route changes per termination (default 20)")
    p.add_argument(
        "--key-type",
        choices=["ecdsa-p256", "rsa-2048", "rsa-4096"],
        default="ecdsa-p256",
        help="key of every certificate (default ecdsa-p256; OpenShift's default cert is rsa-2048)",
    )
    p.add_argument(
        "--ref",
        help="measure shiftroute's src/shiftroute at this git ref (e.g. HEAD) instead of "
        "the working tree: a consistent version while others edit it",
    )
    p.add_argument("--workdir", type=Path, help="keep processes' logs and configs here (kept afterwards)")
    p.add_argument("--no-update", action="store_true", help="do not rewrite BENCHMARKS.md")
    p.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile shiftroute (bench.profile; a full run does it anyway)",
    )
    p.add_argument(
        "--store-latency",
        action="store_true",
        help="afterwards, measure store change delivery (bench.store_latency; a full run does it anyway)",
    )
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    opts = Options(key_type=args.key_type)
    if args.quick:
        opts.rounds, opts.seconds, opts.idle_connections, opts.changes = 1, 2.0, 1000, 5
        opts.noisy_rounds = 1
    names = ("rounds", "noisy_rounds", "seconds", "connections", "idle_connections", "stored_routes")
    for name in (*names, "changes"):
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    if args.workdir is not None:
        opts.workdir, opts.keep_workdir = args.workdir, True
    return opts


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    raw = sys.argv[1:] if argv is None else argv
    args = parse(raw)
    exit_on_signals()
    source.use_ref(args.ref)
    opts = options_from(args)
    cases = select(args.only)
    command = f"make bench BENCH_ARGS={shlex.quote(shlex.join(raw))}" if raw else "make bench"
    info = machine.describe()
    info["shiftroute_source"] = source.describe()
    started = time.monotonic()
    load = info["load_average_start"]
    rounds = f"{opts.rounds} round(s) ({max(opts.rounds, opts.noisy_rounds)} for handshakes and fixed rate)"
    progress(f"{len(cases)} cases, {rounds} of {opts.seconds:g}s; load average {load}")
    with Env(opts) as env:
        info["idle_router_cpu_ms_per_s"] = idle_cpu(env)
        results = Runner(env, progress).run(cases)
    info["load_average_end"] = machine.load_average()
    info["wall_seconds"] = round(time.monotonic() - started)
    text = report.table(results)
    print(text)
    path = report.write_json(results, info, command, asdict(opts))
    progress(f"wrote {path.relative_to(report.ROOT)}; took {info['wall_seconds']}s")
    if not args.no_update:
        report.update_benchmarks_md(report.sections(results, info, command, path.name))
    full = not (args.only or args.quick)
    update = ["--no-update"] if args.no_update else []
    if args.ref:
        update += ["--ref", args.ref]
    if args.store_latency or full:
        from bench import store_latency

        progress("store latency ...")
        store_latency.main(update)
    if args.profile or full:
        from bench import profile

        progress("profile ...")
        profile.main(update)
