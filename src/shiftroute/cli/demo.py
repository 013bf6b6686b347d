"""`shiftroute demo`: the reencrypt walkthrough in one command (what `make demo` runs)."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from shiftroute.cli.common import handle_errors
from shiftroute.demo.procs import DemoFailed
from shiftroute.demo.walkthrough import Walkthrough
from shiftroute.errors import UsageError


class _Stop(Exception):
    """Ctrl-C or SIGTERM: leave the wait of step 6 and clean up."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _wait_forever(check: Callable[[], None]) -> None:
    while True:
        check()
        time.sleep(0.5)


def _workspace(workdir: Path | None) -> tuple[Path, bool]:
    """(directory, whether the demo made it). A given directory must be new or empty: the demo's store
    and certificates must not mix with older ones."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="shiftroute-demo-")), True
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise UsageError(f"--workdir {workdir}: exists and is not an empty directory; give a new one")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir.resolve(), False


@click.command("demo")
@click.option(
    "--once", is_flag=True, help="Stop after the requests (step 5); exit 0 only if every check passed."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace to use (new or empty; kept afterwards). Default: a fresh temporary directory.",
)
@click.option(
    "--keep", is_flag=True, help="Keep the temporary workspace (certificates, store, logs) at the end."
)
@handle_errors
def demo(once: bool, workdir: Path | None, keep: bool) -> None:
    """Run the reencrypt walkthrough end to end, on 127.0.0.1 only.

    \b
    1. shiftroute pki: RootCA, and a certificate for httpd-rencrypt.apps.localhost signed by it
    2. shiftroute demo-app: a "Hello" application over HTTPS with it (and one over plain HTTP)
    3. services; a reencrypt route with --dest-ca-cert=RootCA.crt, an edge and a passthrough route
    4. shiftroute serve: the router, on a SQLite store inside the workspace
    5. one request per route: the certificate the client saw, what the application saw, status, body;
       then `shiftroute get routes`
    6. the curl commands to try, until Ctrl-C (skipped with --once)
    \b
    A failing step is named with the reason; the exit status is then 1. Every process started is stopped.
    """
    directory, made = _workspace(workdir)
    old = signal.signal(signal.SIGTERM, _raise_stop)
    walkthrough = Walkthrough(directory, click.echo, once, fail=lambda line: click.echo(line, err=True))
    ok = False
    try:
        try:
            ok = walkthrough.run(_wait_forever)
        except (_Stop, KeyboardInterrupt):
            # Stopping step 6 is how the demo ends; stopping an earlier step leaves checks unrun.
            ok = walkthrough.passed
            if not ok:
                click.echo(f"\ndemo interrupted at {walkthrough.current}", err=True)
        except DemoFailed:
            pass  # the walkthrough has said which step failed and why
    finally:
        signal.signal(signal.SIGTERM, old)
    if ok:
        click.echo("\ndemo: every check passed")
    if made and ok and not keep:
        shutil.rmtree(directory, ignore_errors=True)
        click.echo(f"removed the workspace {directory} (--keep keeps it)")
    else:
        click.echo(f"workspace kept: {directory} (logs in {directory / 'logs'})")
    sys.exit(0 if ok else 1)
