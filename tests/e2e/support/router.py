"""`shiftroute serve` as a real process for the tests: ports 0 on 127.0.0.1, a temp store and state dir,
ready when its ready-file appears (bounded wait), stopped with SIGTERM at teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import SHIFTROUTE


class RouterProcess:
    def __init__(
        self,
        store: Path | str,
        workdir: Path,
        *args: str,
        name: str = "default",
        env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.env = env or {}
        self.name = name
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file = workdir / f"ready-{name}.json"
        self.log_path = workdir / f"router-{name}.log"
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    @property
    def http(self) -> int:
        return self.ports["http"]

    @property
    def https(self) -> int:
        return self.ports["https"]

    @property
    def admin(self) -> int:
        return self.ports["admin"]

    def start(self, timeout: float = 30.0, wait: bool = True) -> RouterProcess:
        """Start the process; with `wait`, return once it is ready (its first routing table published).
        `wait=False` is for a router that cannot be ready yet (its store is down): give it fixed ports in
        `args`, set `ports`, and call `wait_ready()` later."""
        self.ready_file.unlink(missing_ok=True)
        command = [
            SHIFTROUTE,
            "serve",
            "--store",
            str(self.store),
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--admin-port",
            "0",
            "--workers",
            "1",
            "--router-name",
            self.name,
            "--state-dir",
            str(self.workdir / "state"),
            "--ready-file",
            str(self.ready_file),
            "--drain-grace",
            "0.1",
            "--drain-timeout",
            "5",
            *self.args,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        return self.wait_ready(timeout) if wait else self

    def wait_ready(self, timeout: float = 30.0) -> RouterProcess:
        """Wait (bounded) for the ready-file; its ports replace `ports`."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"router exited with {self.proc.returncode}:\n{self.log()}")
            if self.ready_file.exists():
                try:
                    self.ports = json.loads(self.ready_file.read_text())
                    return self
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"router not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (bounded); SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"router did not exit within {timeout}s of SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
