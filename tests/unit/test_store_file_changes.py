"""The embedded store's watch sleeps on inotify (store/file_changes.py) instead of polling every 10 ms, and
still polls where inotify is missing (every wait has a deadline)."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftroute.store import sqlite as sqlite_store
from shiftroute.store.file_changes import FileChanges
from shiftroute.store.sqlite import SqliteStore, SqliteWatch
from tests.unit.manifests import route


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    """The router's store and a writer's (another connection to the same file, like the CLI's)."""
    router, writer = SqliteStore(tmp_path / "store.db"), SqliteStore(tmp_path / "store.db")
    yield router, writer
    router.close()
    writer.close()


def _settled_watch(store: SqliteStore) -> SqliteWatch:
    """A watch past its first polling window: from now on it sleeps until the files change."""
    watch = store.watch(["Route"], 0)
    assert isinstance(watch, SqliteWatch)
    watch.SAFETY_POLL_INTERVAL = 60.0  # no safety poll within the test: only a file change can wake it
    assert watch.next_batch(timeout=watch.SETTLE_FOR + 0.1) == []
    return watch


def test_a_write_by_another_connection_wakes_the_sleeping_watch(
    two_stores: tuple[SqliteStore, SqliteStore],
) -> None:
    router, writer = two_stores
    watch = _settled_watch(router)
    assert watch._changes is not None  # inotify is there on the machines the suite runs on
    threading.Timer(0.2, writer.create, args=(route("a"),)).start()
    started = time.monotonic()
    got = watch.next_batch(timeout=30)
    assert [(e.type, e.key.name) for e in got] == [("ADDED", "a")]
    # Woken by the write, not by the end of its wait (after which it looks once more and would find it too).
    assert time.monotonic() - started < 15
    watch.close()


def test_without_inotify_the_watch_polls(
    two_stores: tuple[SqliteStore, SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store.FileChanges, "watch", classmethod(lambda cls, d, n: None))
    router, writer = two_stores
    watch = router.watch(["Route"], 0)
    assert isinstance(watch, SqliteWatch) and watch._changes is None
    assert watch.next_batch(timeout=0.3) == []
    threading.Timer(0.2, writer.create, args=(route("b"),)).start()
    got = watch.next_batch(timeout=10)
    assert [(e.type, e.key.name) for e in got] == [("ADDED", "b")]
    watch.close()


def test_only_the_named_files_count(tmp_path: Path) -> None:
    log = tmp_path / "router.log"
    log.write_text("a log line\n")  # (made before: a file created in the directory is a name event)
    changes = FileChanges.watch(tmp_path, {"store.db", "store.db-wal"})
    assert changes is not None
    with log.open("a") as out:
        for _ in range(100):  # a log written per request beside the store
            out.write("another line\n")
            out.flush()
    # Not even woken to look: its inotify descriptor has nothing to read (each wake-up would take the
    # interpreter lock from the router's event loop).
    assert select.select([changes._fd], [], [], 0)[0] == []
    assert changes.wait(0.3) is False  # another file in the same directory: still asleep
    (tmp_path / "store.db-wal").write_bytes(b"frame")
    assert changes.wait(10) is True
    changes.close()


def test_files_created_or_replaced_later_are_watched(tmp_path: Path) -> None:
    """The WAL file appears after the watch starts, and a store file can be replaced by another file: the
    new files' writes still wake the watch."""
    changes = FileChanges.watch(tmp_path, {"store.db", "store.db-wal"})
    assert changes is not None
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"created")
    assert changes.wait(10) is True  # its creation
    assert changes.wait(0.2) is False  # (nothing more pending)
    with wal.open("ab") as out:
        out.write(b"frame")
    assert changes.wait(10) is True  # a write to the file that did not exist when the watch started
    replacement = tmp_path / "new.db"
    replacement.write_bytes(b"v1")
    replacement.replace(tmp_path / "store.db")
    assert changes.wait(10) is True  # the rename over it
    assert changes.wait(0.2) is False
    with (tmp_path / "store.db").open("ab") as out:
        out.write(b"v2")
    assert changes.wait(10) is True  # a write to the replacement
    changes.close()


def test_close_wakes_a_waiting_thread(tmp_path: Path) -> None:
    changes = FileChanges.watch(tmp_path, {"store.db"})
    assert changes is not None
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(changes.wait(60)))
    waiter.start()
    threading.Timer(0.2, changes.close).start()
    waiter.join(10)
    assert not waiter.is_alive() and results == [False]
