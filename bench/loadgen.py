"""wrk (Debian's 4.1) as the main load generator, pinned to the load CPU and bounded in time.

wrk resolves the URL's host and uses it for SNI; the route hosts (*.bench.test) are not in DNS, so a Lua
script replaces `wrk.resolve` to connect to 127.0.0.1 while SNI and Host stay the route's. The same
script's `done()` prints the summary as JSON. An optional `delay()` paces each connection (used for the
fixed-rate workload; wrk has no open-loop mode, wrk2 is not packaged)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import pinned

_SCRIPT = """
local connect_port = "%(port)d"
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", connect_port)
end
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""

# A mean delay of `ms` milliseconds with wrk's whole-millisecond delay(): floor or ceil at random.
_DELAY = """
local delay_ms = %(ms)f
local base = math.floor(delay_ms)
local frac = delay_ms - base
function delay()
  if math.random() < frac then return base + 1 end
  return base
end
"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    resumed: int = 0  # TLS sessions the server resumed (handshake client only)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk not found: run `make system-deps`")
    return found


def run_wrk(
    workdir: Path,
    *,
    host: str,
    port: int,
    path: str,
    connections: int,
    seconds: float,
    cpu: int,
    tls: bool = True,
    headers: tuple[str, ...] = (),
    delay_ms: float | None = None,
) -> LoadResult:
    script = workdir / "wrk.lua"
    delay = _DELAY % {"ms": delay_ms} if delay_ms is not None else ""
    script.write_text(_SCRIPT % {"port": port, "delay": delay})
    scheme = "https" if tls else "http"
    argv = [
        wrk_binary(),
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
    ]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"{scheme}://{host}:{port}{path}")
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line.removeprefix("BENCHJSON "))
            break
    else:
        raise RuntimeError(f"wrk gave no summary (exit {done.returncode}): {done.stdout} {done.stderr}")
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        bytes=data["bytes"],
        errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout")},
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
    )


def h2load_binary() -> str:
    found = shutil.which("h2load")
    if not found:
        raise RuntimeError("h2load not found: run `make system-deps`")
    return found


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_h2load_rate(
    workdir: Path, *, host: str, port: int, path: str, connections: int, rate: float, seconds: float, cpu: int
) -> LoadResult:
    """Keep-alive HTTP/1.1 at a fixed rate: h2load `--rps` per connection (requests are issued on a timer
    whether or not the previous answer was late; with HTTP/1.1 a late one delays the next on its
    connection, so latency is measured from when a request is sent, not when it was due). Percentiles
    come from h2load's per-request log."""
    log = workdir / "h2load-requests.log"
    log.unlink(missing_ok=True)
    per_connection = max(1, round(rate / connections))
    argv = [
        h2load_binary(),
        "--h1",
        "-c",
        str(connections),
        "-t",
        "1",
        "--rps",
        str(per_connection),
        "-D",
        f"{seconds:g}",
        "--connect-to",
        f"127.0.0.1:{port}",
        "--log-file",
        str(log),
        f"https://{host}:{port}{path}",
    ]
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 60)
    durations: list[float] = []
    bad = 0
    for line in log.read_text().splitlines() if log.exists() else []:
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        if not fields[1].startswith("2"):
            bad += 1
        durations.append(int(fields[2]) / 1000)
    durations.sort()
    failed = sum(int(n) for n in re.findall(r"(\d+) failed", done.stdout)) + bad
    if not durations:
        raise RuntimeError(f"h2load measured nothing (exit {done.returncode}): {done.stdout} {done.stderr}")
    return LoadResult(
        requests=len(durations),
        seconds=seconds,
        bytes=0,
        errors={"failed": failed},
        p50_ms=_percentile(durations, 0.50),
        p90_ms=_percentile(durations, 0.90),
        p99_ms=_percentile(durations, 0.99),
        mean_ms=sum(durations) / len(durations),
    )
