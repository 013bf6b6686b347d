"""The processes the demo starts: run a `shiftroute` command, start and stop long-running children.

Every wait is bounded. Children run in their own session so a Ctrl-C reaches only the demo, which then
stops them in order (SIGTERM, a bounded wait, SIGKILL): nothing is left running behind it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class DemoFailed(Exception):
    """A step failed: `step` names it, the message says why (one line, or a few for a log tail)."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step = step
        self.why = why


def shiftroute_argv(*args: str) -> list[str]:
    """The CLI of this very installation, whatever PATH holds."""
    return [sys.executable, "-m", "shiftroute", *args]


def shown(args: tuple[str, ...] | list[str]) -> str:
    return "shiftroute " + shlex.join(args)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 8) -> str:
        return "\n".join("    " + line for line in self.log().splitlines()[-lines:])


@dataclass
class Processes:
    workdir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def run(self, step: str, *args: str, echo: Callable[[str], None]) -> str:
        """Run `shiftroute ARGS` to completion, print its output indented; fail the step if it fails."""
        echo(f"  $ {shown(args)}")
        try:
            done = subprocess.run(
                shiftroute_argv(*args),
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(step, f"`{shown(args)}` did not finish within {COMMAND_TIMEOUT:.0f}s") from None
        for line in (done.stdout + done.stderr).splitlines():
            echo(f"    {line}")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DemoFailed(step, f"`{shown(args)}` exited with {done.returncode}: {last}")
        return done.stdout

    def start(self, name: str, *args: str, echo: Callable[[str], None]) -> Child:
        echo(f"  $ {shown(args)} &")
        log_path = self.workdir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                shiftroute_argv(*args),
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    def wait_for_log(self, step: str, child: Child, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, child.log())
            if found:
                return found
            self.ensure_running(step, child)
            time.sleep(0.05)
        raise DemoFailed(step, f"{child.name} did not start within {timeout:.0f}s; its log:\n{child.tail()}")

    def ensure_running(self, step: str, child: Child) -> None:
        code = child.proc.poll()
        if code is not None:
            raise DemoFailed(step, f"{child.name} exited with {code}; its log:\n{child.tail()}")

    def stop_all(self, echo: Callable[[str], None]) -> None:
        """Newest first (the router before its backends): SIGTERM, a bounded wait, then SIGKILL."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                echo(f"  {child.name} did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM: killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
        self.children.clear()
