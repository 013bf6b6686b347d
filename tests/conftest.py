"""Shared test helpers: real binaries (a missing one fails, it never skips), free ports, the real CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SHIFTROUTE = str(VENV_BIN / "shiftroute") if (VENV_BIN / "shiftroute").exists() else "shiftroute"
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def require_binary(name: str) -> str:
    """Path of a program the test needs. Missing: fail (CI or not) with the command that installs it."""
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run `make system-deps` (as root) or `make test`, which installs it"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    detail = f": {last_exc!r}" if last_exc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    def connectable() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_until(connectable, timeout, f"{host}:{port} to accept connections")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def make_cli(store: Path, workdir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real `shiftroute` console script against `store`, run in `workdir`; returns the completed
    process (`check=True` turns a non-zero exit into an AssertionError with stderr)."""

    def run(
        *args: str,
        input: str | None = None,
        check: bool = False,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SHIFTROUTE_STORE": str(store), "XDG_STATE_HOME": str(workdir / "state")}
        proc = subprocess.run(
            [SHIFTROUTE, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd or workdir,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"shiftroute {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    return run


@pytest.fixture
def cli(store_path: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `shiftroute` console script against a temporary store."""
    return make_cli(store_path, tmp_path)
