"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
import timeit
from importlib import metadata
from typing import Any


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def python_speed_us() -> float:
    """µs for `sum(range(1000))` in this interpreter (best of 5). Machines that look alike (same CPU name,
    same kernel) have differed by 2x here, and shiftroute's CPU per request, mostly interpreter and
    extension code, follows this figure far more than HAProxy's, mostly kernel: ratios to HAProxy are only
    comparable between runs with a similar probe."""
    timer = timeit.Timer("sum(range(1000))")
    loops = 2000
    return min(timer.repeat(repeat=5, number=loops)) / loops * 1e6


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "shiftroute": _version("shiftroute"),
        "openssl_python": ssl.OPENSSL_VERSION,
        "haproxy": _first_line(["haproxy", "-v"]).replace(" - https://haproxy.org/", ""),
        "nginx": _first_line(["nginx", "-v"]),
        "wrk": _first_line(["wrk", "-v"]),
        "python_speed_us": round(python_speed_us(), 2),
        "load_average_start": load_average(),
    }
