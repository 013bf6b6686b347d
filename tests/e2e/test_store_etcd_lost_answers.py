# ruff: noqa: F811 - pytest fixtures are imported, then named as parameters
"""A write whose answer was lost, when a router changed the object before the retry.

With replicas, routers write `status.ingress[]` within milliseconds of a new route: by the time a CLI's
retry (after a lost answer, e.g. a leader change) finds the compare failed, the object holds our write
plus a router's status, so it no longer equals what we wrote byte for byte. It is still our write: the
store must say so (found by test_replicas_etcd's leader-change test as a false AlreadyExists)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shiftroute.errors import AlreadyExistsError
from shiftroute.store.etcd import EtcdStore
from shiftroute.store.etcd_client import AmbiguousWriteError
from tests.e2e.etcd_cluster import Cluster, etcd_single  # noqa: F401 - a fixture, used by name
from tests.e2e.test_store_contract import collect, route, summary

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(etcd_single: Cluster) -> Iterator[EtcdStore]:
    store = EtcdStore(f"{etcd_single.url}/t-{uuid.uuid4().hex[:8]}/", timeout=5)
    yield store
    store.close()


def lose_first_answer(store: EtcdStore, meanwhile: Callable[[], Any] | None) -> list[int]:
    """The first txn is applied, its answer lost; `meanwhile` runs before the retry."""
    client = store._client
    real = client.txn
    calls = [0]

    def txn(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            real(*args, **kwargs)
            if meanwhile is not None:
                meanwhile()
            raise AmbiguousWriteError("answer lost (test)")
        return real(*args, **kwargs)

    client.txn = txn  # type: ignore[method-assign]
    return calls


def status_by_router(url: str, name: str) -> Callable[[], Any]:
    """A router's status write, through its own connection, as it happens in a replica."""

    def write() -> None:
        router = EtcdStore(url, timeout=5)
        try:
            router.update_status("Route", "default", name, {"ingress": [{"routerName": "r1", "host": "x"}]})
        finally:
            router.close()

    return write


def test_a_create_whose_answer_was_lost_is_ours_after_a_status_write(store: EtcdStore) -> None:
    start = store.revision() + 1
    calls = lose_first_answer(store, status_by_router(store.url, "a"))
    created = store.create(route("a"))
    assert calls[0] >= 2
    stored = store.get("Route", "default", "a")
    assert stored["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(created["metadata"]["resourceVersion"]) < int(stored["metadata"]["resourceVersion"])
    watch = store.watch(["Route"], start)
    try:
        assert summary(collect(watch, 2)) == [("ADDED", "a"), ("MODIFIED", "a")], "created once"
    finally:
        watch.close()


def test_an_update_whose_answer_was_lost_is_no_false_conflict_after_a_status_write(store: EtcdStore) -> None:
    current = store.create(route("a"))
    changed = route("a", host="moved.example.com")
    changed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    lose_first_answer(store, status_by_router(store.url, "a"))
    updated = store.update(changed)
    stored = store.get("Route", "default", "a")
    assert stored["spec"]["host"] == updated["spec"]["host"] == "moved.example.com"
    assert stored["metadata"]["generation"] == 2, "applied once"


def test_someone_elses_create_is_still_already_exists(store: EtcdStore) -> None:
    """The first try did not apply; another writer created the name, and a router wrote its status."""
    other = EtcdStore(store.url, timeout=5)
    client = store._client
    real = client.txn
    calls = [0]

    def txn(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            other.create(route("a", host="theirs.example.com"))
            status_by_router(store.url, "a")()
            raise AmbiguousWriteError("answer lost (test)")
        return real(*args, **kwargs)

    client.txn = txn  # type: ignore[method-assign]
    try:
        with pytest.raises(AlreadyExistsError):
            store.create(route("a"))
        assert store.get("Route", "default", "a")["spec"]["host"] == "theirs.example.com"
    finally:
        other.close()
