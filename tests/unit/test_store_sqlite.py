"""The embedded SQLite store: server-filled fields, compare-and-swap, all-or-nothing apply, list and watch
with resume and compaction, and several processes sharing one file (every wait has a deadline)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shiftroute.errors import AlreadyExistsError, CompactedError, ConflictError, NotFoundError
from shiftroute.store.base import WatchEvent
from shiftroute.store.sqlite import SqliteStore
from tests.conftest import wait_until
from tests.unit.manifests import route, service

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


def rv(manifest: dict[str, Any]) -> int:
    return int(manifest["metadata"]["resourceVersion"])


def drain(watch: Any, deadline_s: float = 5.0) -> list[WatchEvent]:
    """Every event available now (stops at the first empty batch; bounded by a deadline)."""
    events: list[WatchEvent] = []
    end = datetime.now(UTC) + timedelta(seconds=deadline_s)
    while datetime.now(UTC) < end:
        batch = watch.next_batch(timeout=0.2)
        if not batch:
            break
        events.extend(batch)
    return events


# -- create / get / server-filled fields --------------------------------------------------------------------


def test_create_fills_server_side_fields(store: SqliteStore) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    manifest = route("web")
    manifest["status"] = {"ingress": [{"host": "forged"}]}
    manifest["metadata"]["resourceVersion"] = "999"
    stored = store.create(manifest)
    after = datetime.now(UTC)
    meta = stored["metadata"]
    assert UUID.match(meta["uid"])
    assert RFC3339_UTC.match(meta["creationTimestamp"])
    created = datetime.strptime(meta["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= created <= after
    assert meta["resourceVersion"] == "1"  # the store's revision, not the one given
    assert meta["generation"] == 1
    assert "status" not in stored  # status is a subresource: only update_status writes it
    assert store.get("Route", "demo", "web") == stored
    assert manifest["metadata"]["resourceVersion"] == "999"  # the caller's dict is not changed


def test_uids_are_unique(store: SqliteStore) -> None:
    uids = {store.create(route(f"r{i}"))["metadata"]["uid"] for i in range(10)}
    assert len(uids) == 10


def test_exported_uid_and_creation_timestamp_are_kept(store: SqliteStore) -> None:
    # An object exported from a cluster keeps its age: host claims are decided by it (routes.md §3).
    manifest = route("web")
    manifest["metadata"].update(
        uid="5d0c7e2e-0000-4000-8000-000000000001", creationTimestamp="2023-01-02T03:04:05Z"
    )
    stored = store.create(manifest)
    assert stored["metadata"]["uid"] == "5d0c7e2e-0000-4000-8000-000000000001"
    assert stored["metadata"]["creationTimestamp"] == "2023-01-02T03:04:05Z"


def test_create_existing_name_fails_and_changes_nothing(store: SqliteStore) -> None:
    store.create(route("web"))
    revision = store.revision()
    with pytest.raises(AlreadyExistsError, match='route "web" already exists in namespace "demo"'):
        store.create(route("web", host="other.example.com"))
    assert store.revision() == revision
    assert store.get("Route", "demo", "web")["spec"]["host"] == "web.example.com"
    store.create(route("web", ns="other"))  # the same name in another namespace is another object


def test_get_missing(store: SqliteStore) -> None:
    with pytest.raises(NotFoundError, match='route "nope" not found in namespace "demo"'):
        store.get("Route", "demo", "nope")
    with pytest.raises(NotFoundError, match='service "nope" not found'):
        store.get("Service", "demo", "nope")


def test_resource_version_is_one_monotonic_counter_for_the_whole_store(store: SqliteStore) -> None:
    versions = [
        rv(store.create(route("a"))),
        rv(store.create(service("svc"))),
        rv(store.create(route("b", ns="other"))),
        rv(store.update_status("Route", "demo", "a", {"ingress": []})),
        rv(store.update(route("a", host="new.example.com"))),
    ]
    assert versions == sorted(versions) and len(set(versions)) == 5
    store.delete("Service", "demo", "svc")
    assert store.revision() == 6  # the delete took revision 6
    assert rv(store.create(route("c"))) == 7


def test_generation_counts_spec_label_and_annotation_changes_only(store: SqliteStore) -> None:
    stored = store.create(route("web"))
    assert stored["metadata"]["generation"] == 1

    def update(change: Any) -> dict[str, Any]:
        current = store.get("Route", "demo", "web")
        change(current)
        return store.update(current)

    assert update(lambda m: m["spec"].update(path="/api"))["metadata"]["generation"] == 2
    assert update(lambda m: m["metadata"]["labels"].update(tier="front"))["metadata"]["generation"] == 3
    assert update(lambda m: m["metadata"].update(annotations={"a": "b"}))["metadata"]["generation"] == 4
    unchanged = update(lambda m: None)
    assert unchanged["metadata"]["generation"] == 4
    status = store.update_status("Route", "demo", "web", {"ingress": [{"host": "web.example.com"}]})
    assert status["metadata"]["generation"] == 4
    assert rv(status) > rv(unchanged)


def test_update_keeps_status_and_server_fields(store: SqliteStore) -> None:
    created = store.create(route("web"))
    store.update_status("Route", "demo", "web", {"ingress": [{"routerName": "default"}]})
    manifest = store.get("Route", "demo", "web")
    manifest["status"] = {"ingress": []}  # a spec update cannot rewrite status
    manifest["metadata"]["uid"] = "forged"
    manifest["metadata"]["creationTimestamp"] = "1999-01-01T00:00:00Z"
    manifest["spec"]["path"] = "/x"
    updated = store.update(manifest)
    assert updated["status"] == {"ingress": [{"routerName": "default"}]}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert store.get("Route", "demo", "web") == updated


# -- compare-and-swap --------------------------------------------------------------------------------------


def test_stale_resource_version_is_a_conflict_that_changes_nothing(store: SqliteStore) -> None:
    first = store.create(route("web"))
    mine = store.get("Route", "demo", "web")
    theirs = store.get("Route", "demo", "web")
    theirs["spec"]["path"] = "/theirs"
    store.update(theirs)
    revision = store.revision()
    events_before = drain(store.watch(["Route"], 1))
    mine["spec"]["path"] = "/mine"
    with pytest.raises(ConflictError, match=rf"resourceVersion {rv(first)} is stale"):
        store.update(mine)
    with pytest.raises(ConflictError):
        store.delete("Route", "demo", "web", resource_version=str(rv(first)))
    with pytest.raises(ConflictError):
        store.update_status("Route", "demo", "web", {"ingress": []}, resource_version=str(rv(first)))
    assert store.revision() == revision
    assert store.get("Route", "demo", "web")["spec"]["path"] == "/theirs"
    assert drain(store.watch(["Route"], 1)) == events_before
    # With the current version the same writes go through.
    mine = store.get("Route", "demo", "web")
    mine["spec"]["path"] = "/mine"
    assert store.update(mine)["spec"]["path"] == "/mine"


def test_update_and_delete_of_missing_objects(store: SqliteStore) -> None:
    with pytest.raises(NotFoundError):
        store.update(route("ghost"))
    with pytest.raises(NotFoundError):
        store.delete("Route", "demo", "ghost")
    with pytest.raises(NotFoundError):
        store.update_status("Route", "demo", "ghost", {})
    assert store.revision() == 0


# -- apply -------------------------------------------------------------------------------------------------


def test_apply_creates_configures_and_leaves_unchanged(store: SqliteStore) -> None:
    results = store.apply([route("a"), service("svc")])
    assert [r.action for r in results] == ["created", "created"]
    exported = store.get("Route", "demo", "a")  # an export carries uid, resourceVersion, ...
    changed = route("a", host="changed.example.com")
    results = store.apply([exported, changed | {"metadata": {**changed["metadata"], "resourceVersion": "1"}}])
    assert [r.action for r in results] == ["unchanged", "configured"]
    assert store.get("Route", "demo", "a")["spec"]["host"] == "changed.example.com"
    assert [r.action for r in store.apply([service("svc")])] == ["unchanged"]


def test_apply_is_all_or_nothing(store: SqliteStore) -> None:
    store.create(route("existing"))
    revision = store.revision()
    events_before = drain(store.watch(["Route", "Service"], 1))
    bad = service("bad")
    bad["spec"]["unserialisable"] = object()  # fails while being written, after the others were
    with pytest.raises(TypeError):
        store.apply([route("new"), route("existing", host="changed.example.com"), bad])
    assert store.revision() == revision
    with pytest.raises(NotFoundError):
        store.get("Route", "demo", "new")
    assert store.get("Route", "demo", "existing")["spec"]["host"] == "existing.example.com"
    assert drain(store.watch(["Route", "Service"], 1)) == events_before
    # The store still works after the rollback.
    assert [r.action for r in store.apply([route("new")])] == ["created"]


# -- list --------------------------------------------------------------------------------------------------


def test_list_by_kind_namespace_and_selector(store: SqliteStore) -> None:
    store.create(route("b", labels={"app": "web", "tier": "front"}))
    store.create(route("a", labels={"app": "web"}))
    store.create(route("c", ns="other", labels={"app": "db"}))
    store.create(service("a"))

    def names(**kw: Any) -> list[str]:
        return [
            f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in store.list("Route", **kw).items
        ]

    assert names() == ["demo/a", "demo/b", "other/c"]
    assert names(namespace="demo") == ["demo/a", "demo/b"]
    assert names(namespace="nowhere") == []
    assert names(selector="app=web") == ["demo/a", "demo/b"]
    assert names(selector="app==web,tier=front") == ["demo/b"]
    assert names(selector="app!=web") == ["other/c"]
    assert names(selector="tier") == ["demo/b"]
    assert names(selector="!tier") == ["demo/a", "other/c"]
    assert names(namespace="other", selector="app=web") == []
    assert [m["metadata"]["name"] for m in store.list("Service").items] == ["a"]
    assert store.list("Route").revision == store.revision() == 4


# -- watch -------------------------------------------------------------------------------------------------


def test_watch_yields_every_change_in_revision_order_and_resumes(store: SqliteStore) -> None:
    a = store.create(route("a"))
    store.create(service("svc"))
    b = store.create(route("b"))
    changed = store.get("Route", "demo", "a")
    changed["spec"]["path"] = "/x"
    store.update(changed)
    store.delete("Route", "demo", "b")
    events = drain(store.watch(["Route"], 1))
    assert [(e.type, e.key.name, e.revision) for e in events] == [
        ("ADDED", "a", 1),
        ("ADDED", "b", 3),
        ("MODIFIED", "a", 4),
        ("DELETED", "b", 5),
    ]
    assert events[0].manifest == a
    assert events[3].manifest["spec"] == b["spec"]  # DELETED carries the object as it was
    # Resume from a revision: only what came after it.
    assert [e.revision for e in drain(store.watch(["Route"], 4))] == [4, 5]
    assert [e.key.kind for e in drain(store.watch(["Service"], 1))] == ["Service"]
    # A watch that caught up sees the next change, and nothing twice.
    watch = store.watch(["Route", "Service"], 6)
    assert watch.next_batch(timeout=0.05) == []
    store.create(route("c"))
    got = watch.next_batch(timeout=5)
    assert [(e.type, e.key.name) for e in got] == [("ADDED", "c")]
    assert watch.next_batch(timeout=0.05) == []
    watch.close()


def test_list_then_watch_from_the_listed_revision_loses_nothing(store: SqliteStore) -> None:
    for i in range(5):
        store.create(route(f"r{i}"))
    listed = store.list("Route")
    store.create(route("late"))
    events = drain(store.watch(["Route"], listed.revision + 1))
    names = [m["metadata"]["name"] for m in listed.items] + [e.key.name for e in events]
    assert names == ["r0", "r1", "r2", "r3", "r4", "late"]


def test_watch_from_a_compacted_revision_raises(store: SqliteStore) -> None:
    for i in range(6):
        store.create(route(f"r{i}"))
    store.compact(4)
    with pytest.raises(CompactedError, match="list again"):
        store.watch(["Route"], 3).next_batch(timeout=1)
    with pytest.raises(CompactedError):
        store.watch(["Route"], 4).next_batch(timeout=1)
    assert [e.revision for e in drain(store.watch(["Route"], 5))] == [5, 6]
    # Objects are not history: compaction keeps every object.
    assert len(store.list("Route").items) == 6


def test_store_survives_reopening(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "s.db")
    first.create(route("web"))
    first.close()
    second = SqliteStore(tmp_path / "s.db")
    try:
        assert second.get("Route", "demo", "web")["metadata"]["resourceVersion"] == "1"
        assert rv(second.create(route("next"))) == 2
    finally:
        second.close()


# -- several processes -------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {src!r})
    from shiftroute.errors import ConflictError
    from shiftroute.store.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    me = sys.argv[2]
    for i in range(40):
        store.create({{"apiVersion": "v1", "kind": "Service",
                      "metadata": {{"name": f"{{me}}-{{i}}", "namespace": "demo"}}, "spec": {{}}}})
        while True:  # a read-modify-write counter: compare-and-swap must lose no increment
            counter = store.get("Service", "demo", "counter")
            annotations = counter["metadata"].setdefault("annotations", {{}})
            annotations["count"] = str(int(annotations.get("count", "0")) + 1)
            try:
                store.update(counter)
                break
            except ConflictError:
                continue
    store.close()
    print("done", me)
    """
)


def test_two_processes_writing_at_once(store: SqliteStore, tmp_path: Path) -> None:
    store.create(service("counter"))
    script = WRITER.format(src=SRC)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(store.path), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("left", "right")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.startswith("done")
    items = store.list("Service").items
    assert len(items) == 81
    counter = store.get("Service", "demo", "counter")
    assert counter["metadata"]["annotations"]["count"] == "80"
    events = drain(store.watch(["Service"], 1), deadline_s=30)
    revisions = [e.revision for e in events]
    assert revisions == list(range(1, store.revision() + 1))  # one gap-free, ordered history
    assert store.revision() == 1 + 80 + 80


WATCHER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {src!r})
    from shiftroute.store.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    watch = store.watch(["Route"], int(sys.argv[2]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in watch.next_batch(timeout=0.5):
            print(json.dumps([event.type, event.key.name, event.revision]), flush=True)
            sys.exit(0)
    sys.exit("no event within 30 s")
    """
)


def test_a_watcher_in_another_process_sees_a_change(store: SqliteStore) -> None:
    store.create(route("before"))
    start = store.revision() + 1
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCHER.format(src=SRC), str(store.path), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The watch starts at `start` whenever the child gets to it, so there is nothing to wait for.
        created = store.create(route("web"))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out) == ["ADDED", "web", rv(created)]


def test_a_waiting_write_gets_the_lock_in_the_next_gap(store: SqliteStore) -> None:
    """Another connection takes the write lock again and again, leaving it free 2 ms at a time: a write
    that finds it taken gets it in the first gap. (SQLite's own busy handler looks after 1, 3, 8, 18, 33,
    53, 78 ms and then every 25-100 ms, and a route write waited up to 15 such cycles, 180 ms and more.)"""
    other = SqliteStore(store.path)
    holding = threading.Event()
    stop = threading.Event()
    cycles = [0]

    def take_it_again_and_again() -> None:
        while not stop.is_set():
            with other._write():
                holding.set()
                time.sleep(0.010)
            cycles[0] += 1
            time.sleep(0.002)

    thread = threading.Thread(target=take_it_again_and_again, daemon=True)
    thread.start()
    try:
        wait_until(lambda: cycles[0] >= 2, 30, "the other connection's first writes")
        holding.clear()
        assert holding.wait(30)
        before = cycles[0]
        store.create(route("web"))  # the lock is taken now
        waited = cycles[0] - before
    finally:
        stop.set()
        thread.join(30)
        other.close()
    assert waited <= 2  # the first gap, or the next one on a busy machine
