"""Two builds of shiftroute and HAProxy, interleaved in one run: is a change worth its few per cent?

Why: on this two-core machine the same code's CPU time per full handshake moves by 10 % or more from one
`make bench` run to the next (BENCHMARKS.md, sessions 11-13), so a change worth 3 % cannot be told from
noise by comparing two runs. Here the three routers (the new build, the base build, HAProxy) take turns
within each round, on the same cores, the order rotating every round, so drift in the machine's speed
falls on all three alike. The ratios are medians: of the per-router medians, and of the per-round ratios
("paired").

    python -m bench.versus --base REF [--ref REF] [--workload handshake|hello|1k]
                           [--termination passthrough] [--rounds 15] [--seconds 4]

The new build is the working tree (or --ref); the base is a compiled snapshot of REF (bench/source.py),
started as a second `shiftroute serve` on the same store, with the same options as `make bench`'s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench import source
from bench.backends import PATHS
from bench.env import Env, Options, Router, check_routes
from bench.handshake_client import run_handshakes
from bench.loadgen import LoadResult
from bench.report import save_result
from bench.shiftroute_router import ShiftrouteRouter
from bench.workloads import HANDSHAKE_CONCURRENCY, WARMUP_S, Load, WrkLoad, measure

PAIRS = (("shiftroute", "base"), ("shiftroute", "haproxy"), ("base", "haproxy"))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the git ref to compare with (e.g. HEAD~1)")
    p.add_argument("--ref", help="the new build at this git ref instead of the working tree")
    p.add_argument(
        "--workload",
        choices=["handshake", "hello", "1k"],
        default="handshake",
        help="handshake: a new TLS connection per request (workload 3, the default); hello, 1k: keep-alive "
        "with wrk (workloads 1 and 2)",
    )
    p.add_argument("--termination", choices=["reencrypt", "edge", "passthrough"], default="passthrough")
    p.add_argument("--rounds", type=int, default=15, help="rounds, each router once per round (default 15)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each measured run (default 4)")
    return p.parse_args(argv)


def _start_base(env: Env, snapshot: str) -> ShiftrouteRouter:
    """The base build: a second router on the same store, its processes importing the snapshot first."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (snapshot, saved) if p)
    try:
        base = ShiftrouteRouter("base", env.procs, env.workdir, env.shiftroute.store, env.certs)
        base.start(cpu=env.layout.router_cpu)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    env.extra["base"] = base
    check_routes(base, env.routes)
    return base


def _load(env: Env, workload: str, termination: str) -> Load:
    if workload != "handshake":
        return WrkLoad(env, termination, PATHS[workload], env.options.connections)
    host = env.route(termination).host

    def handshakes(router: Router, seconds: float) -> LoadResult:
        return run_handshakes(router.https_port, host, PATHS["hello"], HANDSHAKE_CONCURRENCY, seconds)

    return handshakes


def run(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, str]]:
    """CPU µs per request of each router, one sample per round; and which code the two builds were."""
    source.use_ref(args.ref)
    base_sha, snapshot = source.export(args.base)
    builds = {"shiftroute": source.describe(), "base": f"git {args.base} = {base_sha[:12]}"}
    print(f"new: {builds['shiftroute']}\nbase: {builds['base']}", flush=True)
    samples: dict[str, list[float]] = {}
    with Env(Options(seconds=args.seconds, rounds=args.rounds)) as env:
        base = _start_base(env, str(snapshot))
        load = _load(env, args.workload, args.termination)
        routers: list[Router] = [env.shiftroute, base, env.haproxy]
        for router in routers:
            measure(env, router, load, WARMUP_S)
        for i in range(args.rounds):
            turn = i % len(routers)
            for router in routers[turn:] + routers[:turn]:
                _, sample = measure(env, router, load, args.seconds)
                samples.setdefault(router.name, []).append(sample["cpu_us_per_req"])
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()), flush=True)
    return samples, builds


def write_json(
    samples: dict[str, list[float]], builds: dict[str, str], args: argparse.Namespace, text: str
) -> Path:
    """bench/results/versus-<date>.json: the rounds, the builds and the printed report."""
    fields = {
        "options": vars(args),
        "builds": builds,
        "cpu_us_per_request": samples,
        "report": text.splitlines(),
    }
    return save_result("versus-", "python -m bench.versus " + " ".join(sys.argv[1:]), fields)


def report(samples: dict[str, list[float]], args: argparse.Namespace) -> str:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    lines = [
        f"router CPU µs per request, {args.workload}, {args.termination}: median of {args.rounds} rounds "
        f"of {args.seconds:g} s, the three interleaved",
        "  " + ", ".join(f"{name} {value:.1f}" for name, value in medians.items()),
    ]
    for a, b in PAIRS:
        paired = statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))
        lines.append(f"  {a} / {b}: {medians[a] / medians[b]:.3f} (paired {paired:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.rounds < 1 or args.seconds <= 0:
        raise SystemExit("--rounds must be at least 1 and --seconds positive")
    samples, builds = run(args)
    text = report(samples, args)
    print(text)
    print(f"wrote {write_json(samples, builds, args, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
