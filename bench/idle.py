"""Workload 5: idle TLS connections held open; memory per connection = RSS growth / connections.

The client is plain asyncio with non-blocking `ssl` sockets (not asyncio's SSL transport, which keeps a
256 KiB buffer per connection on the client side), run in the harness process on the load CPU. Each
measurement uses a freshly started router, because a process that already held and closed connections
reuses that memory and would show almost no growth."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable

from bench.client import client_context
from bench.env import Env, Router, check_routes
from bench.haproxy import HAProxyRouter
from bench.procs import LOCALHOST, rss_bytes
from bench.results_model import CaseResult, Target
from bench.shiftroute_router import ShiftrouteRouter

CONCURRENCY = 64
OPEN_TIMEOUT_S = 120.0
SETTLE_S = 1.0


async def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, write: bool) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, ready)
    try:
        await asyncio.wait_for(fut, 10)
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _open_one(port: int, host: str) -> ssl.SSLSocket:
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(raw, (LOCALHOST, port)), 10)
        tls = client_context().wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        raw.close()
        raise
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await _wait_fd(loop, tls.fileno(), write=False)
            except ssl.SSLWantWriteError:
                await _wait_fd(loop, tls.fileno(), write=True)
    except BaseException:
        tls.close()
        raise


async def open_idle(port: int, host: str, count: int) -> tuple[list[ssl.SSLSocket], int]:
    """`count` completed TLS handshakes, CONCURRENCY at a time; (sockets, failures)."""
    gate = asyncio.Semaphore(CONCURRENCY)
    opened: list[ssl.SSLSocket] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            try:
                opened.append(await _open_one(port, host))
            except (OSError, TimeoutError):
                failures += 1

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), OPEN_TIMEOUT_S)
    return opened, failures


def alive(sock: ssl.SSLSocket) -> bool:
    """Still open: a read finds nothing (TLS 1.3 session tickets are consumed, no EOF, no reset)."""
    try:
        return sock.recv(1) != b""
    except ssl.SSLWantReadError:
        return True
    except OSError:
        return False


def measure_idle(router: Router, host: str, count: int) -> dict[str, float]:
    before = rss_bytes(router.pids())
    started = time.monotonic()
    socks, failures = asyncio.run(open_idle(router.https_port, host, count))
    open_s = time.monotonic() - started
    try:
        time.sleep(SETTLE_S)
        after = rss_bytes(router.pids())
        live = sum(1 for s in socks if alive(s))
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    return {
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "connections": live,
        "failed_to_open": failures,
        "open_seconds": open_s,
        "kib_per_conn": (after - before) / max(live, 1) / 1024,
    }


def idle_connections(env: Env, case: CaseResult, termination: str) -> None:
    route = env.route(termination)
    makers: list[tuple[str, Callable[[int], Router]]] = [
        (
            "shiftroute",
            lambda i: ShiftrouteRouter(
                f"shiftroute-idle-{termination}-{i}", env.procs, env.workdir, env.shiftroute.store, env.certs
            ),
        ),
        ("haproxy", lambda i: _fresh_haproxy(env, f"haproxy-idle-{termination}-{i}")),
    ]
    for i in range(env.options.rounds):
        for name, make in makers:
            router = make(i)
            try:
                if isinstance(router, ShiftrouteRouter):
                    router.start(cpu=env.layout.router_cpu)
                check_routes(router, env.routes)
                with env.all_paused():
                    case.add(name, measure_idle(router, route.host, env.options.idle_connections))
            finally:
                router.stop()
    label = f"5. {env.options.idle_connections} idle TLS connections, {termination}"
    case.row(
        label,
        "KiB per connection (RSS growth)",
        "kib_per_conn",
        Target("<= 64 KiB and <= 2x", max_ratio=2.0, max_absolute=64.0),
    )
    case.rows_from_values(
        label,
        "connections held",
        case.median("shiftroute", "connections"),
        case.median("haproxy", "connections"),
        show_ratio=False,
    )


def _fresh_haproxy(env: Env, name: str) -> HAProxyRouter:
    router = HAProxyRouter(name, env.procs, env.workdir, env.certs)
    router.config.render(env.routes)
    router.start(cpu=env.layout.router_cpu)
    return router
