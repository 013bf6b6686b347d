"""The etcd store's watch: one background thread per watch reads the gateway's stream into a queue.

It survives member loss and leader changes: when the stream ends or breaks, it reconnects (to the next
member first) and resumes from the last revision it fully delivered + 1. etcd never splits one revision
across watch responses, so "fully delivered" is a whole response and nothing is lost or repeated. When
etcd no longer keeps that revision, the watch ends with CompactedError, as SqliteWatch does.

A member that hangs (paused, stuck on its disk) keeps its sockets open and sends nothing, which neither
TCP keepalive nor a silent stream can tell from "no changes": a guard thread asks that member for its
status every few seconds and moves the watch when it stops answering.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
from collections.abc import Callable, Collection
from typing import Any

from shiftroute.errors import CompactedError, StoreError
from shiftroute.store.base import EventList, EventType, WatchEvent, key_of
from shiftroute.store.etcd_client import EtcdClient, KeyValue, WatchStream, b64

log = logging.getLogger(__name__)

Decode = Callable[[KeyValue], dict[str, Any]]
_Item = EventList | StoreError

# A silent stream is reopened after this long: it finds a hung member that TCP keepalive cannot see,
# and costs one request per minute on an idle store.
IDLE_REOPEN = 60.0
_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0
# The guard: a hung member is left after PROBE_MISSES probes in a row get no answer within PROBE_TIMEOUT,
# one every PROBE_INTERVAL (so within about 5 s), for one small local request per interval.
PROBE_INTERVAL = 1.5
PROBE_TIMEOUT = 1.0
PROBE_MISSES = 2


class EtcdWatch:
    def __init__(
        self,
        client: EtcdClient,
        key: bytes,
        range_end: bytes,
        kinds: Collection[str],
        from_revision: int,
        decode: Decode,
    ) -> None:
        self._client = client
        self._key = key
        self._range_end = range_end
        self._kinds = frozenset(kinds)
        self._decode = decode
        # Only the thread writes these two; `_last` is the revision of the last whole response read.
        self._last = from_revision - 1
        self._start = client.order()[0]
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._error: StoreError | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stream: WatchStream | None = None
        self.endpoint: str | None = None  # the member the stream reads from now, for diagnostics and tests
        self._thread = threading.Thread(target=self._run, name="shiftroute-etcd-watch", daemon=True)
        self._guard = threading.Thread(target=self._check, name="shiftroute-etcd-watch-guard", daemon=True)
        self._thread.start()
        self._guard.start()

    # -- the caller's side -----------------------------------------------------------------------------

    def next_batch(self, timeout: float) -> EventList:
        if self._error is not None:
            raise self._error
        if self._closed.is_set():
            return []
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        events: EventList = []
        while True:
            if isinstance(item, StoreError):
                self._error = item  # sticky: every later call raises it too
                if events:
                    return events
                raise item
            events.extend(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return events

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.interrupt()
        self._thread.join(timeout=5)
        self._guard.join(timeout=5)

    # -- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = _BACKOFF_START
        while not self._closed.is_set():
            try:
                stream = self._open()
            except StoreError as exc:
                log.debug("etcd watch: cannot open a stream: %s", exc)
                self._closed.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            delay = _BACKOFF_START
            try:
                if self._follow(stream):
                    return
            except (OSError, http.client.HTTPException, ValueError) as exc:
                log.debug("etcd watch on %s broke: %s", stream.name, exc)
            except Exception:
                # A bug must not end the watch silently: the caller would wait for events forever.
                log.exception("etcd watch on %s failed; reconnecting", stream.name)
                self._closed.wait(_BACKOFF_MAX)
            finally:
                with self._lock:
                    self._stream = None
                stream.close()
            # Start with the next member: the one that dropped us may be the one that is going away.
            self._start = (stream.index + 1) % len(self._client.endpoints)

    def _check(self) -> None:
        """The guard thread: interrupt the stream of a member that stopped answering; the reading thread
        then resumes on the next member, as after a broken connection."""
        misses = 0
        watched: WatchStream | None = None
        while not self._closed.wait(PROBE_INTERVAL):
            with self._lock:
                stream = self._stream
            if stream is not watched:
                watched, misses = stream, 0  # count misses per stream: a new one starts afresh
            if stream is None or self._client.answers(stream.index, PROBE_TIMEOUT):
                misses = 0
                continue
            misses += 1
            if misses >= PROBE_MISSES:
                log.info("etcd watch: %s does not answer; moving the watch to another member", stream.name)
                stream.interrupt()

    def _open(self) -> WatchStream:
        create = {
            "key": b64(self._key),
            "range_end": b64(self._range_end),
            # etcd reads start_revision 0 as "from now"; the Store contract's 0 means "all history".
            "start_revision": str(max(1, self._last + 1)),
            "prev_kv": True,  # DELETED events carry the object as it was
            "progress_notify": True,
        }
        stream = self._client.open_watch(create, self._start, IDLE_REOPEN)
        with self._lock:
            if self._closed.is_set():
                stream.close()
                raise StoreError("watch closed")
            self._stream = stream
        self.endpoint = stream.name
        return stream

    def _follow(self, stream: WatchStream) -> bool:
        """Read responses until the stream ends; True when the watch is over for good."""
        for message in stream:
            if self._closed.is_set():
                return True
            result = message.get("result")
            if not isinstance(result, dict):
                log.debug("etcd watch on %s: %s", stream.name, message.get("error") or message)
                return False
            if result.get("canceled"):
                compacted = int(result.get("compact_revision") or 0)
                if compacted:
                    self._queue.put(CompactedError(self._last + 1, compacted - 1))
                    return True
                log.debug("etcd watch on %s canceled: %s", stream.name, result.get("cancel_reason"))
                return False
            self._take(result)
        return self._closed.is_set()

    def _take(self, result: dict[str, Any]) -> None:
        raw = result.get("events") or []
        if not raw:
            if not result.get("created"):
                # A progress notification: every change up to this revision has been sent. (The "created"
                # answer's revision does not say that: older events may still follow.)
                revision = int((result.get("header") or {}).get("revision") or 0)
                self._last = max(self._last, revision)
            return
        batch: EventList = []
        newest = self._last
        for event in raw:
            revision = int((event.get("kv") or {}).get("mod_revision") or 0)
            newest = max(newest, revision)
            if revision <= self._last:
                continue  # already delivered before a reconnect
            try:
                decoded = self._event(event)
            except ValueError as exc:
                # Not one of ours (someone wrote under the prefix by hand): skip it, never stall on it.
                log.warning("etcd watch: skipping an undecodable value at revision %d: %s", revision, exc)
                continue
            if decoded.key.kind in self._kinds:
                batch.append(decoded)
        self._last = newest
        if batch:
            self._queue.put(batch)

    def _event(self, event: dict[str, Any]) -> WatchEvent:
        kv = KeyValue.from_json(event.get("kv") or {})
        kind: EventType
        if event.get("type") == "DELETE":
            kind = "DELETED"
            manifest = self._decode(KeyValue.from_json(event.get("prev_kv") or {}))
        else:
            kind = "ADDED" if kv.create_revision == kv.mod_revision else "MODIFIED"
            manifest = self._decode(kv)
        return WatchEvent(kind, kv.mod_revision, key_of(manifest), manifest)
