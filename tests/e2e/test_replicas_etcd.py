# ruff: noqa: F811 - pytest fixtures are imported, then named as parameters
"""Issue 6, replicas: three `shiftroute serve` processes against one 3-member etcd cluster agree without
talking to each other (host claims, sticky cookies, each router's own status entry), and survive the
store's failures: a member lost, quorum lost and back, leader changes under writes, a router restarted
while etcd is down, a replica killed under load. Real etcd, real processes, every wait bounded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shiftroute.errors import ConflictError, StoreUnavailableError
from shiftroute.store.etcd import EtcdStore
from tests.conftest import SHIFTROUTE, free_port, wait_until
from tests.e2e.etcd_cluster import (
    Cluster,
    etcd_cluster3,  # noqa: F401 - a fixture, used by name
    move_leader,
)
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, named_response
from tests.e2e.support.client import get
from tests.e2e.support.router import RouterProcess
from tests.e2e.test_router_live import LoadLoop

pytestmark = pytest.mark.e2e

WAIT = 30.0
# Starting a router waits for its first sync: generous, as etcd, three routers and the test share the CPUs.
START_WAIT = 60.0
NAMES = ("r1", "r2", "r3")
# Long enough for two CLI calls that time out against a cluster without quorum, and an etcd restart.
LOAD_SECONDS = 120.0
LOAD_REQUESTS = 10_000_000  # bounded by LOAD_SECONDS and by leaving the `with` block


def etcd_cli(url: str, home: Path) -> Cli:
    """The real console script against the etcd store, as `cli` is against SQLite."""

    def run(
        *args: str, input: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SHIFTROUTE_STORE": url, "XDG_STATE_HOME": str(home / "state")}
        command = [SHIFTROUTE, *args]
        proc = subprocess.run(
            command, input=input, capture_output=True, text=True, env=env, cwd=home, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"shiftroute {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    return run


@dataclass
class Replicas:
    cluster: Cluster
    workdir: Path
    cli: Cli
    routers: list[RouterProcess] = field(default_factory=list)

    def start(self, name: str, *args: str, wait: bool = True, workdir: Path | None = None) -> RouterProcess:
        router = RouterProcess(self.cluster.url, workdir or self.workdir, *args, name=name)
        self.routers.append(router)
        return router.start(timeout=START_WAIT, wait=wait)

    @property
    def running(self) -> list[RouterProcess]:
        return [r for r in self.routers if r.proc is not None and r.proc.poll() is None]

    def store(self) -> EtcdStore:
        return EtcdStore(self.cluster.url, timeout=10)


@pytest.fixture
def replicas(etcd_cluster3: Cluster, tmp_path: Path) -> Iterator[Replicas]:
    home = tmp_path / "home"
    home.mkdir()
    replicas = Replicas(etcd_cluster3, tmp_path / "routers", etcd_cli(etcd_cluster3.url, home))
    try:
        for name in NAMES:
            replicas.start(name)
        yield replicas
    finally:
        for router in replicas.routers:
            try:
                router.stop()
            except AssertionError:
                router.kill()


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend(respond=named_response("one"), name="one") as one:
        yield one


def verdicts(store: EtcdStore, namespace: str, name: str) -> dict[str, str]:
    """Each router's verdict in the route's status: `Admitted` or the rejection reason."""
    manifest = store.get("Route", namespace, name)
    out = {}
    for ingress in (manifest.get("status") or {}).get("ingress") or []:
        condition = (ingress.get("conditions") or [{}])[0]
        out[ingress["routerName"]] = "Admitted" if condition.get("status") == "True" else condition["reason"]
    return out


def wait_verdicts(store: EtcdStore, namespace: str, name: str, expected: dict[str, str]) -> None:
    wait_until(
        lambda: verdicts(store, namespace, name) == expected,
        WAIT,
        f"route {namespace}/{name} to have the verdicts {expected}",
    )


def serving_everywhere(routers: list[RouterProcess], host: str, status: int = 200) -> list[bytes]:
    return [wait_serving(r.http, host, status=status, timeout=WAIT).body for r in routers]


def expose(cli: Cli, name: str, service_name: str = "web") -> None:
    cli("expose", "service", service_name, "--name", name, "--hostname", f"{name}.example.com", check=True)


def more_requests(loads: list[LoadLoop], count: int = 50) -> None:
    """Every load loop got `count` more answers (each one counted, failed or not)."""
    targets = [load.ok + len(load.failures) + count for load in loads]
    for load, target in zip(loads, targets, strict=True):
        wait_until(lambda: load.ok + len(load.failures) >= target, WAIT, f"{count} more requests")  # noqa: B023


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """A failed CLI call: non-zero exit, one `error: ...` line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def table_revision(router: RouterProcess) -> int:
    text = get(router.admin, "x", "/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("shiftroute_table_revision "))
    return int(line.split()[1])


# -- agreement ------------------------------------------------------------------------------------------


def _edge_route(name: str, namespace: str, host: str, **meta: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "route.openshift.io/v1",
            "kind": "Route",
            "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": {"host": host, "to": {"kind": "Service", "name": "web"}, "tls": {"termination": "edge"}},
        }
    )


def _add_foreign_entry(store: EtcdStore, namespace: str, name: str) -> dict[str, Any]:
    """Another router's entry (one not running here), added by compare-and-swap next to the writers."""
    entry = {"host": "shop.example.com", "routerName": "elsewhere", "conditions": [{"type": "Admitted",
             "status": "False", "reason": "Elsewhere"}]}  # fmt: skip
    for _ in range(50):
        manifest = store.get("Route", namespace, name)
        status = dict(manifest.get("status") or {})
        status["ingress"] = [*(status.get("ingress") or []), entry]
        try:
            store.update_status("Route", namespace, name, status, manifest["metadata"]["resourceVersion"])
            return entry
        except ConflictError:
            continue
    raise AssertionError("could not add the foreign status entry")


def test_replicas_agree_on_claims_cookies_and_each_writes_its_own_status(replicas: Replicas) -> None:
    cli, routers = replicas.cli, replicas.routers
    with contextlib.ExitStack() as stack:
        backends = [
            stack.enter_context(Backend(respond=named_response(f"b{i}"), name=f"b{i}")) for i in range(3)
        ]
        service(cli, "web", 80, *(b.address for b in backends))
        service(cli, "web", 80, backends[0].address, namespace="other")
        # routes.md §3: the older route holds the host. An explicit creationTimestamp makes "older" certain
        # without sleeping past the timestamps' one-second resolution.
        holder = _edge_route("web", "default", "shop.example.com", creationTimestamp="2020-01-01T00:00:00Z",
                             annotations={"haproxy.router.openshift.io/balance": "roundrobin"})  # fmt: skip
        cli("apply", "-f", "-", input=holder, check=True)
        cli("create", "route", "edge", "web", "--service", "web", "--hostname", "shop.example.com",
            "-n", "other", check=True)  # fmt: skip

        store = replicas.store()
        stack.callback(store.close)
        all_admitted = dict.fromkeys(NAMES, "Admitted")
        all_claimed = dict.fromkeys(NAMES, "HostAlreadyClaimed")
        wait_verdicts(store, "default", "web", all_admitted)
        wait_verdicts(store, "other", "web", all_claimed)

        # A cookie set through r1 pins the same endpoint through r2 and r3: the same data compiles to the
        # same cookie values on every replica.
        first = wait_serving(routers[0].https, "shop.example.com", tls=True, timeout=WAIT)
        cookie = first.header("Set-Cookie")
        assert cookie is not None
        pair = cookie.split(";", 1)[0]
        for router in [*routers[1:], routers[0]]:
            for _ in range(5):
                again = get(router.https, "shop.example.com", tls=True, headers=[("Cookie", pair)])
                assert (again.status, again.body) == (200, first.body), router.name
        # ...and it is the cookie that pins: without it, roundrobin spreads r2's requests.
        spread = {get(routers[1].https, "shop.example.com", tls=True).body for _ in range(6)}
        assert len(spread) > 1

        wide = cli("get", "routes", "-A", "-o", "wide", check=True).stdout.splitlines()
        assert wide[0].split()[-1] == "ROUTERS"
        columns = {line.split()[0]: set(line.split()[-1].split(",")) for line in wide[1:]}
        assert columns == {
            "default": {f"{r}=Admitted" for r in NAMES},
            "other": {f"{r}=HostAlreadyClaimed" for r in NAMES},
        }

        # Each router writes only its own entry: an entry of a router not running here survives, and so
        # does r3's once r3 stops, while r1 and r2 rewrite theirs when the holder goes away.
        foreign = _add_foreign_entry(store, "other", "web")
        assert routers[2].stop() == 0
        cli("delete", "route", "web", check=True)
        wait_verdicts(
            store,
            "other",
            "web",
            {"r1": "Admitted", "r2": "Admitted", "r3": "HostAlreadyClaimed", "elsewhere": "Elsewhere"},
        )
        ingress = store.get("Route", "other", "web")["status"]["ingress"]
        assert [i for i in ingress if i["routerName"] == "elsewhere"] == [foreign]
        assert sorted(i["routerName"] for i in ingress) == ["elsewhere", "r1", "r2", "r3"]


# -- failures -----------------------------------------------------------------------------------------------


def test_one_member_lost_routers_keep_serving_and_receiving_changes(
    replicas: Replicas, backend: Backend
) -> None:
    cli, routers = replicas.cli, replicas.routers
    service(cli, "web", 80, backend.address)
    expose(cli, "a")
    serving_everywhere(routers, "a.example.com")
    loads = [LoadLoop(r.http, "a.example.com", LOAD_REQUESTS, LOAD_SECONDS) for r in routers]
    with contextlib.ExitStack() as stack:
        for load in loads:
            stack.enter_context(load)
        more_requests(loads)
        # The first endpoint is the one every router's watch and every CLI call start with.
        replicas.cluster.members[0].kill()
        expose(cli, "b")
        serving_everywhere(routers, "b.example.com")
        cli("delete", "route", "b", check=True)
        serving_everywhere(routers, "b.example.com", status=503)
        expose(cli, "c")
        serving_everywhere(routers, "c.example.com")
        more_requests(loads)
    for router, load in zip(routers, loads, strict=True):
        assert load.failures == [], (router.name, load.failures[:5])


def test_one_member_hung_routers_keep_receiving_changes(replicas: Replicas, backend: Backend) -> None:
    """A member that stops answering without closing its connections (SIGSTOP: a paused VM, a stuck
    disk): the kernel still holds its sockets open, so neither a refused connection nor TCP keepalive
    says anything, and the routers' watches on it must notice by themselves."""
    cli, routers, cluster = replicas.cli, replicas.routers, replicas.cluster
    service(cli, "web", 80, backend.address)
    expose(cli, "a")
    serving_everywhere(routers, "a.example.com")
    hung = cluster.members[0]  # where every router's watch is
    assert hung.proc is not None
    hung.proc.send_signal(signal.SIGSTOP)
    try:
        # The CLI lists the hung member first too: its calls wait for it, then go on to the others.
        expose(cli, "b")
        serving_everywhere(routers, "b.example.com")
    finally:
        hung.proc.send_signal(signal.SIGCONT)


def test_quorum_lost_serves_the_last_table_refuses_writes_and_resyncs(replicas: Replicas) -> None:
    cli, routers, cluster = replicas.cli, replicas.routers, replicas.cluster
    m0, m1, m2 = cluster.members
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(Backend(respond=named_response("one"), name="one"))
        two = stack.enter_context(Backend(respond=named_response("two"), name="two"))
        service(cli, "web", 80, one.address)
        service(cli, "web2", 80, two.address)
        for name in ("a", "b"):
            expose(cli, name)
        serving_everywhere(routers, "a.example.com")
        serving_everywhere(routers, "b.example.com")
        loads = [LoadLoop(r.http, "a.example.com", LOAD_REQUESTS, LOAD_SECONDS) for r in routers]
        for load in loads:
            stack.enter_context(load)
        more_requests(loads)

        m0.kill()
        m1.kill()
        cluster.wait_no_leader(m2)  # so a write that reached m2 cannot commit later
        refused = [
            cli("expose", "service", "web", "--name", "during", "--hostname", "during.example.com"),
            cli("delete", "route", "b"),
        ]
        for proc in refused:
            line = one_line_error(proc)
            assert "no quorum" in line and "retry when the cluster is healthy" in line, line
        more_requests(loads)
        assert serving_everywhere(routers, "b.example.com") == [b"one"] * 3, "the last good table"

        m0.start()
        m1.start()
        cluster.wait_healthy()
        store = replicas.store()
        try:
            listed = [m["metadata"]["name"] for m in store.list("Route").items]
        finally:
            store.close()
        assert listed == ["a", "b"], "the refused writes changed nothing"
        # Changes made as soon as quorum is back, whatever the routers' watches are doing at that moment.
        expose(cli, "c")
        cli("delete", "route", "b", check=True)
        cli("apply", "-f", "-", input=json.dumps(_plain_route("a", "web2")), check=True)
        for router in routers:
            wait_serving(router.http, "c.example.com", timeout=WAIT)
            wait_serving(router.http, "b.example.com", status=503, timeout=WAIT)
            wait_until(lambda r=router: get(r.http, "a.example.com").body == b"two", WAIT, "a to move")
        more_requests(loads)
    for router, load in zip(routers, loads, strict=True):
        assert load.failures == [], (router.name, load.failures[:5])

    store = replicas.store()
    try:
        names = [m["metadata"]["name"] for m in store.list("Route").items]
        assert names == ["a", "c"], "none lost, none revived"
        for name in ("a", "c"):
            wait_verdicts(store, "default", name, dict.fromkeys(NAMES, "Admitted"))
            ingress = store.get("Route", "default", name)["status"]["ingress"]
            assert len(ingress) == len(NAMES), f"one entry per router: {ingress}"
        newest = store.revision()
    finally:
        store.close()
    # Every router compiled the same revision; status-only writes after it do not make a new table.
    revisions = {r.name: table_revision(r) for r in routers}
    assert len(set(revisions.values())) == 1 and max(revisions.values()) <= newest, revisions


def _plain_route(name: str, service_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"host": f"{name}.example.com", "to": {"kind": "Service", "name": service_name}},
    }


def test_every_acknowledged_write_serves_on_every_router_across_leader_changes(
    replicas: Replicas, backend: Backend
) -> None:
    cli, routers, cluster = replicas.cli, replicas.routers, replicas.cluster
    service(cli, "web", 80, backend.address)
    store = replicas.store()
    acknowledged: list[str] = []
    unexpected: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(2000):  # bounded; the test stops it much earlier
            if stop.is_set():
                return
            name = f"w{i:04d}"
            try:
                store.create(_plain_route(name, "web"))
            except StoreUnavailableError:
                continue  # allowed while there is no leader: not acknowledged
            except Exception as exc:
                unexpected.append(exc)
                return
            acknowledged.append(name)
            # Read back through one router now and then, while the leader moves.
            if i % 10 == 0:
                try:
                    wait_serving(routers[i % len(routers)].http, f"{name}.example.com", timeout=WAIT)
                except AssertionError as exc:
                    unexpected.append(exc)
                    return

    def more_writes(count: int = 10) -> None:
        target = len(acknowledged) + count
        wait_until(lambda: unexpected or len(acknowledged) >= target, WAIT, f"{count} more writes")
        assert not unexpected, unexpected

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        more_writes()
        for _ in range(2):
            leader = cluster.leader()
            move_leader(cluster, next(m for m in cluster.members if m is not leader))
            wait_until(lambda old=leader: cluster.leader() is not old, WAIT, "the leader to move")
            more_writes()
        crashed = cluster.leader()
        crashed.kill()
        more_writes()
        crashed.start()
        cluster.wait_healthy()
        more_writes()
    finally:
        stop.set()
        thread.join(timeout=WAIT)
        stored = {m["metadata"]["name"] for m in store.list("Route").items}
        store.close()
    assert not thread.is_alive() and not unexpected, unexpected
    assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)
    for name in sorted(stored):
        serving_everywhere(routers, f"{name}.example.com")


def test_router_restarted_while_etcd_is_down_waits_then_serves(replicas: Replicas, backend: Backend) -> None:
    cli, routers, cluster = replicas.cli, replicas.routers, replicas.cluster
    service(cli, "web", 80, backend.address)
    expose(cli, "a")
    serving_everywhere(routers, "a.example.com")
    assert routers[0].stop() == 0
    with LoadLoop(routers[1].http, "a.example.com", LOAD_REQUESTS, LOAD_SECONDS) as load:
        more_requests([load])
        for member in cluster.members:
            member.kill()
        # Fixed ports: a router that is not ready writes no ready-file to learn them from.
        ports = {"http": free_port(), "https": free_port(), "admin": free_port()}
        args = [item for kind, port in ports.items() for item in (f"--{kind}-port", str(port))]
        # Debug logging shows each retry, so the test can let a few of them fail before etcd returns.
        again = replicas.start(
            "r1", *args, "--log-level", "debug", wait=False, workdir=replicas.workdir / "restarted"
        )
        again.ports = ports
        wait_until(lambda: "waiting for the store etcd://" in again.log(), WAIT, "the waiting log line")
        line = next(x for x in again.log().splitlines() if "waiting for the store" in x)
        assert "not ready until the first sync" in line and "WARNING" in line, line
        ready = wait_until(lambda: get(again.admin, "x", "/healthz/ready", timeout=5), WAIT, "readiness")
        assert ready.status == 503 and b"waiting for the store" in ready.body  # type: ignore[attr-defined]
        # No table yet: the listeners are bound but not listening (OpenShift starts HAProxy after its
        # first sync), so clients are refused and a load balancer sends them to a ready replica.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", again.http), timeout=5).close()
        wait_until(lambda: again.log().count("still unavailable") >= 3, WAIT, "three more failed retries")
        assert again.log().count("waiting for the store etcd://") == 1, "said once, not on every retry"
        assert "serving the last good routing table" not in again.log()
        assert get(again.admin, "x", "/healthz/ready").status == 503
        more_requests([load])

        for member in cluster.members:
            member.start()
        cluster.wait_healthy()
        again.wait_ready(START_WAIT)
        assert {k: again.ports[k] for k in ports} == ports
        wait_serving(again.http, "a.example.com", timeout=WAIT)
        assert get(again.admin, "x", "/healthz/ready").status == 200
        more_requests([load])
    assert load.failures == [], load.failures[:5]


def test_replica_killed_under_load_the_others_see_no_error(replicas: Replicas, backend: Backend) -> None:
    cli, routers = replicas.cli, replicas.routers
    service(cli, "web", 80, backend.address)
    expose(cli, "a")
    serving_everywhere(routers, "a.example.com")
    survivors, victim = routers[:2], routers[2]
    loads = [LoadLoop(r.http, "a.example.com", LOAD_REQUESTS, LOAD_SECONDS) for r in routers]
    with contextlib.ExitStack() as stack:
        for load in loads:
            stack.enter_context(load)
        more_requests(loads)
        victim.kill()  # SIGKILL: no drain, no "Stopped" phase
        loads[2].__exit__()  # its clients see it go; a loop against a closed port would only spin
        more_requests(loads[:2])
        expose(cli, "b")
        serving_everywhere(survivors, "b.example.com")
        more_requests(loads[:2])
    for router, load in zip(survivors, loads[:2], strict=True):
        assert load.failures == [], (router.name, load.failures[:5])
    # Started again (a new process, the same name), it catches up from the store alone.
    again = replicas.start(victim.name, workdir=replicas.workdir / "again")
    serving_everywhere([again], "a.example.com")
    serving_everywhere([again], "b.example.com")
