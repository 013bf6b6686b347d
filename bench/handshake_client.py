"""Workload 3's client: a new TLS connection per request, every one a full handshake.

wrk and h2load both resume TLS sessions when they reconnect (wrk keeps the session across SSL_clear,
h2load reuses it): HAProxy's own counters showed 91-98 % of handshakes resumed with either. This client
never offers a session, and checks `session_reused` on every connection. It is Python (non-blocking `ssl`
sockets on an asyncio loop, pinned with the harness to the load CPU), so it may not saturate the router;
the primary figure is the router's CPU per handshake, which does not need saturation."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import statistics
import time

from bench.idle import _open_one, _wait_fd
from bench.loadgen import LoadResult


async def _request(port: int, host: str, path: str) -> tuple[bool, bool, int]:
    """(ok: 200 and the whole body, resumed, bytes) for one GET on a new connection."""
    loop = asyncio.get_running_loop()
    tls = await _open_one(port, host)
    try:
        resumed = tls.session_reused
        tls.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while True:
            try:
                chunk = tls.recv(65536)
            except ssl.SSLWantReadError:
                await _wait_fd(loop, tls.fileno(), write=False)
                continue
            except (ssl.SSLZeroReturnError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"Hello\n"), resumed, len(data)
    finally:
        with contextlib.suppress(OSError):
            tls.close()


async def _run(
    port: int, host: str, path: str, concurrency: int, seconds: float, limit: int | None = None
) -> LoadResult:
    """For `seconds`, or until `limit` connections have been started (whichever comes first)."""
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0, "resumed": 0, "bytes": 0}
    started = time.monotonic()
    end = started + seconds
    remaining = [limit if limit is not None else -1]

    async def worker() -> None:
        while time.monotonic() < end and remaining[0] != 0:
            remaining[0] -= 1
            t = time.monotonic()
            try:
                ok, resumed, size = await asyncio.wait_for(_request(port, host, path), 10)
            except (OSError, TimeoutError):
                counts["failed"] += 1
                continue
            latencies.append(time.monotonic() - t)
            counts["ok" if ok else "failed"] += 1
            counts["resumed"] += resumed
            counts["bytes"] += size

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(
        requests=counts["ok"],
        seconds=elapsed,
        bytes=counts["bytes"],
        errors={"failed": counts["failed"]},
        p50_ms=cuts[49] * 1000,
        p90_ms=cuts[89] * 1000,
        p99_ms=cuts[98] * 1000,
        mean_ms=statistics.fmean(latencies) * 1000 if latencies else 0.0,
        resumed=counts["resumed"],
    )


def run_handshakes(
    port: int, host: str, path: str, concurrency: int, seconds: float, limit: int | None = None
) -> LoadResult:
    """New connections, `concurrency` at a time, for `seconds` or `limit` connections in all."""
    try:
        import uvloop

        return uvloop.run(_run(port, host, path, concurrency, seconds, limit))
    except ImportError:
        return asyncio.run(_run(port, host, path, concurrency, seconds, limit))
