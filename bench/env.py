"""The benchmark's world: CPU layout, the test PKI, the nginx backend, and the two routers serving the
same three routes. `Env` is a context manager; leaving it stops every process it started."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from bench.backends import PATHS, Backend, start_backend
from bench.certs import Certs, make_certs
from bench.client import https_get
from bench.haproxy import HAProxyRouter
from bench.procs import Procs
from bench.routes import BenchRoute, standard_routes
from bench.shiftroute_router import ShiftrouteRouter, fill_store_cli


class Router(Protocol):
    name: str
    https_port: int
    http_port: int

    def pids(self) -> list[int]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Layout:
    router_cpu: int = 0  # the router under test, alone
    load_cpu: int = 1  # backend, load generator, the harness itself


@dataclass
class Options:
    seconds: float = 5.0
    rounds: int = 3
    # Full handshakes and fixed-rate latency: the rows whose per-round ratio moves most on this machine
    # (about +-10 % from round to round, BENCHMARKS.md): at least this many rounds, for the same precision.
    noisy_rounds: int = 9
    connections: int = 50
    key_type: str = "ecdsa-p256"
    idle_connections: int = 5000
    stored_routes: int = 10_000
    changes: int = 20
    keep_workdir: bool = False
    workdir: Path | None = None


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Env:
    options: Options
    layout: Layout = field(default_factory=Layout)
    workdir: Path = field(init=False)
    procs: Procs = field(init=False)
    certs: Certs = field(init=False)
    backend: Backend = field(init=False)
    routes: list[BenchRoute] = field(init=False)
    shiftroute: ShiftrouteRouter = field(init=False)
    haproxy: HAProxyRouter = field(init=False)
    extra: dict[str, Router] = field(default_factory=dict)

    def __enter__(self) -> Env:
        self.workdir = self.options.workdir or Path(tempfile.mkdtemp(prefix="shiftroute-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Procs(self.workdir)
        raise_nofile()
        os.sched_setaffinity(0, {self.layout.load_cpu})  # the harness stays off the router's CPU
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.procs.stop_all()
        if not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start(self) -> None:
        self.certs = make_certs(self.workdir / "pki", self.options.key_type)
        self.backend = start_backend(self.procs, self.workdir, self.certs, cpu=self.layout.load_cpu)
        self.routes = standard_routes(self.backend)
        store = self.workdir / "store.db"
        fill_store_cli(store, self.backend, self.certs, self.routes)
        self.shiftroute = ShiftrouteRouter("shiftroute", self.procs, self.workdir, store, self.certs)
        self.shiftroute.start(cpu=self.layout.router_cpu)
        self.haproxy = HAProxyRouter("haproxy", self.procs, self.workdir, self.certs)
        self.haproxy.config.render(self.routes)
        self.haproxy.start(cpu=self.layout.router_cpu)
        for router in self.routers():
            check_routes(router, self.routes)

    def route(self, termination: str) -> BenchRoute:
        return next(r for r in self.routes if r.termination == termination)

    def routers(self) -> list[Router]:
        return [self.shiftroute, self.haproxy, *self.extra.values()]

    def shiftroute_with_access_log(self) -> Router:
        """The extra row's router: shiftroute with its access log on (to its log file), same store."""
        if "shiftroute+log" not in self.extra:
            router = ShiftrouteRouter(
                "shiftroute+log", self.procs, self.workdir, self.shiftroute.store, self.certs, access_log=True
            )
            router.start(cpu=self.layout.router_cpu)
            check_routes(router, self.routes)
            self.extra["shiftroute+log"] = router
        return self.extra["shiftroute+log"]

    @contextlib.contextmanager
    def all_paused(self) -> Iterator[None]:
        """Pause every router of the environment (a dedicated router is being measured)."""
        routers = self.routers()
        for router in routers:
            router.pause()
        try:
            yield
        finally:
            for router in routers:
                router.resume()

    @contextlib.contextmanager
    def only(self, active: Router) -> Iterator[Router]:
        """Pause every other router (SIGSTOP) so nothing else runs on the router CPU during a measurement."""
        others = [r for r in self.routers() if r is not active]
        for router in others:
            router.pause()
        active.resume()
        try:
            yield active
        finally:
            for router in others:
                router.resume()


def check_routes(router: Router, routes: list[BenchRoute], deadline_s: float = 20.0) -> None:
    """Every route answers 200 `Hello` through the router; edge and reencrypt set a sticky cookie
    (the same work on both sides). Bounded wait: the router may still be loading its table."""
    for route in routes:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                status, headers, body = https_get(router.https_port, route.host, PATHS["hello"])
                if status == 200 and body == b"Hello\n":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{router.name}: {route.host} does not answer 200 Hello")
            time.sleep(0.1)
        if route.termination != "passthrough" and "set-cookie" not in headers:
            raise RuntimeError(f"{router.name}: {route.host} sets no sticky cookie")
