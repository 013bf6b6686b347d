"""shiftroute under test: a store filled through the CLI, `shiftroute serve` with one worker pinned to the
router CPU, ports from its ready-file."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import yaml

from bench.backends import Backend
from bench.certs import Certs, shiftroute_cli
from bench.procs import Procs, log_tail
from bench.routes import NAMESPACE, SERVICE_OF, BenchRoute, list_manifest, route_manifest, service_manifests


def cli(store: Path, *args: str, timeout: float = 300.0) -> str:
    done = subprocess.run(
        [shiftroute_cli(), "--store", str(store), "-n", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"shiftroute {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def fill_store_cli(store: Path, backend: Backend, certs: Certs, routes: list[BenchRoute]) -> None:
    """Services and routes through the CLI, as a user would create them."""
    cli(
        store,
        "create",
        "service",
        "be-https",
        "--port",
        "443",
        "--endpoint",
        f"127.0.0.1:{backend.https_port}",
    )
    cli(store, "create", "service", "be-http", "--port", "80", "--endpoint", f"127.0.0.1:{backend.http_port}")
    for route in routes:
        args = [
            "create",
            "route",
            route.termination,
            route.name,
            "--service",
            SERVICE_OF[route.termination],
            "--hostname",
            route.host,
        ]
        if route.termination == "reencrypt":
            args += ["--dest-ca-cert", str(certs.ca)]
        cli(store, *args)


def fill_store_apply(store: Path, backend: Backend, certs: Certs, routes: list[BenchRoute]) -> None:
    """Many routes at once: one `kind: List` through `shiftroute apply -f`."""
    ca_pem = certs.ca.read_text()
    items = service_manifests(backend) + [route_manifest(r, ca_pem) for r in routes]
    path = store.with_suffix(".routes.yaml")
    path.write_text(yaml.safe_dump(list_manifest(items), sort_keys=False))
    cli(store, "apply", "-f", str(path), timeout=600)


class ShiftrouteRouter:
    """One `shiftroute serve` process (one worker)."""

    def __init__(
        self, name: str, procs: Procs, workdir: Path, store: Path, certs: Certs, access_log: bool = False
    ) -> None:
        self.name = name
        self.procs = procs
        self.workdir = workdir
        self.store = store
        self.certs = certs
        self.access_log = access_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    @property
    def https_port(self) -> int:
        return self.ports["https"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def start(self, cpu: int, timeout: float = 120.0) -> None:
        ready = self.workdir / f"{self.name}.ready.json"
        ready.unlink(missing_ok=True)
        argv = [
            shiftroute_cli(),
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
            "--state-dir",
            str(self.workdir / f"{self.name}-state"),
            "--ready-file",
            str(ready),
            "--default-cert",
            str(self.certs.default_crt),
            "--default-key",
            str(self.certs.default_key),
            "--access-log" if self.access_log else "--no-access-log",
            "--drain-grace",
            "0",
            "--drain-timeout",
            "2",
        ]
        self.proc = self.procs.start(self.name, argv, cpu=cpu)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {log_tail(self.procs.logdir / f'{self.name}.log')}")
            if ready.exists():
                try:
                    self.ports = json.loads(ready.read_text())
                    return
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s")

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None
