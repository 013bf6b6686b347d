"""The Store contract, run against the embedded SQLite store and a real etcd member alike.

Revisions are compared, never computed: SQLite gives each object of an apply its own revision, etcd gives
one txn one revision, and etcd's counter is shared by every test using the member.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftroute.errors import AlreadyExistsError, CompactedError, ConflictError, NotFoundError
from shiftroute.store import Store
from shiftroute.store.base import EventList, StatusUpdate, Watch
from shiftroute.store.etcd import EtcdStore
from shiftroute.store.sqlite import SqliteStore
from tests.e2e.etcd_cluster import Cluster, etcd_single  # noqa: F401 - a fixture, used by name

pytestmark = pytest.mark.e2e

WAIT = 15.0


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "store.db")
    else:
        cluster: Cluster = request.getfixturevalue("etcd_single")
        # One member for the module; a prefix of its own keeps each test's objects apart.
        opened = EtcdStore(f"{cluster.url}/t-{uuid.uuid4().hex[:8]}/", timeout=5)
    try:
        yield opened
    finally:
        opened.close()


def route(name: str, namespace: str = "default", host: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": meta,
        "spec": {"host": host or f"{name}.example.com", "to": {"kind": "Service", "name": "web"}},
    }


def service(name: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": 80}]}}  # fmt: skip


def rv(manifest: dict[str, Any]) -> int:
    return int(manifest["metadata"]["resourceVersion"])


def collect(watch: Watch, count: int, timeout: float = WAIT) -> EventList:
    """Exactly `count` events, then a short look for any extra one (a repeat would show up there)."""
    events: EventList = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events.extend(watch.next_batch(0.2))
    events.extend(watch.next_batch(0.3))
    assert len(events) == count, [(e.type, e.key.name, e.revision) for e in events]
    return events


def summary(events: EventList) -> list[tuple[str, str]]:
    return [(e.type, e.key.name) for e in events]


def wait_compacted(watch: Watch) -> CompactedError:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            watch.next_batch(0.2)
        except CompactedError as exc:
            return exc
    raise AssertionError("the watch never reported the compaction")


# -- CRUD and server fields -----------------------------------------------------------------------------


def test_create_fills_server_fields_and_get_returns_it(store: Store) -> None:
    before = store.revision()
    created = store.create({**route("a"), "status": {"ingress": [{"host": "x"}]}})
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert rv(created) > before
    assert rv(created) == store.revision()
    assert "status" not in created, "status is a subresource: create ignores it"
    assert store.get("Route", "default", "a") == created


def test_create_keeps_uid_and_creation_timestamp_of_an_export(store: Store) -> None:
    manifest = route("old")
    manifest["metadata"].update(uid="u-1", creationTimestamp="2020-01-01T00:00:00Z")
    created = store.create(manifest)
    assert (created["metadata"]["uid"], created["metadata"]["creationTimestamp"]) == (
        "u-1",
        "2020-01-01T00:00:00Z",
    )


def test_create_existing_name_is_refused(store: Store) -> None:
    first = store.create(route("a"))
    with pytest.raises(AlreadyExistsError, match='route "a" already exists in namespace "default"'):
        store.create(route("a", host="other.example.com"))
    assert store.get("Route", "default", "a") == first


@pytest.mark.parametrize("op", ["get", "delete", "update", "update_status"])
def test_missing_object_is_not_found(store: Store, op: str) -> None:
    calls = {
        "get": lambda: store.get("Route", "default", "nope"),
        "delete": lambda: store.delete("Route", "default", "nope"),
        "update": lambda: store.update(route("nope")),
        "update_status": lambda: store.update_status("Route", "default", "nope", {}),
    }
    with pytest.raises(NotFoundError, match='route "nope" not found in namespace "default"'):
        calls[op]()


def test_update_counts_generation_on_content_only_and_keeps_status(store: Store) -> None:
    created = store.create(route("a"))
    with_status = store.update_status("Route", "default", "a", {"ingress": [{"routerName": "r1"}]})
    assert with_status["metadata"]["generation"] == 1
    assert rv(with_status) > rv(created)

    changed = store.update({**route("a", host="b.example.com"), "status": {"ignored": True}})
    assert changed["metadata"]["generation"] == 2
    assert changed["metadata"]["uid"] == created["metadata"]["uid"]
    assert changed["status"] == {"ingress": [{"routerName": "r1"}]}, "update keeps the stored status"
    assert rv(changed) > rv(with_status)

    same = store.update(route("a", host="b.example.com"))
    assert same["metadata"]["generation"] == 2
    labelled = store.update(route("a", host="b.example.com", team="x"))
    assert labelled["metadata"]["generation"] == 3, "labels are content"
    assert store.get("Route", "default", "a") == labelled


def test_delete_returns_the_object_and_removes_it(store: Store) -> None:
    created = store.create(route("a"))
    assert store.delete("Route", "default", "a") == created
    with pytest.raises(NotFoundError):
        store.get("Route", "default", "a")
    assert store.list("Route").items == []


# -- compare-and-swap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["update", "delete", "update_status"])
def test_stale_resource_version_is_a_conflict_and_changes_nothing(store: Store, op: str) -> None:
    stale = store.create(route("a"))
    current = store.update(route("a", host="new.example.com"))
    revision = store.revision()
    stale_rv = stale["metadata"]["resourceVersion"]
    with pytest.raises(ConflictError, match=f"resourceVersion {stale_rv} is stale"):
        if op == "update":
            store.update({**route("a", host="lost.example.com"), "metadata": stale["metadata"]})
        elif op == "delete":
            store.delete("Route", "default", "a", stale_rv)
        else:
            store.update_status("Route", "default", "a", {"lost": True}, stale_rv)
    assert store.get("Route", "default", "a") == current
    assert store.revision() == revision


def test_current_resource_version_wins(store: Store) -> None:
    created = store.create(route("a"))
    updated = store.update({**route("a", host="b.example.com"), "metadata": created["metadata"]})
    status = store.update_status("Route", "default", "a", {"s": 1}, updated["metadata"]["resourceVersion"])
    assert store.delete("Route", "default", "a", status["metadata"]["resourceVersion"]) == status


def test_update_status_never_loses_a_concurrent_spec_change(store: Store) -> None:
    """One writer changes the spec, another the status, at the same time: both survive every round."""
    store.create(route("a"))
    rounds = 15
    errors: list[BaseException] = []

    def spec_writer() -> None:
        try:
            for i in range(rounds):
                store.update(route("a", host=f"h{i}.example.com"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=spec_writer)
    thread.start()
    for i in range(rounds):
        store.update_status("Route", "default", "a", {"round": i})
    thread.join(timeout=WAIT * 2)
    assert not thread.is_alive() and not errors, errors
    final = store.get("Route", "default", "a")
    assert final["spec"]["host"] == f"h{rounds - 1}.example.com"
    assert final["status"] == {"round": rounds - 1}
    assert final["metadata"]["generation"] == 1 + rounds


def test_update_status_with_the_read_version_fails_after_a_spec_change(store: Store) -> None:
    read = store.create(route("a"))
    store.update(route("a", host="b.example.com"))
    with pytest.raises(ConflictError):
        store.update_status("Route", "default", "a", {"s": 1}, read["metadata"]["resourceVersion"])
    assert "status" not in store.get("Route", "default", "a")


def test_update_statuses_writes_each_and_reports_a_missing_or_changed_object_in_its_place(
    store: Store,
) -> None:
    a = store.create(route("a"))
    b = store.create(route("b"))
    store.update(route("b", host="b2.example.com"))  # b as read is now stale
    c = store.create(route("c"))
    results = store.update_statuses(
        [
            StatusUpdate("Route", "default", "a", {"s": "a"}, a["metadata"]["resourceVersion"]),
            StatusUpdate("Route", "default", "b", {"s": "b"}, b["metadata"]["resourceVersion"]),
            StatusUpdate("Route", "default", "gone", {"s": "gone"}),
            StatusUpdate("Route", "default", "c", {"s": "c"}, c["metadata"]["resourceVersion"]),
        ]
    )
    assert [type(r).__name__ for r in results] == ["dict", "ConflictError", "NotFoundError", "dict"]
    assert store.get("Route", "default", "a")["status"] == {"s": "a"} == results[0]["status"]  # type: ignore[index]
    assert store.get("Route", "default", "c")["status"] == {"s": "c"}
    assert "status" not in store.get("Route", "default", "b")
    assert store.get("Route", "default", "b")["spec"]["host"] == "b2.example.com"


# -- apply --------------------------------------------------------------------------------------------


def test_apply_reports_created_configured_unchanged(store: Store) -> None:
    first = store.apply([route("a"), route("b"), service("web")])
    assert [r.action for r in first] == ["created", "created", "created"]
    second = store.apply([route("a"), route("b", host="new.example.com"), service("web")])
    assert [r.action for r in second] == ["unchanged", "configured", "unchanged"]
    assert second[1].manifest["metadata"]["generation"] == 2
    for result in second:
        key = result.manifest
        assert store.get(key["kind"], "default", key["metadata"]["name"]) == result.manifest


@pytest.mark.parametrize(
    ("second_host", "actions"),
    [
        pytest.param("other.example.com", ["created", "configured"], id="changed"),
        pytest.param("a.example.com", ["created", "unchanged"], id="same"),
    ],
)
def test_apply_of_one_name_twice_builds_on_itself(store: Store, second_host: str, actions: list[str]) -> None:
    results = store.apply([route("a"), route("a", host=second_host)])
    assert [r.action for r in results] == actions
    stored = store.get("Route", "default", "a")
    assert results[-1].manifest == stored
    assert stored["spec"]["host"] == second_host
    assert stored["metadata"]["generation"] == (2 if actions[1] == "configured" else 1)


def test_apply_is_all_or_nothing(store: Store) -> None:
    store.create(route("a"))
    before = store.revision()
    broken = route("c")
    broken["spec"]["bad"] = object()  # cannot be stored: the apply fails at the last object
    with pytest.raises(TypeError):
        store.apply([route("a", host="changed.example.com"), route("b"), broken])
    assert store.get("Route", "default", "a")["spec"]["host"] == "a.example.com"
    assert [m["metadata"]["name"] for m in store.list("Route").items] == ["a"]
    assert store.revision() == before


def test_apply_ignores_a_stale_resource_version(store: Store) -> None:
    created = store.create(route("a"))
    store.update(route("a", host="b.example.com"))
    again = {**route("a", host="c.example.com"), "metadata": created["metadata"]}
    assert store.apply([again])[0].action == "configured"


# -- list and watch -----------------------------------------------------------------------------------


def test_list_filters_namespace_and_labels_in_namespace_name_order(store: Store) -> None:
    for ns, name, team in [("b", "z", "x"), ("a-b", "y", "y"), ("a", "x", "x"), ("a", "w", "y")]:
        store.create(route(name, ns, team=team))
    store.create(service("web", "a"))
    listed = store.list("Route")
    assert [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in listed.items] == [
        ("a", "w"), ("a", "x"), ("a-b", "y"), ("b", "z"),
    ]  # fmt: skip
    assert listed.revision == store.revision()
    assert [m["metadata"]["name"] for m in store.list("Route", "a").items] == ["w", "x"]
    assert [m["metadata"]["name"] for m in store.list("Route", selector="team=x").items] == ["x", "z"]
    assert [m["metadata"]["name"] for m in store.list("Route", "a", selector="team!=x").items] == ["w"]
    assert [m["metadata"]["name"] for m in store.list("Service").items] == ["web"]


def test_watch_from_list_revision_delivers_each_later_change_once_in_order(store: Store) -> None:
    store.create(route("before"))
    listed = store.list("Route")
    watch = store.watch(["Route"], listed.revision + 1)
    try:
        store.create(route("a"))
        store.update(route("a", host="b.example.com"))
        store.update_status("Route", "default", "a", {"s": 1})
        store.create(service("ignored"))
        deleted = store.delete("Route", "default", "before")
        events = collect(watch, 4)
    finally:
        watch.close()
    assert summary(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "before")]
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions)) and revisions[0] > listed.revision
    assert events[3].manifest == deleted, "a DELETED event carries the object as it was"
    for event in events[:3]:
        assert rv(event.manifest) == event.revision
    assert events[2].manifest["status"] == {"s": 1}


def test_list_and_watch_under_concurrent_writes_lose_and_repeat_nothing(store: Store) -> None:
    """A writer creates objects while we list then watch from list revision + 1: every name shows up in
    exactly one of the two."""
    names = [f"r{i:03d}" for i in range(60)]
    some_written = threading.Event()

    def writer() -> None:
        for i, name in enumerate(names):
            store.create(route(name))
            if i == 19:
                some_written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert some_written.wait(WAIT)
    listed = store.list("Route")  # while the writer goes on
    watch = store.watch(["Route", "Service"], listed.revision + 1)
    try:
        seen = [m["metadata"]["name"] for m in listed.items]
        thread.join(timeout=WAIT * 2)
        events = collect(watch, len(names) - len(seen))
    finally:
        watch.close()
    watched = [e.key.name for e in events]
    assert all(e.type == "ADDED" for e in events)
    assert sorted(seen + watched) == names
    assert not set(seen) & set(watched)


def test_watch_of_several_kinds_is_one_revision_order(store: Store) -> None:
    start = store.revision() + 1
    store.create(service("web"))
    store.create(route("a"))
    store.create(service("db"))
    watch = store.watch(["Route", "Service"], start)
    try:
        events = collect(watch, 3)
    finally:
        watch.close()
    assert [(e.key.kind, e.key.name) for e in events] == [
        ("Service", "web"),
        ("Route", "a"),
        ("Service", "db"),
    ]


def test_watch_from_a_compacted_revision_raises_compacted(store: Store) -> None:
    store.create(route("a"))
    old = store.revision()
    store.update(route("a", host="b.example.com"))
    store.update(route("a", host="c.example.com"))
    kept = store.revision()
    store.create(route("after"))
    store.compact(kept)

    stale = store.watch(["Route"], old)
    try:
        error = wait_compacted(stale)
        assert error.requested == old
        with pytest.raises(CompactedError):
            stale.next_batch(0.1)  # it stays failed: the caller must list again
    finally:
        stale.close()

    # The recovery the error asks for: list, then watch from the listed revision + 1.
    listed = store.list("Route")
    assert {m["metadata"]["name"] for m in listed.items} == {"a", "after"}
    fresh = store.watch(["Route"], listed.revision + 1)
    try:
        store.delete("Route", "default", "after")
        assert summary(collect(fresh, 1)) == [("DELETED", "after")]
    finally:
        fresh.close()


def test_watch_from_the_revision_after_a_compaction_works(store: Store) -> None:
    store.create(route("a"))
    kept = store.revision()
    store.create(route("b"))
    store.compact(kept)
    watch = store.watch(["Route"], kept + 1)
    try:
        assert summary(collect(watch, 1)) == [("ADDED", "b")]
    finally:
        watch.close()


def test_closed_watch_returns_nothing(store: Store) -> None:
    watch = store.watch(["Route"], store.revision() + 1)
    watch.close()
    store.create(route("a"))
    assert watch.next_batch(0.2) == []
