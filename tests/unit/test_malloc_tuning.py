"""The router's malloc thresholds (shiftroute.engine.malloc_tuning). What they do to large bodies is
measured in the benchmark (BENCHMARKS.md); here: that they are set, and that the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shiftroute.engine import malloc_tuning


def _tune_in_a_fresh_process(env: dict[str, str]) -> str:
    """tune() in a child process: mallopt changes the allocator of the process that calls it."""
    done = subprocess.run(
        [sys.executable, "-c", "from shiftroute.engine import malloc_tuning; print(malloc_tuning.tune())"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return done.stdout.strip()


def test_thresholds_are_fixed_on_glibc() -> None:
    unset = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    assert _tune_in_a_fresh_process(env) == "mmap threshold 4 MiB, trim threshold 16 MiB"


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "1048576", "MALLOC_TRIM_THRESHOLD_"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144", "glibc.malloc.mmap_threshold"),
    ],
)
def test_the_environment_wins(name: str, value: str, named: str) -> None:
    env = dict(os.environ, **{name: value})
    assert _tune_in_a_fresh_process(env) == f"left to the environment ({named})"


def test_other_glibc_tunables_do_not_stop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    assert malloc_tuning._set_by_environment() == []
