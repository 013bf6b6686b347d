"""Real etcd for the tests: one member or a 3-member cluster on 127.0.0.1 free ports, data in tmp_path.

Members run with a short heartbeat and election timeout so elections after a kill take well under a
second; every wait has a deadline and teardown always kills what was started. The helpers talk to etcd's
JSON gateway with the standard library only, so a bug in the store's client cannot hide a cluster problem.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require_binary, wait_until

STARTUP_TIMEOUT = 30.0
HEARTBEAT_MS = 50
ELECTION_MS = 500


@dataclass(frozen=True)
class TLSFiles:
    """Server certificate for the members, client certificate for us, both from one CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def status(port: int, timeout: float = 1.0, tls: TLSFiles | None = None) -> dict[str, Any]:
    """`/v3/maintenance/status` of one member (answered locally, even without a leader)."""
    conn: http.client.HTTPConnection
    if tls is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls.client_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/v3/maintenance/status", body=b"{}", headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"status of 127.0.0.1:{port}: HTTP {resp.status}: {body}")
    return dict(body)


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str = ""
    tls: TLSFiles | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    def start(self) -> None:
        """Start (or restart: the data dir is kept, so the member rejoins with its identity)."""
        args = [
            require_binary("etcd"),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", "shiftroute-test",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no graceful leader transfer."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def status(self) -> dict[str, Any]:
        return status(self.client_port, tls=self.tls)

    def member_id(self) -> int:
        return int(self.status()["header"]["member_id"])

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Cluster:
    members: list[Member]

    @property
    def url(self) -> str:
        scheme = "etcds" if self.members[0].tls else "etcd"
        return f"{scheme}://" + ",".join(m.endpoint for m in self.members)

    def start(self) -> None:
        for member in self.members:
            member.start()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Every running member is up and sees the same leader."""

        def healthy() -> bool:
            leaders = {int(m.status().get("leader") or 0) for m in self.members if m.running}
            return len(leaders) == 1 and 0 not in leaders

        try:
            wait_until(
                healthy, timeout, f"etcd members {[m.endpoint for m in self.members]} to elect a leader"
            )
        except AssertionError:
            logs = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in self.members)
            raise AssertionError(f"etcd did not become healthy within {timeout}s\n{logs}") from None

    def leader(self) -> Member:
        def find() -> Member | None:
            ids = {m.member_id(): m for m in self.members if m.running}
            leader = int(next(m for m in self.members if m.running).status().get("leader") or 0)
            return ids.get(leader)

        found = wait_until(find, STARTUP_TIMEOUT, "an etcd leader")
        assert isinstance(found, Member)
        return found

    def wait_no_leader(self, member: Member, timeout: float = 15.0) -> None:
        """Wait until `member` knows it has no leader (quorum lost), so a write there cannot commit later."""
        wait_until(
            lambda: int(member.status().get("leader") or 0) == 0, timeout, f"{member.name} to lose its leader"
        )

    def stop(self) -> None:
        for member in self.members:
            member.kill()


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (shiftroute's own PKI code)."""
    from cryptography import x509

    from shiftroute.pki.issue import make_ca, make_leaf, write_pair

    ca = make_ca("etcd test CA")
    ca_cert, _ = write_pair(ca, directory, "ca")
    server = make_leaf(ca, "etcd", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_cert, server_key = write_pair(server, directory, "server")
    client = make_leaf(ca, "shiftroute", [x509.DNSName("shiftroute")])
    client_cert, client_key = write_pair(client, directory, "client")
    return TLSFiles(ca_cert, server_cert, server_key, client_cert, client_key)


def make_cluster(base: Path, size: int, tls: TLSFiles | None = None) -> Cluster:
    members = []
    for i in range(size):
        data = base / f"etcd{i}"
        data.mkdir(parents=True, exist_ok=True)
        members.append(Member(f"m{i}", free_port(), free_port(), data / "data", data / "etcd.log", tls=tls))
    initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members)
    for member in members:
        member.initial_cluster = initial
    return Cluster(members)


@contextlib.contextmanager
def running_cluster(base: Path, size: int, tls: TLSFiles | None = None) -> Iterator[Cluster]:
    cluster = make_cluster(base, size, tls)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One member shared by a module's tests (each test uses its own key prefix)."""
    with running_cluster(tmp_path_factory.mktemp("etcd-single"), 1) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster3(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh 3-member cluster per test: the failure tests kill members."""
    with running_cluster(tmp_path, 3) as cluster:
        yield cluster


def raw_get(member: Member, key: str) -> dict[str, Any] | None:
    """The key's stored KeyValue as etcd has it (value decoded from base64 and parsed), or None."""
    conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=5)
    try:
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()})
        conn.request("POST", "/v3/kv/range", body=body, headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    kvs = answer.get("kvs") or []
    if not kvs:
        return None
    kv = dict(kvs[0])
    kv["value"] = json.loads(base64.b64decode(kv["value"]))
    return kv


def move_leader(cluster: Cluster, to: Member) -> None:
    """`etcdctl move-leader`: a graceful leader change, as an etcd upgrade or operator does it."""
    leader = cluster.leader()
    subprocess.run(
        [require_binary("etcdctl"), f"--endpoints={leader.client_url}", "move-leader", f"{to.member_id():x}"],
        check=True, capture_output=True, timeout=30, env={"ETCDCTL_API": "3"},
    )  # fmt: skip
