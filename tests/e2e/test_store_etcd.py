# ruff: noqa: F811 - pytest fixtures are imported, then named as parameters
"""What only the etcd store has: its key and value layout, URLs and TLS, and surviving a real cluster's
failures (a member killed under a watch, quorum lost and back, leader changes under writes)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftroute.errors import AlreadyExistsError, StoreError, StoreUnavailableError, UsageError
from shiftroute.store import etcd_watch, open_store
from shiftroute.store.etcd import DEFAULT_PREFIX, EtcdStore, parse_url
from shiftroute.store.etcd_client import AmbiguousWriteError, EtcdClient
from shiftroute.store.sqlite import SqliteStore
from tests.conftest import free_port, wait_until
from tests.e2e.etcd_cluster import (
    Cluster,
    Member,
    etcd_cluster3,  # noqa: F401 - a fixture, used by name
    etcd_single,  # noqa: F401 - a fixture, used by name
    make_tls_files,
    move_leader,
    raw_get,
    running_cluster,
)
from tests.e2e.test_store_contract import collect, route, service, summary

pytestmark = pytest.mark.e2e

WAIT = 30.0


@pytest.fixture
def prefix() -> str:
    return f"/t-{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def single(etcd_single: Cluster, prefix: str) -> Iterator[EtcdStore]:
    store = EtcdStore(f"{etcd_single.url}{prefix}", timeout=5)
    yield store
    store.close()


# -- layout -------------------------------------------------------------------------------------------


def test_value_is_json_without_resource_version_which_is_the_mod_revision(
    single: EtcdStore,
    etcd_single: Cluster,
    prefix: str,
) -> None:
    created = single.create(route("a", "shop"))
    kv = raw_get(etcd_single.members[0], f"{prefix}Route/shop/a")
    assert kv is not None
    assert "resourceVersion" not in kv["value"]["metadata"], "a value cannot know its own revision"
    assert created["metadata"]["resourceVersion"] == kv["mod_revision"] == kv["create_revision"]
    updated = single.update_status("Route", "shop", "a", {"ingress": []})
    kv = raw_get(etcd_single.members[0], f"{prefix}Route/shop/a")
    assert kv is not None and updated["metadata"]["resourceVersion"] == kv["mod_revision"]
    assert kv["value"]["status"] == {"ingress": []}


def test_prefixes_keep_stores_apart(etcd_single: Cluster, prefix: str) -> None:
    one = EtcdStore(f"{etcd_single.url}{prefix}one", timeout=5)
    two = EtcdStore(f"{etcd_single.url}{prefix}two/", timeout=5)
    try:
        one.create(route("a"))
        assert two.list("Route").items == []
        assert raw_get(etcd_single.members[0], f"{prefix}one/Route/default/a") is not None
        two.create(route("a"))  # the same name in another prefix is another object
    finally:
        one.close()
        two.close()


def test_cluster_scoped_objects_have_an_empty_namespace_segment(
    single: EtcdStore,
    etcd_single: Cluster,
    prefix: str,
) -> None:
    router = {"kind": "Router", "metadata": {"name": "r1"}, "spec": {}}
    single.create(router)
    assert raw_get(etcd_single.members[0], f"{prefix}Router//r1") is not None
    assert single.get("Router", "", "r1")["metadata"]["namespace"] == ""


def test_apply_beyond_etcds_txn_limit_is_refused_and_changes_nothing(single: EtcdStore) -> None:
    with pytest.raises(StoreError, match="max-txn-ops"):
        single.apply([service(f"s{i}") for i in range(129)])
    assert single.list("Service").items == []
    assert len(single.apply([service(f"s{i}") for i in range(128)])) == 128


# -- URLs and TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoints", "prefix", "tls"),
    [
        pytest.param("etcd://127.0.0.1:2379", [("127.0.0.1", 2379)], DEFAULT_PREFIX, False, id="one"),
        pytest.param("etcd://a:1,b:2,c", [("a", 1), ("b", 2), ("c", 2379)], DEFAULT_PREFIX, False, id="many"),
        pytest.param("etcds://[::1]:2379/", [("::1", 2379)], DEFAULT_PREFIX, True, id="ipv6-tls"),
        pytest.param("etcd://h:1/myprefix", [("h", 1)], "/myprefix/", False, id="prefix"),
        pytest.param("etcd://h:1/a/b/", [("h", 1)], "/a/b/", False, id="nested-prefix"),
    ],
)
def test_parse_url(url: str, endpoints: list[tuple[str, int]], prefix: str, tls: bool) -> None:
    assert parse_url(url) == (endpoints, prefix, tls)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("etcd://", "no etcd host", id="no-host"),
        pytest.param("etcd://h:99999", "bad port", id="bad-port"),
        pytest.param("etcd://:2379", "empty host", id="empty-host"),
    ],
)
def test_bad_urls_are_usage_errors(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        open_store(url)


def test_open_store_picks_etcd_by_scheme(etcd_single: Cluster) -> None:
    store = open_store(etcd_single.url)
    try:
        assert isinstance(store, EtcdStore)
        assert store.revision() >= 1
    finally:
        store.close()
    with pytest.raises(UsageError, match="etcd://host:port"):
        open_store("zk://h:1")


def test_tls_files_need_an_etcds_url() -> None:
    with pytest.raises(UsageError, match="etcds://"):
        EtcdStore("etcd://127.0.0.1:2379", etcd_cacert="/ca.crt")


def test_unreachable_etcd_is_unavailable_with_a_clear_message() -> None:
    store = EtcdStore(f"etcd://127.0.0.1:{free_port()},127.0.0.1:{free_port()}", timeout=1)
    try:
        with pytest.raises(StoreUnavailableError, match=r"unreachable.*connection refused.*retry when"):
            store.create(route("a"))
        with pytest.raises(StoreUnavailableError):
            store.list("Route")
    finally:
        store.close()


def test_tls_with_client_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = make_tls_files(tmp_path / "pki")
    with running_cluster(tmp_path / "etcd", 1, tls) as cluster:
        store = EtcdStore(
            cluster.url, etcd_cacert=str(tls.ca), etcd_cert=str(tls.client_cert), etcd_key=str(tls.client_key)
        )
        try:
            start = store.revision() + 1
            watch = store.watch(["Route"], start)
            store.create(route("a"))
            assert summary(collect(watch, 1)) == [("ADDED", "a")]
            watch.close()
        finally:
            store.close()

        # The same files from the environment, as `--store etcds://...` takes them.
        monkeypatch.setenv("SHIFTROUTE_ETCD_CACERT", str(tls.ca))
        monkeypatch.setenv("SHIFTROUTE_ETCD_CERT", str(tls.client_cert))
        monkeypatch.setenv("SHIFTROUTE_ETCD_KEY", str(tls.client_key))
        from_env = open_store(cluster.url)
        try:
            assert [m["metadata"]["name"] for m in from_env.list("Route").items] == ["a"]
        finally:
            from_env.close()

        monkeypatch.delenv("SHIFTROUTE_ETCD_CERT")
        monkeypatch.delenv("SHIFTROUTE_ETCD_KEY")
        anonymous = EtcdStore(cluster.url, timeout=1)
        try:
            with pytest.raises(StoreUnavailableError):
                anonymous.list("Route")  # etcd asks for a client certificate
        finally:
            anonymous.close()


def test_a_silent_watch_reopens_without_losing_or_repeating(
    single: EtcdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_watch, "IDLE_REOPEN", 0.3)
    single.create(route("a"))
    watch = single.watch(["Route"], single.revision())  # from the revision of "a": it is delivered first
    try:
        assert summary(collect(watch, 1)) == [("ADDED", "a")]
        assert watch.next_batch(1.0) == []  # the stream was reopened a few times meanwhile
        single.create(route("b"))
        single.delete("Route", "default", "a")
        assert summary(collect(watch, 2)) == [("ADDED", "b"), ("DELETED", "a")]
    finally:
        watch.close()


def test_watch_from_zero_means_from_now_as_with_sqlite(tmp_path: Path) -> None:
    """etcd's own meaning of start revision 0, which the SQLite store shares: changes from now on."""
    with running_cluster(tmp_path, 1) as cluster:
        store = EtcdStore(cluster.url, timeout=5)
        try:
            store.create(route("a"))
            watch = store.watch(["Route"], 0)
            store.create(route("b"))
            try:
                assert summary(collect(watch, 1)) == [("ADDED", "b")]
            finally:
                watch.close()
        finally:
            store.close()


# -- writes whose answer was lost ---------------------------------------------------------------------


def _lose_first_answer(store: EtcdStore, apply_first: bool) -> list[int]:
    """Make the first txn's answer go missing (after etcd applied it, or before it got there)."""
    client: EtcdClient = store._client
    real = client.txn
    calls = [0]

    def txn(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            if apply_first:
                real(*args, **kwargs)
            raise AmbiguousWriteError("answer lost (test)")
        return real(*args, **kwargs)

    client.txn = txn  # type: ignore[method-assign]
    return calls


def test_a_write_applied_whose_answer_was_lost_succeeds_once(single: EtcdStore) -> None:
    start = single.revision() + 1
    calls = _lose_first_answer(single, apply_first=True)
    created = single.create(route("a"))
    assert calls[0] >= 2, "retried; the retry's compare failed on our own value, which counts as success"
    assert single.get("Route", "default", "a") == created
    watch = single.watch(["Route"], start)
    try:
        assert summary(collect(watch, 1)) == [("ADDED", "a")]
    finally:
        watch.close()


def test_a_lost_write_that_someone_else_beat_is_still_a_conflict(
    single: EtcdStore, etcd_single: Cluster
) -> None:
    other = EtcdStore(single.url, timeout=5)
    _lose_first_answer(single, apply_first=False)
    real = single._client.txn

    def txn(*args: Any, **kwargs: Any) -> Any:
        if not getattr(txn, "raced", False):
            txn.raced = True  # type: ignore[attr-defined]
            other.create(route("a", host="theirs.example.com"))
        return real(*args, **kwargs)

    single._client.txn = txn  # type: ignore[method-assign]
    try:
        with pytest.raises(AlreadyExistsError):
            single.create(route("a"))
        assert single.get("Route", "default", "a")["spec"]["host"] == "theirs.example.com"
    finally:
        other.close()


# -- a real 3-member cluster --------------------------------------------------------------------------


def member_of(cluster: Cluster, endpoint: str | None) -> Member:
    return next(m for m in cluster.members if m.endpoint == endpoint)


def names(events: list[Any]) -> list[str]:
    return [e.key.name for e in events]


def test_watch_and_writes_survive_killing_the_member_they_use(etcd_cluster3: Cluster) -> None:
    store = EtcdStore(etcd_cluster3.url, timeout=10)
    watch = store.watch(["Route"], store.revision() + 1)
    try:
        for i in range(5):
            store.create(route(f"a{i}"))
        events = collect(watch, 5)
        victim = member_of(etcd_cluster3, watch.endpoint)
        assert victim is etcd_cluster3.members[0], "the store and the watch start with the first endpoint"
        victim.kill()
        for i in range(5):
            store.create(route(f"b{i}"))  # the store moves to another member
        events += collect(watch, 5)
        assert watch.endpoint != victim.endpoint
    finally:
        watch.close()
        store.close()
    assert names(events) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))


def test_quorum_loss_fails_writes_cleanly_and_the_watch_resumes_after(etcd_cluster3: Cluster) -> None:
    m0, m1, m2 = etcd_cluster3.members
    store = EtcdStore(etcd_cluster3.url, timeout=3)
    watch = store.watch(["Route"], store.revision() + 1)
    try:
        store.create(route("before"))
        assert summary(collect(watch, 1)) == [("ADDED", "before")]

        m0.kill()
        m1.kill()
        etcd_cluster3.wait_no_leader(m2)
        with pytest.raises(StoreUnavailableError, match=r"no quorum.*retry when the cluster is healthy"):
            store.create(route("during"))
        with pytest.raises(StoreUnavailableError, match="no quorum"):
            store.update_status("Route", "default", "before", {"lost": True})
        assert watch.next_batch(0.5) == []

        m0.start()
        m1.start()
        etcd_cluster3.wait_healthy()
        store.create(route("after"))
        store.update(route("before", host="new.example.com"))
        store.delete("Route", "default", "after")
        events = collect(watch, 3)
        assert summary(events) == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]
        listed = store.list("Route").items
        assert [m["metadata"]["name"] for m in listed] == ["before"], "the failed writes changed nothing"
        assert "status" not in listed[0]
    finally:
        watch.close()
        store.close()


def test_every_acknowledged_write_survives_leader_changes(etcd_cluster3: Cluster) -> None:
    store = EtcdStore(etcd_cluster3.url, timeout=10)
    start = store.revision() + 1
    acknowledged: list[str] = []
    unexpected: list[Exception] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            name = f"w{i:05d}"
            i += 1
            try:
                store.create(route(name))
            except StoreUnavailableError:
                continue  # allowed while there is no leader: not acknowledged
            except Exception as exc:  # e.g. a false AlreadyExists after a lost answer
                unexpected.append(exc)
                return
            acknowledged.append(name)

    def more_writes(count: int = 10) -> None:
        target = len(acknowledged) + count
        wait_until(
            lambda: unexpected or len(acknowledged) >= target, WAIT, f"{count} more acknowledged writes"
        )
        assert not unexpected, unexpected

    live = store.watch(["Route"], start)  # reads through every leader change and the leader's crash
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        more_writes()
        for _ in range(2):
            leader = etcd_cluster3.leader()
            move_leader(etcd_cluster3, next(m for m in etcd_cluster3.members if m is not leader))
            wait_until(lambda old=leader: etcd_cluster3.leader() is not old, WAIT, "the leader to move")
            more_writes()
        crashed = etcd_cluster3.leader()
        crashed.kill()
        more_writes()
        crashed.start()
        etcd_cluster3.wait_healthy()
        more_writes()
    finally:
        stop.set()
        thread.join(timeout=WAIT)
    assert not thread.is_alive() and not unexpected, unexpected

    stored = {m["metadata"]["name"] for m in store.list("Route").items}
    assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)
    for name in acknowledged[:: max(1, len(acknowledged) // 20)]:
        assert store.get("Route", "default", name)["metadata"]["name"] == name
    try:
        live_events = collect(live, len(stored))
        replay = store.watch(["Route"], start)
        try:
            replayed = collect(replay, len(stored))
        finally:
            replay.close()
    finally:
        live.close()
        store.close()
    assert sorted(names(live_events)) == sorted(stored), "each stored object was added exactly once"
    assert names(replayed) == names(live_events), "the same history, in the same order"


# -- shiftroute store migrate -------------------------------------------------------------------------


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A migrated object equals its source except for what a new store assigns."""
    meta = {k: v for k, v in manifest["metadata"].items() if k not in ("resourceVersion", "generation")}
    return {**manifest, "metadata": meta}


KINDS = ("Service", "EndpointSlice", "Route", "Router")


def test_migrate_sqlite_to_etcd_with_the_cli(
    cli: Callable[..., Any],
    store_path: Path,
    etcd_single: Cluster,
    prefix: str,
) -> None:
    source = SqliteStore(store_path)
    source.create(service("web"))
    labels = {"kubernetes.io/service-name": "web"}
    source.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "web-1", "namespace": "default", "labels": labels},
                   "endpoints": [{"addresses": ["127.0.0.1"]}], "ports": [{"port": 8080}]})  # fmt: skip
    source.create(route("a"))
    source.update(route("a", host="moved.example.com"))
    source.create(route("b", "shop", team="x"))
    source.update_status("Route", "default", "a", {"ingress": [{"routerName": "default", "host": "a"}]})
    source.create({"kind": "Router", "metadata": {"name": "default"}, "spec": {}})
    url = f"{etcd_single.url}{prefix}"

    proc = cli("store", "migrate", "--to", url)
    assert proc.returncode == 0, proc.stderr
    assert "copied 1 services, 1 endpointslices, 2 routes, 1 routers (1 with status)" in proc.stdout

    target = EtcdStore(url, timeout=5)
    try:
        for kind in KINDS:
            expected = [_comparable(m) for m in source.list(kind).items]
            assert [_comparable(m) for m in target.list(kind).items] == expected, kind

        revision = target.revision()
        again = cli("store", "migrate", "--from", str(store_path), "--to", url)
        assert again.returncode == 1
        assert "already holds objects" in again.stderr and "--overwrite" in again.stderr
        assert target.revision() == revision, "a refused migrate writes nothing"

        source.update_status("Route", "shop", "b", {"ingress": []})
        replaced = cli("store", "migrate", "--to", url, "--overwrite")
        assert replaced.returncode == 0, replaced.stderr
        assert "5 replaced" in replaced.stdout
        assert _comparable(target.get("Route", "shop", "b")) == _comparable(source.get("Route", "shop", "b"))

        shown = cli("get", "routes", "-A", "--store", url)
        assert shown.returncode == 0, shown.stderr
        assert "moved.example.com" in shown.stdout
    finally:
        target.close()
        source.close()


def test_migrate_refuses_the_same_store(cli: Callable[..., Any], store_path: Path) -> None:
    proc = cli("store", "migrate", "--from", str(store_path), "--to", str(store_path))
    assert proc.returncode == 1
    assert "same store" in proc.stderr


def test_migrate_help_says_what_overwrite_does(cli: Callable[..., Any]) -> None:
    proc = cli("store", "migrate", "--help")
    assert proc.returncode == 0
    assert "objects only in the target are kept" in " ".join(proc.stdout.split())
