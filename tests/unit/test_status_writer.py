"""The status writer (engine/status.py) against a real SQLite store in-process: what it must not forget.

With replicas every router writes its own `status.ingress[]` entry, so a status a router skipped or
dropped stays missing: no other router writes it for it, and nothing else resubmits it unless the routing
table changes again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shiftroute.admission import RouterOptions, Verdict
from shiftroute.api.objects import Route
from shiftroute.engine.status import STATUS_BURST_WRITES, StatusWriter
from shiftroute.errors import StoreUnavailableError
from shiftroute.store.sqlite import SqliteStore
from tests.conftest import wait_until

OPTIONS = RouterOptions(router_name="r1")
WAIT = 10.0


def route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"host": f"{name}.example.com", "to": {"kind": "Service", "name": "web"}},
    }


def admitted(manifest: dict[str, Any]) -> Verdict:
    parsed = Route.from_manifest(manifest)
    return Verdict(parsed, parsed.spec.host, admitted=True)


def entry_of(store: SqliteStore, name: str) -> dict[str, Any] | None:
    ingress = (store.get("Route", "default", name).get("status") or {}).get("ingress") or []
    return next((i for i in ingress if i["routerName"] == "r1"), None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture
def writer(store: SqliteStore) -> Iterator[StatusWriter]:
    w = StatusWriter(str(store.path), OPTIONS, {"http": "127.0.0.1:1"})
    w.start()
    yield w
    w.stop()


def test_a_route_created_again_under_the_same_name_gets_its_status(
    store: SqliteStore, writer: StatusWriter
) -> None:
    first = store.create(route("a"))
    writer.submit({admitted(first).key: admitted(first)})
    wait_until(lambda: entry_of(store, "a"), WAIT, "the first route's status")
    store.delete("Route", "default", "a")
    second = store.create(route("a"))
    # The same key and the same verdict as before, as when the delete's table and the create's table
    # were coalesced into one batch: it is still another object, with no status yet.
    writer.submit({admitted(second).key: admitted(second)})
    wait_until(lambda: entry_of(store, "a"), WAIT, "the new route's status")


def test_verdicts_of_a_failed_pass_are_written_once_the_store_answers(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_update_statuses = SqliteStore.update_statuses
    failures = [1]

    def flaky(self: SqliteStore, updates: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise StoreUnavailableError("store away (test)")
        return real_update_statuses(self, updates)

    monkeypatch.setattr(SqliteStore, "update_statuses", flaky)
    manifest = store.create(route("a"))
    w = StatusWriter(str(store.path), OPTIONS, {"http": "127.0.0.1:1"})
    w.start()
    try:
        w.submit({admitted(manifest).key: admitted(manifest)})  # once: no newer table comes
        wait_until(lambda: entry_of(store, "a"), WAIT, "the status after the failed pass")
    finally:
        w.stop()
    assert failures == [0]


def test_a_route_written_during_a_long_status_pass_waits_for_one_burst_of_status_writes_at_most(
    store: SqliteStore, writer: StatusWriter
) -> None:
    """A router that starts over many routes writes a status for each, in batches of one transaction. A
    user's route written meanwhile gets the store's write lock after one batch of them at most: written
    back to back, one transaction each, they kept the lock three quarters of the time and a route write
    waited 180-730 ms."""
    stored = [r.manifest for r in store.apply([route(f"r{i:04d}") for i in range(2000)])]
    writer.submit({admitted(m).key: admitted(m) for m in stored})
    status_writes_first = []
    for i in range(10):
        last = store.revision()
        wait_until(
            lambda last=last: store.revision() >= last + 10 or entry_of(store, "r1999"),
            WAIT,
            "more status writes",
        )
        before = store.revision()
        created = store.create(route(f"new-{i}"))
        status_writes_first.append(int(created["metadata"]["resourceVersion"]) - before - 1)
    assert entry_of(store, "r1999") is None  # all of that in the middle of the pass
    assert max(status_writes_first) <= STATUS_BURST_WRITES, status_writes_first


def test_statuses_of_many_routes_are_written_in_few_transactions_and_a_conflict_is_read_again(
    store: SqliteStore, writer: StatusWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every status is written (one revision each), in batches: the number of store calls is the number of
    routes over STATUS_BURST_WRITES, and a status that lost its compare-and-swap to another writer (here:
    another router's entry written just before) is merged with it and written again, not dropped."""
    stored = [r.manifest for r in store.apply([route(f"r{i:03d}") for i in range(100)])]
    calls: list[int] = []
    real_update_statuses = SqliteStore.update_statuses

    def counting(self: SqliteStore, updates: Any) -> Any:
        calls.append(len(updates))
        if len(calls) == 1:  # another router writes its entry into r000's status first
            other = {"routerName": "r2", "host": "r000.example.com", "conditions": []}
            self.update_status("Route", "default", "r000", {"ingress": [other]})
        return real_update_statuses(self, updates)

    monkeypatch.setattr(SqliteStore, "update_statuses", counting)
    writer.submit({admitted(m).key: admitted(m) for m in stored})
    wait_until(lambda: all(entry_of(store, f"r{i:03d}") for i in range(100)), WAIT, "every route's status")
    routers = [i["routerName"] for i in store.get("Route", "default", "r000")["status"]["ingress"]]
    assert routers == ["r2", "r1"]  # both entries: the conflict was read again and merged
    batch = STATUS_BURST_WRITES
    # The first batch, r000 again after its conflict, then the other batches.
    assert calls == [batch, 1, batch, batch, 100 - 3 * batch]
