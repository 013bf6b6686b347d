"""Writing back what this router decided: each route's `status.ingress[]` entry for this router (only
when it changed, routes.md §3), and the router's own registration with a heartbeat, so `shiftroute get
routers`, diagnose and the demo find where routes are served.

Runs in its own thread with its own store connection; the latest verdicts replace older pending ones.
Status writes are background work and come in long runs (a router that starts over 10 000 routes writes
10 000 of them): they go in batches (STATUS_BURST_WRITES statuses in one store call, one transaction in
the SQLite store) with pauses between, so that a user's change never queues behind a long run of them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from shiftroute import __version__
from shiftroute.admission import RouterOptions, Verdict
from shiftroute.api.objects import API_VERSIONS, KIND_ROUTE, KIND_ROUTER, ObjectKey
from shiftroute.errors import ConflictError, NotFoundError, ShiftrouteError
from shiftroute.store import Store, open_store
from shiftroute.store.base import StatusUpdate, now_rfc3339

log = logging.getLogger("shiftroute.status")

HEARTBEAT_INTERVAL = 5.0
# Status writes go in batches of STATUS_BURST_WRITES (one `update_statuses` call: one transaction, one
# take of SQLite's write lock), and after each the writer leaves the store alone for as long as the batch
# held it, STATUS_WRITE_GAP at least. Written one transaction each and back to back (about 0.1 ms each, the
# next a few microseconds after the last commit), they held the write lock three quarters of the time and a
# route written meanwhile waited 180-730 ms for it. Now the lock is free at least half the time, in gaps
# longer than the interval at which the SQLite store lets a waiting writer try again (store/sqlite.py,
# WRITE_RETRY_MAX): a user's write waits for one batch at most (a few ms). The statuses of 10 000 routes
# take about 2 s (a router starting over them, nothing else; 4.7 s with one transaction per status).
STATUS_BURST_WRITES = 32
STATUS_WRITE_GAP = 0.002

# Per route to write: this router's entry, and what it will be remembered as once written (_written).
_Todo = dict[ObjectKey, tuple[dict[str, Any], tuple[str, tuple[object, ...]]]]


def desired_entry(verdict: Verdict, options: RouterOptions) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "Admitted", "status": "True" if verdict.admitted else "False"}
    if not verdict.admitted:
        condition["reason"] = verdict.reason
        condition["message"] = verdict.message
    return {
        "host": verdict.host,
        "routerName": options.router_name,
        "wildcardPolicy": verdict.route.spec.wildcard_policy,
        "routerCanonicalHostname": options.canonical_hostname,
        "conditions": [condition],
    }


def _comparable(entry: Mapping[str, Any]) -> tuple[object, ...]:
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason", ""), c.get("message", ""))
        for c in entry.get("conditions") or []
    )
    return (entry.get("host"), entry.get("wildcardPolicy"), entry.get("routerCanonicalHostname"), conditions)


def merge_entry(status: Mapping[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The route status with this router's entry replaced; None when nothing would change. Entries of
    other routers are kept as they are (each router writes only its own)."""
    current = dict(status or {})
    ingress = [dict(i) for i in current.get("ingress") or []]
    name = entry["routerName"]
    mine = next((i for i in ingress if i.get("routerName") == name), None)
    if mine is not None and _comparable(mine) == _comparable(entry):
        return None
    old_conditions = {c.get("type"): c for c in (mine or {}).get("conditions") or []}
    for condition in entry["conditions"]:
        old = old_conditions.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime")
        condition["lastTransitionTime"] = old["lastTransitionTime"] if same and old else now_rfc3339()
    ingress = [i for i in ingress if i.get("routerName") != name] + [entry]
    current["ingress"] = ingress
    return current


class StatusWriter:
    def __init__(self, store_url: str | None, options: RouterOptions, registration: dict[str, Any]) -> None:
        self.store_url = store_url
        self.options = options
        self.registration = registration
        self._pending: dict[ObjectKey, Verdict] | None = None
        # What this router last wrote per route, with the route's uid: a route deleted and created again
        # under the same name is another object whose status is still empty, even when the verdicts for
        # both arrive coalesced into one batch.
        self._seen_verdicts: dict[ObjectKey, Verdict] = {}
        self._written: dict[ObjectKey, tuple[str, tuple[object, ...]]] = {}
        self._failing_since: float | None = None
        self._last_write_start = 0.0  # the last batch of status writes (_pace)
        self._last_write_end = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._phase = "Running"
        self._thread = threading.Thread(target=self._run, name="shiftroute-status", daemon=True)
        self._store: Store | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, verdicts: dict[ObjectKey, Verdict]) -> None:
        with self._lock:
            self._pending = verdicts
        self._wake.set()

    def set_phase(self, phase: str) -> None:
        self._phase = phase
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Mark the router stopped in its registration, then end the thread."""
        self._phase = "Stopped"
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        next_beat = 0.0
        while True:
            stopping = self._stop.is_set()
            verdicts: dict[ObjectKey, Verdict] | None = None
            try:
                if self._store is None:
                    self._store = open_store(self.store_url)
                now = time.monotonic()
                if now >= next_beat or stopping:
                    self._heartbeat(self._store)
                    next_beat = now + HEARTBEAT_INTERVAL
                with self._lock:
                    verdicts, self._pending = self._pending, None
                if verdicts is not None and not stopping and not self._write_statuses(self._store, verdicts):
                    with self._lock:  # retry later unless newer verdicts arrived meanwhile
                        self._pending = self._pending or verdicts
                self._succeeded()
            except ShiftrouteError as exc:
                self._failed(exc)
                self._retry_later(verdicts)
            except Exception:
                log.exception("status writer error")
                self._retry_later(verdicts)
            if stopping:
                break
            self._wake.wait(timeout=min(HEARTBEAT_INTERVAL, 1.0) if self._pending else HEARTBEAT_INTERVAL)
            self._wake.clear()
        self._drop_store()

    def _retry_later(self, verdicts: dict[ObjectKey, Verdict] | None) -> None:
        """After a failed pass: new connection next time, and the verdicts it held are not dropped (no
        newer table may come to resubmit them, and then those statuses would never be written)."""
        self._drop_store()
        with self._lock:
            self._pending = self._pending or verdicts

    def _drop_store(self) -> None:
        """Close the connection (a new one is opened on the next pass, perhaps to another member)."""
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                log.debug("closing the store failed", exc_info=True)

    def _failed(self, exc: ShiftrouteError) -> None:
        # Once per outage: the controller already reports the store's state; this is what it costs here.
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("status updates paused: %s (retrying until the store answers)", exc)
        else:
            log.debug("status update failed again: %s", exc)

    def _succeeded(self) -> None:
        if self._failing_since is not None:
            log.info("status updates resumed after %.1fs", time.monotonic() - self._failing_since)
            self._failing_since = None

    def _heartbeat(self, store: Store) -> None:
        name = self.options.router_name
        manifest = {
            "apiVersion": API_VERSIONS[KIND_ROUTER],
            "kind": KIND_ROUTER,
            "metadata": {"name": name, "namespace": ""},
            "spec": {
                **self.registration,
                "domain": self.options.domain,
                "version": __version__,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
            },
        }
        try:
            current = store.get(KIND_ROUTER, "", name)
        except NotFoundError:
            current = None
        if current is None or current.get("spec") != manifest["spec"]:
            store.apply([manifest])
        store.update_status(KIND_ROUTER, "", name, {"heartbeat": now_rfc3339(), "phase": self._phase})

    def _write_statuses(self, store: Store, verdicts: dict[ObjectKey, Verdict]) -> bool:
        seen = self._seen_verdicts
        todo: _Todo = {}
        for key, verdict in verdicts.items():
            if seen.get(key) is verdict and key in self._written:
                # Admission hands back the same Verdict object for a route it did not re-decide: nothing to
                # compare (this loop runs over every route on every change).
                continue
            seen[key] = verdict
            entry = desired_entry(verdict, self.options)
            wanted = (verdict.route.meta.uid, _comparable(entry))
            if self._written.get(key) != wanted:
                todo[key] = (entry, wanted)
        ok = True
        keys = list(todo)
        for start in range(0, len(keys), STATUS_BURST_WRITES):
            if self._stop.is_set():
                return False  # stop() does not wait for the rest of a long pass
            batch = {key: todo[key] for key in keys[start : start + STATUS_BURST_WRITES]}
            ok = self._write_batch(store, batch) and ok
        for key in [k for k in self._written if k not in verdicts]:
            del self._written[key]
        for key in [k for k in seen if k not in verdicts]:
            del seen[key]
        return ok

    def _write_batch(self, store: Store, batch: _Todo) -> bool:
        """This router's entries into the statuses of a batch of routes, each merged into the status as
        read and written compare-and-swap; the ones another writer changed meanwhile (another router's
        entry, a spec edit) are read and merged again. False when some kept changing: retried later."""
        pending = batch
        for _attempt in range(5):
            updates: list[StatusUpdate] = []
            for key, (entry, wanted) in pending.items():
                try:
                    manifest = store.get(KIND_ROUTE, key.namespace, key.name)
                except NotFoundError:
                    self._written.pop(key, None)  # deleted meanwhile
                    continue
                merged = merge_entry(
                    manifest.get("status"), dict(entry, conditions=[dict(c) for c in entry["conditions"]])
                )
                if merged is None:
                    self._written[key] = wanted  # already as wanted
                    continue
                version = manifest["metadata"].get("resourceVersion")
                updates.append(StatusUpdate(KIND_ROUTE, key.namespace, key.name, merged, version))
            if not updates:
                return True
            self._pace()
            try:
                results = store.update_statuses(updates)
            finally:
                self._last_write_end = time.monotonic()  # lost compare-and-swaps took the lock as well
            conflicted: _Todo = {}
            for update, result in zip(updates, results, strict=True):
                key = ObjectKey(KIND_ROUTE, update.namespace, update.name)
                if isinstance(result, ConflictError):
                    conflicted[key] = pending[key]  # read again
                elif isinstance(result, NotFoundError):
                    self._written.pop(key, None)
                elif isinstance(result, ShiftrouteError):
                    raise result
                else:
                    self._written[key] = pending[key][1]
            if not conflicted:
                return True
            pending = conflicted
        log.debug("status of %d route(s) kept changing; will retry", len(pending))
        return False

    def _pace(self) -> None:
        """Before a batch of status writes: wait until the store has been left alone for as long as the
        last batch took (STATUS_WRITE_GAP at least)."""
        gap = max(STATUS_WRITE_GAP, self._last_write_end - self._last_write_start)
        idle = time.monotonic() - self._last_write_end
        if idle < gap:
            self._stop.wait(gap - idle)
        self._last_write_start = time.monotonic()
