"""One router worker process: listeners, admin port, controller, status writer, health checks, signals.

`shiftroute serve` runs one of these per worker (SO_REUSEPORT shares the ports). Worker 0 also serves the
admin port and writes status and the router's registration (issue 3: exactly one writes status).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

from shiftroute import accel
from shiftroute.admin import metrics
from shiftroute.admin.server import start_admin
from shiftroute.admission import RouterOptions, Verdict
from shiftroute.api.objects import ObjectKey
from shiftroute.engine import client_link, gc_tuning, malloc_tuning, tls, transports
from shiftroute.engine.context import Limits, RouterContext
from shiftroute.engine.controller import Controller, publish_into_loop
from shiftroute.engine.default_cert import ensure_default_certificate
from shiftroute.engine.health import HealthChecker
from shiftroute.engine.listeners import HttpClientProtocol, HttpsProtocols
from shiftroute.engine.status import StatusWriter
from shiftroute.errors import PKIError
from shiftroute.routing.compile import CompileOptions, Compiler, CompileResult
from shiftroute.routing.table import TableHolder, Timeouts

log = logging.getLogger("shiftroute.router")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    store_url: str | None
    options: RouterOptions
    bind: str = ""
    http_port: int = 8080
    https_port: int = 8443
    admin_port: int = 1936
    admin_bind: str = ""
    state_dir: Path = Path(".")
    default_cert: Path | None = None
    default_key: Path | None = None
    service_ca: str = ""
    tls_profile: str = "intermediate"
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)  # the routes' defaults (annotations override)
    access_log: bool = True
    drain_grace: float = 5.0
    drain_timeout: float = 30.0
    worker_index: int = 0
    workers: int = 1
    ready_file: Path | None = None


# A listener's protocol factory: functools.partial, not a lambda, so that each connection's protocol is
# made without a Python frame (the listeners are protocols by their methods, not by inheritance). The
# HTTPS listener's is a listeners.HttpsProtocols, which the router's own server calls in C.
_ProtocolFactory = Callable[[], asyncio.Protocol]


class _Server(Protocol):
    """What the router asks of a listening server: asyncio.Server, or client_link.HubServer (HTTPS)."""

    async def start_serving(self) -> None: ...

    def close(self) -> None: ...


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.holder = TableHolder()
        self.ctx = RouterContext(self.holder, config.limits, config.access_log)
        self.ready = False
        self.listening = False
        self.table_revision = 0
        self.store_ok = False
        self.store_problem = ""  # why the store did not answer, for /healthz/ready before the first sync
        self.cert_expiry: dict[str, datetime] = {}
        self._default: dict[str, ssl.SSLContext] = {}
        self._servers: list[_Server] = []
        self._admin: asyncio.Server | None = None
        self._seen_warnings: set[str] = set()
        self._seen_errors: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._reload = False
        self.status: StatusWriter | None = None
        self.ports: dict[str, int] = {}

    @property
    def writes_status(self) -> bool:
        return self.config.worker_index == 0

    # -- default certificate -------------------------------------------------------------------------

    def load_default_certificate(self) -> None:
        cfg = self.config
        default = ensure_default_certificate(
            cfg.state_dir, cfg.options.domain, cfg.default_cert, cfg.default_key
        )
        context, expiry = default.load(cfg.tls_profile)
        self._default["context"] = context
        self.cert_expiry["default"] = expiry

    def default_context(self) -> ssl.SSLContext:
        return self._default["context"]

    # -- publishing ----------------------------------------------------------------------------------

    def _publish(self, result: CompileResult, verdicts: dict[ObjectKey, Verdict]) -> None:
        self.holder.publish(result.table)
        self.table_revision = result.table.revision
        for warning in result.warnings:
            if warning not in self._seen_warnings:
                self._seen_warnings.add(warning)
                log.warning("%s", warning)
        for route, error in result.errors.items():
            if self._seen_errors.get(route) != error:
                log.error("route %s cannot be served: %s", route, error)
        self._seen_errors = dict(result.errors)
        if not self.ready:
            self.ready = True
            log.info(
                "routing table ready: %d routes (store revision %d)",
                len(result.table.backends),
                result.table.revision,
            )
            asyncio.get_running_loop().create_task(self._start_serving())
        if self.status is not None:
            self.status.submit(verdicts)

    async def _start_serving(self) -> None:
        for server in self._servers:
            await server.start_serving()
        self.listening = True
        log.info("listening: http :%d, https :%d", self.ports["http"], self.ports["https"])
        self._write_ready_file()

    def _store_state(self, ok: bool, why: str) -> None:
        self.store_ok = ok
        self.store_problem = "" if ok else why

    def _write_ready_file(self) -> None:
        path = self.config.ready_file
        if path is None or not self.writes_status:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.ports, "pid": os.getpid()}))
        tmp.replace(path)

    # -- admin ---------------------------------------------------------------------------------------

    def _healthz(self) -> tuple[int, bytes, bytes]:
        return 200, b"ok\n", b"text/plain"

    def _ready(self) -> tuple[int, bytes, bytes]:
        if self.ready and self.listening and not self.ctx.draining:
            return 200, b"ready\n", b"text/plain"
        if self.ctx.draining:
            why = "draining"
        elif not self.ready:
            # A load balancer's probe says why the router is out of rotation (issue 6: a router started
            # while its store is down waits for the first sync).
            why = "waiting for the store" + (f": {self.store_problem}" if self.store_problem else "")
        else:
            why = "starting"
        return 503, f"not ready: {why}\n".encode(), b"text/plain"

    def _metrics(self) -> tuple[int, bytes, bytes]:
        body = metrics.render(
            self.ctx, self.ready and not self.ctx.draining, self.cert_expiry, self.table_revision
        )
        return 200, body, b"text/plain; version=0.0.4"

    # -- lifecycle -----------------------------------------------------------------------------------

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.ctx.loop = loop
        cfg = self.config
        host = cfg.bind or None
        # Bound now (the ports are known and taken), listening only once the first routing table is
        # published: with SO_REUSEPORT the kernel would otherwise hand clients to a worker that knows no
        # route yet, and a restarted router would answer 503s, where OpenShift's router starts HAProxy
        # only after its first sync.
        http = await loop.create_server(
            cast(_ProtocolFactory, functools.partial(HttpClientProtocol, self.ctx)),
            host,
            cfg.http_port,
            reuse_port=True,
            backlog=4096,
            start_serving=False,
        )
        https_factory = HttpsProtocols(self.ctx, self.default_context)
        https: _Server
        if client_link.use_router_sockets():
            # The HTTPS connections on the router's own sockets (engine/client_link.py), bound the same way.
            https_server = client_link.HubServer(loop, https_factory)
            https_server.bind(host, cfg.https_port, 4096)
            https, self.ports["https"] = https_server, int(https_server.sockets[0].getsockname()[1])
        else:
            loop_server = await loop.create_server(
                cast(_ProtocolFactory, https_factory),
                host,
                cfg.https_port,
                reuse_port=True,
                backlog=4096,
                start_serving=False,
            )
            https, self.ports["https"] = loop_server, _port_of(loop_server)
        self._servers = [http, https]
        self.ports["http"] = _port_of(http)
        if self.writes_status:
            self._admin = await start_admin(
                cfg.admin_bind or cfg.bind or "0.0.0.0",
                cfg.admin_port,
                {b"/healthz": self._healthz, b"/healthz/ready": self._ready, b"/metrics": self._metrics},
            )
            self.ports["admin"] = _port_of(self._admin)
        log.info(
            "bound: http %s:%d, https %s:%d%s (listening once the first routing table is ready)",
            cfg.bind or "*",
            self.ports["http"],
            cfg.bind or "*",
            self.ports["https"],
            f", admin :{self.ports['admin']}" if "admin" in self.ports else "",
        )

    def _registration(self) -> dict[str, Any]:
        # Where local tools (diagnose, the demo) reach this router; a wildcard bind is reached on loopback.
        bind = self.config.bind
        host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
        return {
            "http": f"{host}:{self.ports['http']}",
            "https": f"{host}:{self.ports['https']}",
            "admin": f"{host}:{self.ports.get('admin', 0)}",
            "workers": self.config.workers,
            "startedAt": datetime.now().astimezone().isoformat(timespec="seconds"),
        }

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        transport_map = transports.install(loop)  # before the first transport: see engine/transports.py
        cfg = self.config
        self.load_default_certificate()
        await self._listen()
        compiler = Compiler(
            CompileOptions(
                cfg.tls_profile, cfg.service_ca, cfg.options.insecure_skip_backend_verify, cfg.timeouts
            )
        )
        if self.writes_status:
            self.status = StatusWriter(cfg.store_url, cfg.options, self._registration())
            self.status.start()

        def store_state(ok: bool, why: str) -> None:
            loop.call_soon_threadsafe(self._store_state, ok, why)

        controller = Controller(
            cfg.store_url, cfg.options, compiler, publish_into_loop(loop, self._publish), store_state
        )
        log.info("request path: %s", accel.describe())
        log.info("TLS records: %s", tls.describe_records())
        log.info("transport map: %s", transport_map)
        log.info("https connections: %s", client_link.describe())
        log.info("garbage collector thresholds %s (routing tables are frozen as published)", gc_tuning.tune())
        log.info("malloc thresholds: %s", malloc_tuning.tune())
        log.info("reading routes from the store %s; ready after the first sync", cfg.store_url)
        controller.start()
        health = HealthChecker(self.ctx)
        health.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        pruner = loop.create_task(self._prune())
        await self._stop.wait()
        code = await self._drain()
        pruner.cancel()
        await health.stop()
        controller.stop()
        if self.status is not None:
            await asyncio.to_thread(self.status.stop)
        self.ctx.access.flush()  # access-log lines of the last loop iteration (engine/context.py)
        return code

    def _sighup(self) -> None:
        try:
            self.load_default_certificate()
            log.info("SIGHUP: default certificate reloaded")
        except PKIError as exc:
            log.error("SIGHUP: default certificate not reloaded, keeping the old one: %s", exc)

    async def _prune(self) -> None:
        while True:
            await asyncio.sleep(30)
            self.ctx.rates.prune()

    async def _drain(self) -> int:
        """hardening.md rule 22: not ready first, keep accepting for the grace period, then close the
        listeners, let in-flight requests finish until the drain deadline, then exit (1 if connections had
        to be cut)."""
        cfg = self.config
        self.ctx.draining = True
        if self.status is not None:
            self.status.set_phase("Draining")
        log.info(
            "shutting down: not ready; accepting for %.1fs more, then draining up to %.1fs",
            cfg.drain_grace,
            cfg.drain_timeout,
        )
        await asyncio.sleep(cfg.drain_grace)
        for server in self._servers:
            server.close()
        deadline = time.monotonic() + cfg.drain_timeout
        while time.monotonic() < deadline:
            for conn in list(self.ctx.connections):
                if conn.idle:
                    conn.finish()
            if not self.ctx.connections:
                break
            await asyncio.sleep(0.05)
        cut = len(self.ctx.connections)
        for conn in list(self.ctx.connections):
            conn.abort()
        self.ctx.pool.close_all()
        if self._admin is not None:
            self._admin.close()
        if cut:
            log.warning("drain deadline reached: cut %d connections", cut)
        else:
            log.info("drained; bye")
        return 1 if cut else 0


def _port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
