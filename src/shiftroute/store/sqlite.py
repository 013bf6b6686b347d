"""The embedded default store: one SQLite file in WAL mode, safe for many processes at once.

Writers take SQLite's write lock (`BEGIN IMMEDIATE`), so the revision counter and the object rows change
together or not at all: a failed multi-document apply or a lost compare-and-swap leaves the file as it was.
A writer that finds the lock taken tries again every millisecond at most (see `_begin_write`).
Watchers in other processes read the event log when the store's files change (inotify on Linux, else a
poll every few milliseconds); `PRAGMA data_version` makes a check that finds nothing almost free, and a
change reaches another process well under 100 ms after its commit (SqliteWatch).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shiftroute.api.objects import Manifest
from shiftroute.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    NotFoundError,
    StoreUnavailableError,
)
from shiftroute.store.base import (
    ApplyResult,
    ApplyResults,
    EventList,
    EventType,
    ListResult,
    StatusResults,
    StatusUpdate,
    WatchEvent,
    key_of,
    matches_selector,
    parse_selector,
    prepare_create,
    prepare_update,
    same_content,
    with_status,
)
from shiftroute.store.file_changes import FileChanges

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, revision);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0), ('schema', 1);
"""

# History kept for watchers that fall behind; older events are compacted (etcd keeps history the same way).
DEFAULT_HISTORY = 100_000
_BUSY_TIMEOUT_MS = 10_000
# Waiting for the write lock. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and
# then 100 ms between tries: against a connection that takes the lock again and again (a router writing
# 10 000 route statuses one transaction each) it looks a few times a second and can miss every gap; a
# route write waited 180-730 ms that way (the busy handler's cumulative steps). The store retries itself
# instead, the first time after WRITE_RETRY_FIRST and then at least every WRITE_RETRY_MAX, so a writer
# gets the lock in any gap longer than that (the status writer leaves such gaps, engine/status.py).
WRITE_RETRY_FIRST = 0.0002
WRITE_RETRY_MAX = 0.001


def _kind_label(kind: str) -> str:
    return {"Route": "route", "Service": "service", "EndpointSlice": "endpointslice"}.get(kind, kind.lower())


def _not_found(kind: str, namespace: str, name: str) -> NotFoundError:
    where = f' in namespace "{namespace}"' if namespace else ""
    return NotFoundError(f'{_kind_label(kind)} "{name}" not found{where}')


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], history: int = DEFAULT_HISTORY) -> None:
        self.path = Path(path)
        self.url = f"sqlite://{self.path}"
        self.history = history
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # PRAGMA data_version ignores a connection's own commits; this counts them for watchers.
        self._local_commits = 0
        self._inode: tuple[int, int] | None = None
        self._inode_checked = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
            stat = os.stat(self.path)
            self._inode = (stat.st_dev, stat.st_ino)
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailableError(f"store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailableError(f"store {self.path}: {exc.strerror or exc}") from None

    # -- connections -----------------------------------------------------------------------------------

    def _check_file(self) -> None:
        """A store file that was deleted or replaced while open would keep answering from the old inode
        forever; notice it (at most once a second) so long-lived users such as a router reconnect."""
        now = time.monotonic()
        if self._inode is None or now - self._inode_checked < 1.0:
            return
        self._inode_checked = now
        try:
            stat = os.stat(self.path)
        except OSError:
            raise StoreUnavailableError(f"store {self.path}: the file was removed") from None
        if (stat.st_dev, stat.st_ino) != self._inode:
            raise StoreUnavailableError(f"store {self.path}: the file was replaced; reopen the store")

    def _db(self) -> sqlite3.Connection:
        self._check_file()
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            except sqlite3.DatabaseError as exc:
                raise StoreUnavailableError(f"store {self.path}: {exc}") from None
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            self._begin_write(db)
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                db.execute("ROLLBACK")
                raise StoreUnavailableError(f"store {self.path}: {exc}") from None
        finally:
            # Back to waiting in SQLite for reads, after the transaction so that it costs nothing while
            # the lock is held (inside it the statements need no other lock in WAL mode, and the checkpoint
            # after a commit never waits). A connection that cannot even do this is broken anyway: the
            # error that got here is the one to report.
            with contextlib.suppress(sqlite3.Error):
                db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        self._local_commits += 1

    def _begin_write(self, db: sqlite3.Connection) -> None:
        """`BEGIN IMMEDIATE`, retried here rather than by SQLite's busy handler (WRITE_RETRY_MAX says why),
        for up to the same 10 s before the store counts as unavailable."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = WRITE_RETRY_FIRST
        db.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise StoreUnavailableError(f"store {self.path}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, WRITE_RETRY_MAX)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot (one read transaction) so a list and its revision agree."""
        db = self._db()
        try:
            db.execute("BEGIN")
            yield db
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailableError(f"store {self.path}: {exc}") from None
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.ProgrammingError):  # closed from its own thread already
                    db.close()
            self._connections.clear()
        self._local = threading.local()

    # -- reads -----------------------------------------------------------------------------------------

    def revision(self) -> int:
        with self._read() as db:
            return self._revision(db)

    @staticmethod
    def _revision(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    def get(self, kind: str, namespace: str, name: str) -> Manifest:
        with self._read() as db:
            row = db.execute(
                "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            ).fetchone()
        if row is None:
            raise _not_found(kind, namespace, name)
        body: Manifest = json.loads(row[0])
        return body

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> ListResult:
        terms = parse_selector(selector)
        with self._read() as db:
            if namespace is None:
                rows = db.execute(
                    "SELECT body FROM objects WHERE kind = ? ORDER BY namespace, name", (kind,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT body FROM objects WHERE kind = ? AND namespace = ? ORDER BY name",
                    (kind, namespace),
                ).fetchall()
            revision = self._revision(db)
        items = [json.loads(r[0]) for r in rows]
        return ListResult([m for m in items if matches_selector(m, terms)], revision)

    # -- writes ----------------------------------------------------------------------------------------

    def _next_revision(self, db: sqlite3.Connection) -> int:
        revision = self._revision(db) + 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (revision,))
        return revision

    def _current(self, db: sqlite3.Connection, kind: str, namespace: str, name: str) -> Manifest | None:
        row = db.execute(
            "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _record(self, db: sqlite3.Connection, event: EventType, manifest: Manifest, revision: int) -> None:
        key = key_of(manifest)
        body = json.dumps(manifest, separators=(",", ":"))
        if event == "DELETED":
            db.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (key.kind, key.namespace, key.name),
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, revision, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (key.kind, key.namespace, key.name, revision, body),
            )
        db.execute(
            "INSERT INTO events (revision, type, kind, namespace, name, body) VALUES (?, ?, ?, ?, ?, ?)",
            (revision, event, key.kind, key.namespace, key.name, body),
        )
        if revision % 1000 == 0 and revision > self.history:
            self._compact(db, revision - self.history)

    def _create(self, db: sqlite3.Connection, manifest: Manifest) -> Manifest:
        key = key_of(manifest)
        if self._current(db, key.kind, key.namespace, key.name) is not None:
            where = f' in namespace "{key.namespace}"' if key.namespace else ""
            raise AlreadyExistsError(f'{_kind_label(key.kind)} "{key.name}" already exists{where}')
        stored = prepare_create(manifest, self._next_revision(db))
        self._record(db, "ADDED", stored, int(stored["metadata"]["resourceVersion"]))
        return stored

    def _update(self, db: sqlite3.Connection, manifest: Manifest, check_version: bool) -> Manifest:
        key = key_of(manifest)
        current = self._current(db, key.kind, key.namespace, key.name)
        if current is None:
            raise _not_found(key.kind, key.namespace, key.name)
        _check_version(
            current, (manifest.get("metadata") or {}).get("resourceVersion") if check_version else None
        )
        stored = prepare_update(current, manifest, self._next_revision(db))
        self._record(db, "MODIFIED", stored, int(stored["metadata"]["resourceVersion"]))
        return stored

    def create(self, manifest: Manifest) -> Manifest:
        with self._write() as db:
            return self._create(db, manifest)

    def update(self, manifest: Manifest) -> Manifest:
        """Replace an object; compare-and-swap when `metadata.resourceVersion` is set."""
        with self._write() as db:
            return self._update(db, manifest, check_version=True)

    def apply(self, manifests: Iterable[Manifest]) -> ApplyResults:
        """Create or update every object in one transaction: all of them change, or none does.

        A resourceVersion in an applied manifest is ignored (as `oc apply` of an exported object does not
        fail on it); the transaction itself makes each replace atomic.
        """
        results: ApplyResults = []
        with self._write() as db:
            for manifest in manifests:
                key = key_of(manifest)
                current = self._current(db, key.kind, key.namespace, key.name)
                if current is None:
                    results.append(ApplyResult("created", self._create(db, manifest)))
                elif same_content(current, manifest):
                    results.append(ApplyResult("unchanged", current))
                else:
                    results.append(ApplyResult("configured", self._update(db, manifest, check_version=False)))
        return results

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> Manifest:
        with self._write() as db:
            current = self._current(db, kind, namespace, name)
            if current is None:
                raise _not_found(kind, namespace, name)
            _check_version(current, resource_version)
            revision = self._next_revision(db)
            self._record(db, "DELETED", current, revision)
            return current

    def update_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> Manifest:
        with self._write() as db:
            return self._update_status(db, kind, namespace, name, status, resource_version)

    def update_statuses(self, updates: Sequence[StatusUpdate]) -> StatusResults:
        """All in one transaction, so the write lock is taken once for the lot (a router writing the
        statuses of 10 000 routes would otherwise take it 10 000 times); a missing or changed object is
        reported in its place and the others are written."""
        results: StatusResults = []
        with self._write() as db:
            for u in updates:
                try:
                    results.append(
                        self._update_status(db, u.kind, u.namespace, u.name, u.status, u.resource_version)
                    )
                except (NotFoundError, ConflictError) as exc:
                    results.append(exc)
        return results

    def _update_status(
        self,
        db: sqlite3.Connection,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None,
    ) -> Manifest:
        current = self._current(db, kind, namespace, name)
        if current is None:
            raise _not_found(kind, namespace, name)
        _check_version(current, resource_version)
        stored = with_status(current, status, self._next_revision(db))
        self._record(db, "MODIFIED", stored, int(stored["metadata"]["resourceVersion"]))
        return stored

    # -- history ---------------------------------------------------------------------------------------

    def _compact(self, db: sqlite3.Connection, revision: int) -> None:
        db.execute("DELETE FROM events WHERE revision <= ?", (revision,))
        db.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (revision,))

    def compact(self, revision: int) -> None:
        """Forget history up to and including `revision`."""
        with self._write() as db:
            self._compact(db, min(revision, self._revision(db)))

    def watch(self, kinds: Collection[str], from_revision: int) -> SqliteWatch:
        return SqliteWatch(self, tuple(kinds), from_revision)

    def _events_since(self, kinds: tuple[str, ...], after: int, limit: int) -> EventList:
        marks = ",".join("?" * len(kinds))
        with self._read() as db:
            compacted = int(db.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()[0])
            if after < compacted:
                raise CompactedError(after + 1, compacted)
            rows = db.execute(
                f"SELECT revision, type, body FROM events WHERE revision > ? AND kind IN ({marks}) "  # noqa: S608
                "ORDER BY revision LIMIT ?",
                (after, *kinds, limit),
            ).fetchall()
        out = []
        for revision, event_type, body in rows:
            manifest = json.loads(body)
            out.append(WatchEvent(event_type, int(revision), key_of(manifest), manifest))
        return out

    def _change_marker(self) -> tuple[int, int]:
        """Changes whenever anyone (another process, or this one) committed since the last call."""
        version = int(self._db().execute("PRAGMA data_version").fetchone()[0])
        return (version, self._local_commits)


def _check_version(current: Mapping[str, Any], expected: Any) -> None:
    if expected in (None, ""):
        return
    actual = str((current.get("metadata") or {}).get("resourceVersion"))
    if str(expected) != actual:
        key = key_of(current)
        raise ConflictError(
            f'{_kind_label(key.kind)} "{key.name}" was changed by someone else (resourceVersion {expected} '
            f"is stale, the store has {actual}): get it again and retry"
        )


class SqliteWatch:
    """Reads the event log when the store's files change. `PRAGMA data_version` changes only when another
    connection commits, so a check costs one pragma.

    On Linux the watch sleeps on inotify (store/file_changes.py) until the database or its WAL is written,
    then polls every 5 ms for SETTLE_FOR seconds (a writer's WAL write comes a moment before its commit is
    visible), then sleeps again; a check every SAFETY_POLL_INTERVAL covers a missed event. Without inotify
    it polls: every 5 ms while changes keep coming, every 10 ms when the store is quiet. Polling from this
    thread takes the interpreter lock from the event loop on every sqlite call, which a busy router feels
    (file_changes.py says how much)."""

    POLL_INTERVAL = 0.005
    IDLE_POLL_INTERVAL = 0.010
    BUSY_FOR = 2.0  # seconds after a change during which polling stays fast
    SETTLE_FOR = 0.1  # seconds of polling after the files changed
    SAFETY_POLL_INTERVAL = 1.0
    BATCH = 5000

    def __init__(self, store: SqliteStore, kinds: tuple[str, ...], from_revision: int) -> None:
        self._store = store
        self._kinds = kinds
        # As in etcd, a start revision of 0 (or less) means "changes from now on".
        self._after = from_revision - 1 if from_revision > 0 else store.revision()
        self._seen: tuple[int, int] | None = None
        self._closed = False
        self._last_change = time.monotonic()
        path = store.path
        self._changes = FileChanges.watch(
            path.parent, {path.name, f"{path.name}-wal", f"{path.name}-journal"}
        )
        self._last_wake = time.monotonic()  # poll at first: the files may have changed before the watch

    def next_batch(self, timeout: float) -> EventList:
        deadline = time.monotonic() + timeout
        while not self._closed:
            marker = self._store._change_marker()
            if marker != self._seen:
                events = self._store._events_since(self._kinds, self._after, self.BATCH)
                if len(events) < self.BATCH:
                    # Only remember the version once we caught up, so a full batch is followed at once.
                    self._seen = marker
                if events:
                    self._after = events[-1].revision
                    self._last_change = time.monotonic()
                    return events
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return []
            changes = self._changes
            if changes is not None and now - self._last_wake > self.SETTLE_FOR:
                if changes.wait(min(self.SAFETY_POLL_INTERVAL, remaining)):
                    self._last_wake = time.monotonic()
                continue
            quiet = now - self._last_change > self.BUSY_FOR
            time.sleep(min(self.IDLE_POLL_INTERVAL if quiet else self.POLL_INTERVAL, remaining))
        return []

    def close(self) -> None:
        self._closed = True
        if self._changes is not None:
            self._changes.close()
