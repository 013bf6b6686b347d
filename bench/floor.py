"""How low can a Python passthrough go? Workload 3 (a new TLS connection per request) for passthrough,
through three routers on the same cores, alternating, medians of the rounds:

- shiftroute;
- HAProxy (as in `python -m bench`);
- a minimal relay on uvloop: accept, wait for the first bytes, connect to the endpoint, relay both ways
  with half-close, close both sides once both are done. No ClientHello parsing, no routing, no limits,
  no timers, no logging: only what any uvloop program must do per relayed connection;
- the same relay with the endpoint side on a plain non-blocking socket (connect watched with add_writer,
  recv on add_reader, send from the client's data_received): no task, no coroutine and no second uvloop
  transport per connection. It asks whether leaving uvloop's connect path would go below the floor
  (session 6: it did not; 385 against the minimal relay's 345 µs, within the noise).

The minimal relay's figure is the floor for shiftroute's design (uvloop transports on both sides): what
shiftroute spends above it is its own work; what the floor spends above HAProxy is the event loop's and
the interpreter's per-connection cost, which no change inside shiftroute removes.

    python -m bench.floor [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import source
from bench.backends import PATHS
from bench.env import Env, Options
from bench.handshake_client import run_handshakes
from bench.procs import exit_on_signals, pinned, stop_bounded
from bench.workloads import HANDSHAKE_CONCURRENCY, measure

# -- the minimal relay (runs in its own process: python -m bench.floor --relay ...) -----------------------


class _Side(asyncio.Protocol):
    """One socket of a relayed pair; `other` is the opposite side."""

    def __init__(self, other: _Side | None = None) -> None:
        self.other = other
        self.transport: Any = None
        self.eof = False
        self.pending: list[bytes] = []  # the client's bytes before the endpoint accepted

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.pending.append(data)
        elif not other.transport.is_closing():
            other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is not None and other.transport is not None and not other.transport.is_closing():
            other.transport.write_eof()
            if other.eof:  # both sides done: close both (an unclosed uvloop transport must not be dropped)
                self.transport.close()
                other.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        other = self.other
        if other is not None and other.transport is not None and not other.transport.is_closing():
            other.transport.close()


class _Client(_Side):
    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint_port: int) -> None:
        super().__init__()
        self.loop, self.endpoint_port = loop, endpoint_port

    def data_received(self, data: bytes) -> None:
        if self.other is None:
            self.pending.append(data)
            self.transport.pause_reading()
            endpoint = self.other = _Side(self)
            task = self.loop.create_task(
                self.loop.create_connection(lambda: endpoint, "127.0.0.1", self.endpoint_port)
            )
            task.add_done_callback(self._connected)
            return
        super().data_received(data)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        if task.exception() is not None:
            self.transport.abort()
            return
        endpoint = self.other
        assert endpoint is not None
        for piece in self.pending:
            endpoint.transport.write(piece)
        self.pending = []
        if self.eof:
            endpoint.transport.write_eof()
        if not self.transport.is_closing():
            self.transport.resume_reading()


class _RawEndpointClient(asyncio.Protocol):
    """The client on a uvloop transport, the endpoint on a plain non-blocking socket: connect(2) watched
    with add_writer, recv(2) on add_reader, send(2) straight from the client's data_received. No task,
    no coroutine and no second transport per connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint_port: int) -> None:
        self.loop, self.endpoint_port = loop, endpoint_port
        self.transport: Any = None
        self.sock: socket.socket | None = None
        self.fd = -1
        self.connected = False
        self.pending: list[bytes] = []  # for the endpoint: before it accepted, or what it could not take
        self.client_eof = False
        self.endpoint_eof = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.sock is None:
            sock = self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.fd = sock.fileno()
            self.pending.append(data)
            self.transport.pause_reading()
            err = sock.connect_ex(("127.0.0.1", self.endpoint_port))
            if err not in (0, errno.EINPROGRESS):
                self._abort()
                return
            self.loop.add_writer(self.fd, self._connected)
            return
        if not self.connected or self.pending:
            self.pending.append(data)
            return
        self._send(data)

    def _connected(self) -> None:
        self.loop.remove_writer(self.fd)
        assert self.sock is not None
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._abort()
            return
        self.connected = True
        self.loop.add_reader(self.fd, self._readable)
        pending, self.pending = self.pending, []
        if pending:
            self._send(b"".join(pending))
        if self.client_eof and not self.pending:
            self.sock.shutdown(socket.SHUT_WR)
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._abort()
            return
        if sent < len(data):
            self.pending.append(data[sent:])
            self.transport.pause_reading()
            self.loop.add_writer(self.fd, self._flush)

    def _flush(self) -> None:
        self.loop.remove_writer(self.fd)
        pending, self.pending = self.pending, []
        self._send(b"".join(pending))
        if not self.pending:
            if self.client_eof:
                assert self.sock is not None
                self.sock.shutdown(socket.SHUT_WR)
            elif not self.transport.is_closing():
                self.transport.resume_reading()

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._abort()
            return
        if data:
            self.transport.write(data)
            return
        self.endpoint_eof = True
        self.loop.remove_reader(self.fd)
        if self.client_eof:
            self._close()
        elif not self.transport.is_closing():
            self.transport.write_eof()

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.connected and not self.pending:
            assert self.sock is not None
            self.sock.shutdown(socket.SHUT_WR)
            if self.endpoint_eof:
                self._close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_endpoint()

    def _close_endpoint(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
            sock.close()

    def _close(self) -> None:
        self._close_endpoint()
        self.transport.close()

    def _abort(self) -> None:
        self._close_endpoint()
        self.transport.abort()


async def _serve(endpoint_port: int, port_file: Path, raw: bool = False) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    make = _RawEndpointClient if raw else _Client
    server = await loop.create_server(lambda: make(loop, endpoint_port), "127.0.0.1", 0)
    port_file.write_text(json.dumps({"https": server.sockets[0].getsockname()[1]}))
    await stop
    server.close()


# -- the minimal relay as a Router of the harness -------------------------------------------------------


class MinimalRelay:
    http_port = 0

    def __init__(self, workdir: Path, endpoint_port: int, cpu: int, raw: bool = False) -> None:
        self.name = "raw-endpoint-relay" if raw else "minimal-uvloop-relay"
        ready = workdir / f"{self.name}.json"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "bench.floor", "--relay", str(endpoint_port), str(ready)]
        argv += ["--raw"] if raw else []
        self.proc = subprocess.Popen(pinned(cpu, argv), cwd=Path(__file__).resolve().parent.parent)
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the minimal relay did not start")
            time.sleep(0.05)
        self.https_port = int(json.loads(ready.read_text())["https"])

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        stop_bounded(self.proc)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--ref", help="measure src/shiftroute at this git ref (see python -m bench --help)")
    p.add_argument("--relay", nargs=2, metavar=("ENDPOINT_PORT", "READY_FILE"), help=argparse.SUPPRESS)
    p.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.relay:
        import uvloop

        uvloop.run(_serve(int(args.relay[0]), Path(args.relay[1]), args.raw))
        return
    exit_on_signals()
    source.use_ref(args.ref)
    samples: dict[str, list[float]] = {}
    with Env(Options(rounds=args.rounds, seconds=args.seconds)) as env:
        route = env.route("passthrough")
        relay = MinimalRelay(env.workdir, env.backend.https_port, env.layout.router_cpu)
        raw = MinimalRelay(env.workdir, env.backend.https_port, env.layout.router_cpu, raw=True)
        env.extra[relay.name] = relay
        env.extra[raw.name] = raw
        try:

            def load(router: Any, seconds: float) -> Any:
                return run_handshakes(
                    router.https_port, route.host, PATHS["hello"], HANDSHAKE_CONCURRENCY, seconds
                )

            routers: list[Any] = [env.shiftroute, env.haproxy, relay, raw]
            for _ in range(args.rounds):
                for router in routers:
                    result, sample = measure(env, router, load, args.seconds)
                    if result.failed:
                        raise SystemExit(f"{router.name}: {result.failed} failed requests")
                    samples.setdefault(router.name, []).append(sample["cpu_us_per_req"])
                    print(f"{router.name}: {sample['cpu_us_per_req']:.0f} µs/connection", file=sys.stderr)
        finally:
            relay.stop()
            raw.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    haproxy = medians["haproxy"]
    print(
        f"passthrough, a new TLS connection per request ({HANDSHAKE_CONCURRENCY} concurrent), "
        "router CPU per connection,"
    )
    print(f"median of {args.rounds} rounds of {args.seconds:g} s, alternating; {source.describe()}")
    for name, value in medians.items():
        print(f"  {name:22} {value:6.0f} µs   {value / haproxy:.2f}x HAProxy")


if __name__ == "__main__":
    main()
