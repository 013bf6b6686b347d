"""Profile shiftroute under py-spy while wrk drives the keep-alive reencrypt workload (issue 5's engine work
starts here). Writes bench/results/profile-<date>.svg (flame graph) and profile-<date>.txt (top
functions by own time and by inclusive time), and puts the top of it into BENCHMARKS.md.

    python -m bench.profile [--seconds 10] [--termination reencrypt] [--native]

py-spy comes from bench/requirements.txt (`make bench` installs it); it needs ptrace rights over the
router (root, or kernel.yama.ptrace_scope=0)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench import report, source
from bench.backends import PATHS
from bench.env import Env, Options
from bench.loadgen import wrk_binary
from bench.procs import cpu_seconds, exit_on_signals, pinned, stop_bounded
from bench.workloads import HANDSHAKE_CONCURRENCY

TOP = 30


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install -r bench/requirements.txt (make bench does)")
    return found


def record(pid: int, out: Path, fmt: str, seconds: float, native: bool, cpu: int) -> None:
    argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{seconds:g}",
        "--rate",
        "250",
        "--format",
        fmt,
        "--output",
        str(out),
        "--function",
        "--threads",
    ]
    if native:
        argv.append("--native")  # stops the process per sample (slower), but sees into compiled modules
    else:
        argv.append("--nonblocking")
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr.strip()}")


_FRAME_LINE = re.compile(r":\d+\)$")
_PYTHON_FRAME = re.compile(r"\.py(:\d+)?\)$")


def _frame(raw: str) -> str:
    """`name (path/to/file.py)`, the path shortened to what follows site-packages or src/."""
    frame = _FRAME_LINE.sub(")", raw.strip())
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in frame:
            name, _, path = frame.partition(" (")
            return f"{name} ({path.split(marker, 1)[1]}"
    return frame


def top_functions(collapsed: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """(samples, own samples per function, inclusive samples per function, samples per thread) from
    py-spy's raw format recorded with --threads (the first frame names the thread)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if len(frames) < 2:
            continue
        thread = frames[0].strip()
        threads[thread] += count
        if "MainThread" not in thread:
            continue  # the event loop runs in the main thread; see render_top for the others
        total += count
        # Python-level frames only (with --native, C frames of OpenSSL, uvloop and CPython sit below them):
        # a function's own time includes the C it calls, compiled (Cython) functions included.
        # (Cython's inlined helpers, `__Pyx_*`, carry the line of the code they serve: they count there.)
        python = [f for f in frames[1:] if _PYTHON_FRAME.search(f) and not f.startswith("__Pyx")]
        named = [_frame(f) for f in python or frames[-1:]]
        own[named[-1]] += count
        for frame in set(named):
            inclusive[frame] += count
    return total, own, inclusive, threads


def render_top(
    total: int, own: Counter[str], inclusive: Counter[str], threads: Counter[str], header: str
) -> str:
    every = sum(threads.values()) or 1
    lines = [
        header,
        "",
        "samples by thread: " + ", ".join(f"{name} {n / every:.0%}" for name, n in threads.most_common()),
        "(py-spy counts the store watcher's and the status writer's waits as samples; those threads'",
        "real cost is the idle router CPU in the benchmark table)",
        "",
        f"event loop (MainThread) only: {total} samples, idle poll excluded. A function's own time includes",
        "the C calls it makes: SSLObject.read/write are OpenSSL, transport.write is uvloop's send, and",
        "Runner.run's own time is uvloop's loop itself (epoll, socket reads, callbacks dispatch).",
        "",
        f"top {TOP} by own time:",
    ]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(TOP)]
    lines += ["", f"top {TOP} by inclusive time:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(TOP)]
    return "\n".join(lines) + "\n"


def _handshake_load(port: int, host: str, seconds: float, cpu: int) -> subprocess.Popen[bytes]:
    """Workload 3's client in its own process on the load CPU (the profile's process stays free)."""
    code = (
        "import sys; from bench.handshake_client import run_handshakes; from bench.backends import PATHS; "
        f"r = run_handshakes({port}, {host!r}, PATHS['hello'], {HANDSHAKE_CONCURRENCY}, {seconds!r}); "
        "print(r.requests, 'handshakes', r.errors, file=sys.stderr)"
    )
    return subprocess.Popen(pinned(cpu, [sys.executable, "-c", code]), cwd=report.ROOT)


def _workload_text(args: argparse.Namespace) -> str:
    if args.workload == "handshake":
        return f"a new TLS connection per request ({HANDSHAKE_CONCURRENCY} concurrent)"
    return f"keep-alive {args.connections} conns"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--termination", choices=["reencrypt", "edge", "passthrough"], default="reencrypt")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument(
        "--workload",
        choices=["keepalive", "handshake"],
        default="keepalive",
        help="keepalive: wrk on --connections connections; handshake: workload 3's client, a new TLS "
        "connection per request",
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="C frames too (OpenSSL, uvloop); py-spy then stops the process per sample, which slows it",
    )
    p.add_argument("--ref", help="measure src/shiftroute at this git ref (see python -m bench --help)")
    p.add_argument("--no-update", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_signals()
    source.use_ref(args.ref)
    path = source.request_path()
    # A compiled request path is invisible to py-spy's Python-only sampling: sample native stacks then.
    native = args.native or path.startswith("compiled")
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    svg, raw, txt = (report.RESULTS / f"profile-{stamp}.{ext}" for ext in ("svg", "collapsed", "txt"))
    with Env(Options()) as env:
        router, route = env.shiftroute, env.route(args.termination)
        cpu = env.layout.load_cpu
        script = env.workdir / "wrk.lua"
        from bench.loadgen import _SCRIPT

        script.write_text(_SCRIPT % {"port": router.https_port, "delay": ""})
        url = f"https://{route.host}:{router.https_port}{PATHS['hello']}"
        # Two recordings (collapsed stacks for the text, then the flame graph) under one wrk run.
        duration = 2 * args.seconds + 6
        with env.only(router):
            if args.workload == "handshake":
                load = _handshake_load(router.https_port, route.host, duration, cpu)
            else:
                load = subprocess.Popen(
                    pinned(
                        cpu,
                        [
                            wrk_binary(),
                            "-t",
                            "1",
                            "-c",
                            str(args.connections),
                            "-d",
                            f"{duration:g}s",
                            "-s",
                            str(script),
                            url,
                        ],
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            try:
                time.sleep(2)
                cpu0, t0 = cpu_seconds(router.pids()), time.monotonic()
                record(router.pids()[0], raw, "raw", args.seconds, native, cpu)
                # py-spy's own start-up is inside the wall time, so this slightly understates it.
                busy = (cpu_seconds(router.pids()) - cpu0) / (time.monotonic() - t0)
                record(router.pids()[0], svg, "flamegraph", args.seconds, native, cpu)
            finally:
                stop_bounded(load, duration + 10)
    total, own, inclusive, threads = top_functions(raw)
    raw.unlink()  # the flame graph and the text keep what matters
    header = (
        f"shiftroute, {_workload_text(args)}, Hello, {args.termination}; py-spy "
        f"{'--native' if native else '--nonblocking'} --function, {args.seconds:g}s at 250 Hz; "
        f"router CPU {busy:.0%} busy while sampled; request path: {path}"
    )
    txt.write_text(render_top(total, own, inclusive, threads, header))
    print(txt.read_text())
    print(f"wrote {svg.relative_to(report.ROOT)}, {txt.relative_to(report.ROOT)}", file=sys.stderr)
    if not args.no_update:
        lines = txt.read_text().splitlines()
        cut = next((i for i, line in enumerate(lines) if line.startswith("top ")), 0)
        top = "\n".join(lines[: cut + 21])
        report.update_benchmarks_md(
            {
                "profile": f"Flame graph: `bench/results/{svg.name}`; full list: "
                f"`bench/results/{txt.name}`.\n\n```\n{top}\n```"
            }
        )


if __name__ == "__main__":
    main()
