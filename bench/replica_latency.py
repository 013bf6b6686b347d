"""Issue 6's figure: how long after `shiftroute expose` returns does the new route serve on every router,
with 3 routers and a 3-member etcd cluster, all on 127.0.0.1.

    python -m bench.replica_latency [--changes 20] [--json out.json]

Each change is one CLI call (a new process, as a user runs it), sent through a different etcd member each
time (the member listed first in --store). The clock starts when the CLI process has exited and stops,
per router, at the first 200 for the new host; each router is polled on loopback by its own thread with a
new connection every POLL_S. "all routers" is the slowest of the three for that change: the figure.
The route often serves before the CLI process has finished exiting, so a second series writes through the
store API in this process and starts the clock when etcd acknowledged the write: propagation alone.
Everything it starts (etcd members, routers, the backend) is stopped in a `finally`; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shiftroute.store.etcd import EtcdStore

LOCALHOST = "127.0.0.1"
POLL_S = 0.001
CHANGE_DEADLINE_S = 10.0
START_DEADLINE_S = 30.0
ROUTERS = 3
MEMBERS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def wait_for(what: str, predicate: object, deadline_s: float = START_DEADLINE_S) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {deadline_s}s waiting for {what}")


# -- processes ----------------------------------------------------------------------------------------------


@dataclass
class Procs:
    workdir: Path
    started: list[subprocess.Popen[bytes]]

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def start_etcd(procs: Procs) -> list[str]:
    """A 3-member cluster with etcd's default timings; the client endpoints."""
    etcd = shutil.which("etcd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if etcd is None:
        raise SystemExit("etcd is not installed (Debian: apt-get install etcd-server)")
    ports = [(free_port(), free_port()) for _ in range(MEMBERS)]
    initial = ",".join(f"m{i}=http://{LOCALHOST}:{peer}" for i, (_, peer) in enumerate(ports))
    for i, (client, peer) in enumerate(ports):
        procs.start(f"etcd-m{i}", [
            etcd, "--name", f"m{i}", "--data-dir", str(procs.workdir / f"etcd-m{i}"),
            "--listen-client-urls", f"http://{LOCALHOST}:{client}",
            "--advertise-client-urls", f"http://{LOCALHOST}:{client}",
            "--listen-peer-urls", f"http://{LOCALHOST}:{peer}",
            "--initial-advertise-peer-urls", f"http://{LOCALHOST}:{peer}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--log-level", "warn",
        ])  # fmt: skip
    endpoints = [f"{LOCALHOST}:{client}" for client, _ in ports]
    wait_for("etcd to elect a leader", lambda: all(_has_leader(e) for e in endpoints))
    return endpoints


def _has_leader(endpoint: str) -> bool:
    """etcd's own view (`/v3/maintenance/status`, answered locally) through its JSON gateway."""
    host, port = endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=1)
    try:
        conn.request(
            "POST", "/v3/maintenance/status", body=b"{}", headers={"Content-Type": "application/json"}
        )
        body = json.loads(conn.getresponse().read() or b"{}")
    finally:
        conn.close()
    return int(body.get("leader") or 0) != 0


def shiftroute(*args: str) -> list[str]:
    return [sys.executable, "-m", "shiftroute", *args]


def start_routers(procs: Procs, store: str) -> list[int]:
    """Three `shiftroute serve`, ports from each one's ready-file; their HTTP ports."""
    files = []
    for i in range(ROUTERS):
        ready = procs.workdir / f"ready-r{i + 1}.json"
        files.append(ready)
        procs.start(f"router-r{i + 1}", shiftroute(
            "serve", "--store", store, "--bind", LOCALHOST, "--http-port", "0", "--https-port", "0",
            "--admin-port", "0", "--workers", "1", "--router-name", f"r{i + 1}", "--no-access-log",
            "--state-dir", str(procs.workdir / f"state-r{i + 1}"), "--ready-file", str(ready),
        ))  # fmt: skip
    wait_for("the routers to be ready", lambda: all(f.exists() for f in files))
    return [int(json.loads(f.read_text())["http"]) for f in files]


@contextlib.contextmanager
def backend() -> Iterator[int]:
    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"Hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def cli(store: str, *args: str) -> None:
    done = subprocess.run(shiftroute("--store", store, *args), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"shiftroute {' '.join(args)}: {done.stderr.strip()}")


# -- measuring ---------------------------------------------------------------------------------------------


def status_of(port: int, host: str) -> int:
    with socket.create_connection((LOCALHOST, port), timeout=2) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64)
    return int(head.split(b" ", 2)[1])


def first_200(port: int, host: str, started: float, out: list[float | None], slot: int) -> None:
    deadline = started + CHANGE_DEADLINE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if status_of(port, host) == 200:
                out[slot] = (time.monotonic() - started) * 1000
                return
        time.sleep(POLL_S)


def through(endpoints: list[str], index: int) -> str:
    """The store URL with member `index % 3` first: change by change, each member takes the write."""
    first = index % len(endpoints)
    return "etcd://" + ",".join(endpoints[first:] + endpoints[:first])


def probe_all(ports: list[int], host: str, started: float) -> list[float | None]:
    results: list[float | None] = [None] * len(ports)
    threads = [
        threading.Thread(target=first_200, args=(port, host, started, results, i))
        for i, port in enumerate(ports)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CHANGE_DEADLINE_S + 5)
    return results


def cli_change(endpoints: list[str], ports: list[int], index: int) -> tuple[list[float | None], float]:
    """`shiftroute expose` of route `index`; ms from the CLI's exit to the first 200 on each router, and
    the CLI's own duration (process start included, not part of the figure)."""
    name = f"c{index:03d}"
    began = time.monotonic()
    cli(through(endpoints, index), "expose", "service", "web", "--name", name, "--hostname", f"{name}.bench")
    returned = time.monotonic()
    return probe_all(ports, f"{name}.bench", returned), (returned - began) * 1000


def store_change(endpoints: list[str], ports: list[int], index: int) -> list[float | None]:
    """The same write through the store API in this process (what the CLI calls): the clock starts when
    etcd acknowledged it, so this is the propagation alone, without a process exiting in between."""
    name = f"s{index:03d}"
    manifest = {"apiVersion": "route.openshift.io/v1", "kind": "Route",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"host": f"{name}.bench", "to": {"kind": "Service", "name": "web"}}}  # fmt: skip
    store = EtcdStore(through(endpoints, index))
    try:
        store.create(manifest)
        acknowledged = time.monotonic()
    finally:
        store.close()
    return probe_all(ports, f"{name}.bench", acknowledged)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summarize(rows: list[list[float | None]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    columns = {f"r{i + 1}": [row[i] for row in rows] for i in range(ROUTERS)}
    columns["all routers"] = [None if None in row else max(v for v in row if v is not None) for row in rows]
    for name, values in columns.items():
        done = [v for v in values if v is not None]
        out[name] = {
            "p50_ms": percentile(done, 0.5) if done else float("nan"),
            "p99_ms": percentile(done, 0.99) if done else float("nan"),
            "max_ms": max(done) if done else float("nan"),
            "missed": float(len(values) - len(done)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replica_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--changes", type=int, default=20, help="routes to add, one at a time (default 20)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shiftroute-replicas-") as tmp:
        procs = Procs(Path(tmp), [])
        try:
            with backend() as backend_port:
                endpoints = start_etcd(procs)
                store = "etcd://" + ",".join(endpoints)
                cli(
                    store,
                    "create",
                    "service",
                    "web",
                    "--port",
                    "80",
                    "--endpoint",
                    f"{LOCALHOST}:{backend_port}",
                )
                ports = start_routers(procs, store)
                cli(
                    store,
                    "expose",
                    "service",
                    "web",
                    "--name",
                    "warmup",
                    "--hostname",
                    "warmup.bench.example",
                )
                wait_for("the warm-up route on every router",
                         lambda: all(status_of(p, "warmup.bench.example") == 200 for p in ports))  # fmt: skip
                cli_rows, cli_ms, store_rows = [], [], []
                for index in range(args.changes):
                    row, took = cli_change(endpoints, ports, index)
                    cli_rows.append(row)
                    cli_ms.append(took)
                    store_rows.append(store_change(endpoints, ports, index))
        finally:
            procs.stop_all()
    figures = {"cli": summarize(cli_rows), "store_api": summarize(store_rows)}
    report(args.changes, figures, statistics.median(cli_ms))
    if args.json:
        result = {
            "changes": args.changes,
            "routers": ROUTERS,
            "etcd_members": MEMBERS,
            "cpus": os.cpu_count(),
            "ms_to_first_200": figures,
            "cli_call_ms_p50": statistics.median(cli_ms),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def report(changes: int, figures: dict[str, dict[str, dict[str, float]]], cli_p50: float) -> None:
    where = f"{MEMBERS}-member etcd on {LOCALHOST}"
    print(
        f"{changes} new routes per series, one at a time; {ROUTERS} routers, {where} ({os.cpu_count()} CPUs)"
    )
    titles = {
        "cli": "ms from `shiftroute expose` exiting to the first 200",
        "store_api": "ms from the store API's create returning (etcd acknowledged) to the first 200",
    }
    for kind, summary in figures.items():
        print(titles[kind])
        print(f"  {'':<20}{'p50':>8}{'p99':>8}{'max':>8}  missed")
        for name, row in summary.items():
            cells = "".join(f"{row[k]:8.1f}" for k in ("p50_ms", "p99_ms", "max_ms"))
            print(f"  {name:<20}{cells}  {int(row['missed'])}")
    print(f"(the CLI call itself, process start included: p50 {cli_p50:.0f} ms)")


if __name__ == "__main__":
    sys.exit(main())
