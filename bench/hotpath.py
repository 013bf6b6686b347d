"""The router's per-request work in memory: keep-alive HTTPS requests, one at a time, through the real
HttpsClientProtocol, HttpSession and UpstreamConnection (real TLS on both sides, real llhttp), with
in-memory transports instead of sockets.

What it measures is the router's own Python and OpenSSL work per request, without the kernel, uvloop's
socket handling or a load generator, so it is repeatable to a few percent on a busy 2-core machine: a tool
for engine work (try a change, see the effect in seconds). The figures of issue 5 still come from
`python -m bench`, which measures the whole process against HAProxy.

    python -m bench.hotpath                      # reencrypt and edge, µs per request
    python -m bench.hotpath --profile reencrypt  # cProfile: calls per request and the top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import ssl
import statistics
import time
from typing import Any

import uvloop
from cryptography import x509

from shiftroute.admission import RouterOptions, admit
from shiftroute.api.objects import EndpointSlice, Route, Service
from shiftroute.engine.context import Limits, RouterContext
from shiftroute.engine.listeners import HttpsClientProtocol
from shiftroute.engine.tls import TlsLayer
from shiftroute.engine.upstream import UpstreamConnection
from shiftroute.pki.issue import make_ca, make_leaf
from shiftroute.routing.compile import CompileOptions, Compiler, slices_by_service
from shiftroute.routing.contexts import server_context
from shiftroute.routing.table import TableHolder

NAMESPACE = "bench"
HOSTS = {"reencrypt": "reencrypt.bench.test", "edge": "edge.bench.test"}
# What nginx answers for `Hello` in the socket benchmark, byte for byte in shape.
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 29 Nov 2026 22:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 6\r\n"
    b"Last-Modified: Sun, 29 Nov 2026 21:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6a2b1c3d-6"\r\nAccept-Ranges: bytes\r\n\r\nHello\n'
)


class MemoryTransport:
    """Collects what the router writes; the rest of the transport interface the engine uses."""

    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.extra = {"peername": peer, "sockname": local}
        self.out: list[bytes] = []
        self.closed = False

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def writelines(self, pieces: list[bytes]) -> None:
        self.out.extend(bytes(piece) for piece in pieces)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Peer:
    """The far end of a TLS connection (the client, or the backend), in memory."""

    def __init__(self, context: ssl.SSLContext, server_side: bool, hostname: str | None = None) -> None:
        self.layer = TlsLayer(context, server_side=server_side, server_hostname=hostname)

    def recv(self, data: bytes) -> tuple[bytes, bytes]:
        pieces, out, _ = self.layer.feed(data)
        return b"".join(pieces), out


def _manifests(ca_pem: str) -> tuple[list[Route], list[Service], list[EndpointSlice]]:
    services, slices, routes = [], [], []
    for name, port in (("be-https", 443), ("be-http", 80)):
        meta = {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"}
        services.append(
            Service.from_manifest(
                {"metadata": meta, "spec": {"ports": [{"name": f"{port}-tcp", "port": port}]}}
            )
        )
        slices.append(
            EndpointSlice.from_manifest(
                {
                    "metadata": {**meta, "labels": {"kubernetes.io/service-name": name}},
                    "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                    "ports": [{"name": f"{port}-tcp", "port": port}],
                }
            )
        )
    for termination, host in HOSTS.items():
        service = "be-https" if termination == "reencrypt" else "be-http"
        tls: dict[str, Any] = {"termination": termination}
        if termination == "reencrypt":
            tls["destinationCACertificate"] = ca_pem
        routes.append(
            Route.from_manifest(
                {
                    "metadata": {
                        "name": termination,
                        "namespace": NAMESPACE,
                        "uid": f"uid-{termination}",
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                    },
                    "spec": {
                        "host": host,
                        "to": {"kind": "Service", "name": service},
                        "tls": tls,
                    },
                }
            )
        )
    return routes, services, slices


class World:
    """A router context with the two routes, a default certificate, and a backend certificate."""

    def __init__(self) -> None:
        ca = make_ca("hotpath CA")
        backend_cert = make_leaf(ca, "be-https.bench.svc", [x509.DNSName("be-https.bench.svc")])
        default = make_leaf(ca, "*.bench.test", [x509.DNSName("*.bench.test")])
        routes, services, slices = _manifests(ca.cert_pem())
        verdicts = admit(routes, RouterOptions())
        result = Compiler(CompileOptions()).compile(
            verdicts,
            {(s.meta.namespace, s.meta.name): s for s in services},
            slices_by_service(slices),
            1,
        )
        if result.errors:
            raise SystemExit(f"routes did not compile: {result.errors}")
        self.table = result.table
        self.ctx = RouterContext(TableHolder(self.table), Limits(), access_log_enabled=False)
        self.default_context = server_context(default.cert_pem(), default.key_pem())
        self.backend_context = server_context(backend_cert.cert_pem(), backend_cert.key_pem())
        self.client_context = ssl.create_default_context()
        self.client_context.check_hostname = False
        self.client_context.verify_mode = ssl.CERT_NONE


def _shuttle(a: Peer, b_feed: Any, a_out: bytes, b_transport: MemoryTransport, world: World) -> None:
    """Drive a handshake: bytes from `a` go to `b_feed`, what `b` writes goes back to `a`."""
    data = a_out
    for _ in range(10):
        if data:
            b_feed(data)
        world.ctx.writes.run()  # the end of the loop iteration: what the router wrote goes out
        back = b_transport.take()
        if not back:
            return
        _, data = a.recv(back)


class Connection:
    """One client connection through the router to one pooled backend connection."""

    def __init__(self, world: World, termination: str) -> None:
        self.world = world
        host = HOSTS[termination]
        self.tls_backend = termination == "reencrypt"
        self.client = Peer(world.client_context, server_side=False, hostname=host)
        self.client_transport = MemoryTransport(("127.0.0.1", 50000), ("127.0.0.1", 443))
        self.protocol = HttpsClientProtocol(world.ctx, lambda: world.default_context)
        self.protocol.connection_made(self.client_transport)  # type: ignore[arg-type]
        _shuttle(
            self.client, self.protocol.data_received, self.client.layer.start(), self.client_transport, world
        )
        if not self.client.layer.handshake_done:
            raise SystemExit("client handshake did not complete")
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hotpath\r\n\r\n".encode()
        self.backend: Peer | None = None
        self.backend_transport = MemoryTransport(("127.0.0.1", 443), ("127.0.0.1", 40000))
        self._pool_backend_connection(host)

    def _pool_backend_connection(self, host: str) -> None:
        """A connected, handshaken backend connection in the router's pool, as after a first request."""
        ctx = self.world.ctx
        backend = self.world.table.match_http(host, "/")
        if backend is None or not backend.servers:
            raise SystemExit(f"no backend for {host}")
        server = backend.servers[0]
        context = backend.backend_context
        hostname = backend.backend_hostname(server)
        key = ctx.pool.key_for(server.address, server.port, context, hostname)
        tls = TlsLayer(context, server_side=False, server_hostname=hostname) if context is not None else None
        conn = UpstreamConnection(ctx.pool, key, tls)
        conn.connection_made(self.backend_transport)  # type: ignore[arg-type]
        if tls is not None:
            self.backend = Peer(self.world.backend_context, server_side=True)
            ctx.writes.run()
            first = self.backend_transport.take()
            _, back = self.backend.recv(first)
            _shuttle(self.backend, conn.data_received, back, self.backend_transport, self.world)
            if not tls.handshake_done:
                raise SystemExit("backend handshake did not complete")
        ctx.pool.give_back(conn)

    def one(self) -> float:
        """One request and its response; returns the seconds spent in the router."""
        record = self.client.layer.encrypt(self.request)
        # Each step ends as the loop iteration would: the router's write batch runs (engine/outbox.py).
        # Here that is once per step; under load one run serves every connection of an iteration.
        writes = self.world.ctx.writes
        started = time.perf_counter()
        self.protocol.data_received(record)
        writes.run()
        spent = time.perf_counter() - started
        sent = self.backend_transport.take()
        if self.backend is not None:
            _, _ = self.backend.recv(sent)
            answer = self.backend.layer.encrypt(RESPONSE)
        else:
            answer = RESPONSE
        upstream = self._upstream()
        started = time.perf_counter()
        upstream.data_received(answer)
        writes.run()
        spent += time.perf_counter() - started
        plain, _ = self.client.recv(self.client_transport.take())
        if not plain.startswith(b"HTTP/1.1 200") or not plain.endswith(b"Hello\n"):
            raise SystemExit(f"unexpected response: {plain[:200]!r}")
        return spent

    def _upstream(self) -> UpstreamConnection:
        session = self.protocol.session
        if session is None or not session.queue or session.queue[0].upstream is None:
            raise SystemExit("the request did not reach a backend connection")
        return session.queue[0].upstream


async def _measure(termination: str, requests: int, rounds: int) -> list[float]:
    world = World()
    connection = Connection(world, termination)
    for _ in range(2000):  # warm-up: caches, the pool, the interpreter's specialisation
        connection.one()
        await asyncio.sleep(0)
    out = []
    for _ in range(rounds):
        total = 0.0
        for _ in range(requests):
            total += connection.one()
            # The loop turns (untimed): it runs the write batch's scheduled call, which finds nothing left
            # (one() ran the batch itself), so that the handles do not pile up in the loop.
            await asyncio.sleep(0)
        out.append(total / requests * 1e6)
    return out


async def _profile(termination: str, requests: int) -> None:
    world = World()
    connection = Connection(world, termination)
    for _ in range(2000):
        connection.one()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        connection.one()
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    calls = 0
    for (path, line, name), (_cc, count, own, _cum, _callers) in raw.items():
        if "bench/hotpath.py" in path:
            continue  # the harness's own client and backend work
        calls += count
        short = path.split("/src/")[-1].split("/lib/python3.11/")[-1]
        rows.append((own, count / requests, f"{short}:{line} {name}"))
    print(f"{termination}: {calls / requests:.1f} Python-visible calls per request (harness excluded)")
    for own, per, where in sorted(rows, reverse=True)[:40]:
        print(f"  {own / requests * 1e6:6.2f} µs own (profiled)  {per:5.2f}/req  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "terminations", nargs="*", metavar="TERMINATION", help="reencrypt, edge (default both)"
    )
    parser.add_argument("--requests", type=int, default=20000, help="requests per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported (default 5)")
    parser.add_argument("--profile", action="store_true", help="cProfile instead: calls per request")
    args = parser.parse_args()
    unknown = set(args.terminations) - set(HOSTS)
    if unknown:
        parser.error(f"unknown termination(s) {', '.join(sorted(unknown))}; known: {', '.join(HOSTS)}")
    for termination in args.terminations or ["reencrypt", "edge"]:
        if args.profile:
            uvloop.run(_profile(termination, args.requests))
            continue
        per_round = uvloop.run(_measure(termination, args.requests, args.rounds))
        print(
            f"{termination}: {statistics.median(per_round):.2f} µs/request in the router "
            f"(median of {args.rounds} x {args.requests}; rounds {', '.join(f'{x:.2f}' for x in per_round)})"
        )


if __name__ == "__main__":
    main()
