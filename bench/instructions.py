"""User-space instructions per keep-alive request (or per new connection), for the router alone, counted by
valgrind's callgrind: shiftroute and HAProxy side by side, split by where the instructions run (OpenSSL, the
interpreter, the router's own code, libc).

Why: on a shared two-core machine, CPU time per request moves by 10-20 % from run to run (HAProxy's own
figure varied from 49 to 68 µs per request within one session), so a change worth 3 % cannot be seen in
`make bench`. An instruction count moves by about 2 % (how requests group per loop iteration depends on
timing). What it leaves out is the kernel (system calls, the loopback network) and the cost of cache
misses, so it complements the CPU-time table, it does not replace it.

How: each router runs under callgrind (`--workers 1`; HAProxy `nbthread 1`) behind the same nginx backend
as `make bench`. h2load sends N1 and then N2 keep-alive requests over the same number of new connections;
counters are zeroed before and dumped after each load (`callgrind_control`), so the handshakes and the
start-up cancel out of (instructions(N2) - instructions(N1)) / (N2 - N1).

`--workload handshake` counts per new connection instead (workload 3): N1 and then N2 connections from
workload 3's client (bench/handshake_client.py), each a full handshake and one `Hello`, CONNECTIONS at a
time. Its default termination is passthrough, where the router's own user-space work is what separates it
from HAProxy (both spend the same kernel time per connection).

    python -m bench.instructions [--ref REF] [--terminations reencrypt,edge] [--requests 2000,6000]
    python -m bench.instructions --workload handshake [--terminations passthrough] [--requests 300,900]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import source
from bench.backends import PATHS
from bench.env import Env, Options
from bench.loadgen import h2load_binary
from bench.procs import exit_on_signals, pinned

CONNECTIONS = 10
LOAD_TIMEOUT = 600.0  # seconds for one h2load run against a router under valgrind (about 50x slower)
START_TIMEOUT = 600.0

# Which part of the process an instruction ran in, by the file callgrind names for its function.
_GROUPS = (
    ("OpenSSL", re.compile(r"libssl|libcrypto")),
    ("Python interpreter", re.compile(r"libpython|lib-dynload|/bin/python")),
    ("libc", re.compile(r"libc\.so|libc-|/malloc/|/string/|/nptl/")),
    ("httptools (llhttp)", re.compile(r"httptools|llhttp")),
    ("uvloop (libuv)", re.compile(r"uvloop|libuv")),
    ("shiftroute (compiled)", re.compile(r"shiftroute")),
    ("haproxy", re.compile(r"haproxy")),
)


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        # Not in `make system-deps`: only this tool needs it, the tests and `make bench` do not.
        raise SystemExit(f"{binary} not found: apt-get install valgrind")
    return found


class Callgrind:
    """Runs argv under callgrind and zeroes/dumps its counters on demand (vgdb, through callgrind_control)."""

    def __init__(self, outdir: Path, name: str) -> None:
        self.outdir = outdir
        self.name = name
        self.prefix = outdir / f"callgrind.{name}"

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return [
            _require("valgrind"),
            "--tool=callgrind",
            "--trace-children=yes",  # `shiftroute serve` may run its worker as a child
            "--vgdb=yes",
            # One file per thread: shiftroute's request path is its event-loop thread (the first); the
            # store watcher and the status server are threads of their own that poll on timers, so their
            # counts grow with the wall time valgrind stretches, not with the requests.
            "--separate-threads=yes",
            f"--callgrind-out-file={self.prefix}.%p",
            *argv,
        ]

    def _control(self, flag: str, pids: list[int]) -> None:
        for pid in pids:
            done = subprocess.run(
                [_require("callgrind_control"), flag, str(pid)], capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:  # a count taken without its zeroing or dump would be silently wrong
                raise RuntimeError(f"callgrind_control {flag} {pid} failed: {done.stdout} {done.stderr}")

    def zero(self, pids: list[int]) -> None:
        self._control("-z", pids)

    def dump(self, pids: list[int]) -> list[Path]:
        """The dump files written by this call (one per thread of each process)."""
        before = set(glob.glob(f"{self.prefix}.*"))
        self._control("-d", pids)
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            new = set(glob.glob(f"{self.prefix}.*")) - before
            if new and new == seen:  # nothing more for half a second: every thread's file is written
                return sorted(Path(p) for p in new)
            seen = new
        raise TimeoutError(f"callgrind did not dump {self.name} within 60 s")


def _self_costs(text: str) -> Counter[tuple[str, str]]:
    """Self cost (Ir) per (object file, function), read from a callgrind dump.

    In the format, a `calls=` line is followed by the inclusive cost of that call, which belongs to the
    callee and is skipped; every other cost line is the current function's own, in the object `ob=` last
    named. Names are compressed: `ob=(3) /path` (or `cob=`, `fn=`, `cfn=`) defines 3, a later `ob=(3)`
    reuses it."""
    names: dict[tuple[str, str], str] = {}
    out: Counter[tuple[str, str]] = Counter()
    obj = function = "?"
    skip_next = False
    for line in text.splitlines():
        head, _, rest = line.partition("=")
        if head in ("ob", "cob", "fn", "cfn"):
            kind = "ob" if head.endswith("ob") else "fn"
            m = re.match(r"\((\d+)\)(?:\s+(.*))?", rest)
            name = rest
            if m:
                if m.group(2):
                    names[(kind, m.group(1))] = m.group(2)
                name = names.get((kind, m.group(1)), "?")
            if head == "ob":
                obj = name
            elif head == "fn":
                function = name
        elif head == "calls":
            skip_next = True
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            if skip_next:
                skip_next = False
                continue
            fields = line.split()
            if len(fields) > 1:
                out[(obj, function)] += int(fields[1])
    return out


def _group(obj: str) -> str:
    return next((g for g, pattern in _GROUPS if pattern.search(obj)), "other")


def _read(dumps: list[Path]) -> Counter[tuple[str, str]]:
    """The first thread's costs: the event loop's, where both routers serve requests (HAProxy runs
    `nbthread 1`); the other threads poll on timers (see Callgrind.wrap)."""
    out: Counter[tuple[str, str]] = Counter()
    for dump in dumps:
        text = dump.read_text(errors="replace")
        if re.search(r"^thread:\s*1\s*$", text, re.MULTILINE):
            out.update(_self_costs(text))
    return out


def _h2load(host: str, port: int, path: str, requests: int, cpu: int) -> None:
    argv = [
        h2load_binary(),
        "--h1",
        "-n",
        str(requests),
        "-c",
        str(CONNECTIONS),
        "-t",
        "1",
        "--connect-to",
        f"127.0.0.1:{port}",
        f"https://{host}:{port}{path}",
    ]
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=LOAD_TIMEOUT)
    succeeded = re.search(r"(\d+) succeeded", done.stdout)
    if done.returncode != 0 or succeeded is None or int(succeeded.group(1)) != requests:
        raise RuntimeError(f"h2load: not every request succeeded: {done.stdout[-800:]} {done.stderr[-400:]}")


def _new_connections(host: str, port: int, path: str, count: int, cpu: int) -> None:
    """`count` new connections (full handshakes, one `Hello` each) from workload 3's client, in its own
    process on the load CPU."""
    code = (
        "import sys; from bench.handshake_client import run_handshakes; "
        f"r = run_handshakes({port}, {host!r}, {path!r}, {CONNECTIONS}, {LOAD_TIMEOUT!r}, {count}); "
        "print(r.requests, r.errors['failed'], r.resumed)"
    )
    done = subprocess.run(
        pinned(cpu, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=LOAD_TIMEOUT + 60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    fields = done.stdout.split()
    if done.returncode != 0 or fields != [str(count), "0", "0"]:
        raise RuntimeError(
            f"handshake client: wanted {count} new connections, none failed or resumed; got "
            f"(ok, failed, resumed) {fields}: {done.stderr[-800:]}"
        )


def _count(
    env: Env, router: Any, cg: Callgrind, termination: str, requests: int, workload: str
) -> Counter[tuple[str, str]]:
    pids = router.pids()
    route = env.route(termination)
    cg.zero(pids)
    started = time.monotonic()
    load = _new_connections if workload == "handshake" else _h2load
    load(route.host, router.https_port, PATHS["hello"], requests, env.layout.load_cpu)
    print(f"  {requests} requests in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return _read(cg.dump(pids))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description=__doc__.split("\n\n")[0],
        epilog="Needs valgrind (apt-get install valgrind). About three minutes; prints, saves nothing.",
    )
    p.add_argument("--ref", help="measure src/shiftroute at this git ref (see python -m bench --help)")
    p.add_argument(
        "--workload",
        choices=["keepalive", "handshake"],
        default="keepalive",
        help="keepalive: per request on kept-alive connections; handshake: per new connection (workload 3)",
    )
    p.add_argument(
        "--terminations",
        help="comma-separated (default: reencrypt,edge; with --workload handshake: passthrough)",
    )
    p.add_argument(
        "--requests",
        help="N1,N2 requests (keepalive, default 2000,6000) or new connections (handshake, default 300,900) "
        "per count",
    )
    p.add_argument("--top", type=int, default=0, help="also list shiftroute's N costliest functions")
    p.add_argument("--keep", action="store_true", help="keep the work directory (the callgrind dumps)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    handshake = args.workload == "handshake"
    requests = args.requests or ("300,900" if handshake else "2000,6000")
    n1, n2 = (int(n) for n in requests.split(","))
    if not 0 < n1 < n2:
        raise SystemExit("--requests: N1,N2 with 0 < N1 < N2")
    terminations = (args.terminations or ("passthrough" if handshake else "reencrypt,edge")).split(",")
    unit = "new connection (full handshake, one `Hello`)" if handshake else "keep-alive request (`Hello`)"
    warm = _new_connections if handshake else _h2load
    exit_on_signals()
    source.use_ref(args.ref)
    results: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    with Env(Options(keep_workdir=args.keep)) as env:
        outdir = env.workdir / "callgrind"
        outdir.mkdir(exist_ok=True)
        if args.keep:
            print(f"callgrind dumps in {outdir}", file=sys.stderr)
        for router in (env.shiftroute, env.haproxy):
            cg = Callgrind(outdir, router.name)
            _start_under_callgrind(env, router, cg)
            for termination in terminations:
                warm(env.route(termination).host, router.https_port, PATHS["hello"], 200, env.layout.load_cpu)
                small = _count(env, router, cg, termination, n1, args.workload)
                large = _count(env, router, cg, termination, n2, args.workload)
                large.subtract(small)
                per_function = {k: v / (n2 - n1) for k, v in large.items()}
                results[(router.name, termination)] = per_function
                total = sum(per_function.values())
                print(f"{router.name} {termination}: {total / 1000:.1f}k", file=sys.stderr)
            router.stop()
    print(f"user-space instructions per {unit}, router only; {source.describe()}")
    what = "new connections" if handshake else "requests"
    print(f"callgrind, ({n2} - {n1} {what}) / {n2 - n1}, {CONNECTIONS} connections; kernel not counted")
    groups = [g for g, _ in _GROUPS] + ["other"]
    for termination in terminations:
        ours, theirs = results[("shiftroute", termination)], results[("haproxy", termination)]
        by_group: dict[str, dict[str, float]] = {"shiftroute": {}, "haproxy": {}}
        for name, costs in (("shiftroute", ours), ("haproxy", theirs)):
            for (obj, _function), value in costs.items():
                group = _group(obj)
                by_group[name][group] = by_group[name].get(group, 0.0) + value
        a_total, b_total = sum(ours.values()), sum(theirs.values())
        print(
            f"\n{termination}: shiftroute {a_total / 1000:.1f}k, HAProxy {b_total / 1000:.1f}k "
            f"({a_total / b_total:.2f}x)"
        )
        for group in groups:
            a, b = by_group["shiftroute"].get(group, 0.0), by_group["haproxy"].get(group, 0.0)
            if a >= 50 or b >= 50:
                print(f"  {group:24} {a / 1000:7.1f}k {b / 1000:7.1f}k")
        if args.top:
            print(f"  shiftroute's {args.top} costliest functions (self):")
            for (obj, function), value in Counter(ours).most_common(args.top):
                print(f"    {value / 1000:6.1f}k  {function[:90]}  [{Path(obj).name}]")


def _start_under_callgrind(env: Env, router: Any, cg: Callgrind) -> None:
    """Restart `router` (stopped first) with its process under callgrind."""
    router.stop()
    start = env.procs.start

    def wrapped(name: str, command: Sequence[str], cpu: int | None = None) -> subprocess.Popen[bytes]:
        return start(name, cg.wrap(command), cpu)

    env.procs.start = wrapped  # type: ignore[method-assign, assignment]
    try:
        if router is env.shiftroute:
            env.shiftroute.start(cpu=env.layout.router_cpu, timeout=START_TIMEOUT)
        else:
            env.haproxy.start(cpu=env.layout.router_cpu)
    finally:
        env.procs.start = start  # type: ignore[method-assign]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # set-iteration order, and so the counts, fixed per run
    main()
