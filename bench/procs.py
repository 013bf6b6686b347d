"""Processes for the benchmark: start pinned to a CPU, stop bounded, read CPU time and RSS from /proc.

Every process the harness starts goes through `Procs.start`, and `Procs.stop_all` (called from a
`finally`) stops them: SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LOCALHOST = "127.0.0.1"  # the only address the harness ever targets


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """`taskset -c CPU argv...`: taskset execs the command, so the pid stays the command's own."""
    return ["taskset", "-c", str(cpu), *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait (bounded) until 127.0.0.1:port accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {LOCALHOST}:{port} after {timeout}s")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # comm (field 2) may hold spaces; everything after the last ')' is space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pids: Iterable[int]) -> list[int]:
    """The pids and all their live descendants."""
    tree = _children()
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes and their descendants (all threads included), in seconds."""
    total = 0
    for pid in process_tree(pids):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / CLK_TCK


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size of the processes and their descendants."""
    total = 0
    for pid in process_tree(pids):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


class Procs:
    """Owns every long-running process of a benchmark run."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: Sequence[str], cpu: int | None = None) -> subprocess.Popen[bytes]:
        command = pinned(cpu, argv) if cpu is not None else list(argv)
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        stop_bounded(proc, timeout)
        with contextlib.suppress(ValueError):
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def stop_bounded(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGCONT (it may be paused), SIGTERM, wait at most `timeout` s, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_busy_seconds() -> dict[int, float]:
    """Per CPU: time not idle since boot (user, nice, system, irq, softirq, steal), from /proc/stat."""
    out: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
            out[int(name[3:])] = (user + nice + system + irq + softirq + steal) / CLK_TCK
    return out


def exit_on_signals() -> None:
    """SIGTERM (and SIGINT, which a background shell job starts with ignored) raise SystemExit, so every
    `finally` runs and every started process is stopped."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
