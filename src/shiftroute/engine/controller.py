"""The control loop of one router process (ARCHITECTURE.md): list + watch the store in a thread, keep a
typed snapshot, re-run admission and compile on every change, publish the new table into the event loop.

The store may go away at any time: the router keeps serving its last good table, logs, and retries with
back-off (issue 3, live configuration). Status updates (`status.ingress[]`) and the router's registration
are written by a separate thread, so a slow store never delays a routing change.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shiftroute.admission import RouterOptions, Verdict
from shiftroute.api.objects import (
    KIND_ENDPOINTSLICE,
    KIND_ROUTE,
    KIND_SERVICE,
    EndpointSlice,
    ObjectKey,
    Route,
    Service,
)
from shiftroute.errors import CompactedError, ShiftrouteError
from shiftroute.live_admission import LiveAdmitter
from shiftroute.routing.compile import Compiler, CompileResult, slices_by_service
from shiftroute.store import Store, WatchEvent, open_store

log = logging.getLogger("shiftroute.controller")

KINDS = (KIND_ROUTE, KIND_SERVICE, KIND_ENDPOINTSLICE)
FIRST_BACKOFF = 0.2
# Short, because a router that is not ready yet must serve as soon as the store is back (issue 6), and a
# failed attempt is cheap for the store: against etcd it already takes up to the client's dial timeout
# (every member refuses) or the call's deadline (no quorum), which spaces the attempts out by itself.
MAX_BACKOFF = 2.0
# While the store stays away, say so again this often (the first failure and the recovery always log).
REPEAT_LOG_S = 30.0


@dataclass(slots=True)
class Snapshot:
    routes: dict[ObjectKey, Route]
    services: dict[tuple[str, str], Service]
    slices: dict[ObjectKey, EndpointSlice]
    revision: int = 0


class Controller:
    def __init__(
        self,
        store_url: str | None,
        options: RouterOptions,
        compiler: Compiler,
        publish: Callable[[CompileResult, dict[ObjectKey, Verdict]], None],
        on_store_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.store_url = store_url
        self.options = options
        self.compiler = compiler
        self.admitter = LiveAdmitter(options)
        self.publish = publish
        self.on_store_state = on_store_state or (lambda ok, why: None)
        self.snapshot = Snapshot({}, {}, {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shiftroute-controller", daemon=True)
        self._store: Store | None = None
        # The revision each kind was listed at: the watch starts at the oldest of them, so it replays
        # events that the newer lists already hold; those are skipped, not applied a second time.
        self._listed: dict[str, int] = {}
        self._published = False  # a first table exists: from then on an outage serves the last good one
        self._outage = _Outage()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            try:
                self._sync()
                backoff = FIRST_BACKOFF
            except CompactedError as exc:
                log.info("watch fell behind (%s); listing again", exc)
            except ShiftrouteError as exc:
                self.on_store_state(False, str(exc))
                self._log_unavailable(str(exc), backoff)
                self._close_store()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:  # a bug must not stop the router from serving its last table
                log.exception("controller error; retrying in %.1fs", backoff)
                self._close_store()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self._close_store()

    def _log_unavailable(self, reason: str, backoff: float) -> None:
        """Before the first sync the router has nothing to serve and is not ready; after it, it serves
        the last good table. The log says which, once per outage and then every REPEAT_LOG_S."""
        if not self._outage.should_log():
            log.debug("store %s still unavailable: %s", self.store_url, reason)
            return
        still = self._outage.still()
        if not self._published:
            log.warning(
                "%swaiting for the store %s: %s; not ready until the first sync (retrying in %.1fs)",
                still,
                self.store_url,
                reason,
                backoff,
            )
        else:
            log.warning(
                "%sstore unavailable %s: %s; serving the last good routing table (revision %d), "
                "retrying in %.1fs",
                still,
                self.store_url,
                reason,
                self.snapshot.revision,
                backoff,
            )

    def _close_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.debug("closing the store failed", exc_info=True)
            self._store = None

    def _sync(self) -> None:
        if self._store is None:
            self._store = open_store(self.store_url)
        store = self._store
        snapshot = Snapshot({}, {}, {})
        listed_at = {}
        for kind in KINDS:
            listed = store.list(kind)
            listed_at[kind] = listed.revision
            for manifest in listed.items:
                _apply(snapshot, "ADDED", kind, manifest)
        snapshot.revision = max(listed_at.values())
        self.snapshot = snapshot
        self._listed = listed_at
        self.on_store_state(True, "")
        down_for = self._outage.end()
        if down_for is not None:
            log.info("store %s is back after %.1fs: listed at revision %d", self.store_url, down_for,
                     snapshot.revision)  # fmt: skip
        self._rebuild()
        watch = store.watch(KINDS, min(listed_at.values()) + 1)
        try:
            while not self._stop.is_set():
                events = watch.next_batch(timeout=0.5)
                if events and self._absorb(events):
                    self._rebuild()
        finally:
            watch.close()

    def _absorb(self, events: list[WatchEvent]) -> bool:
        """Apply events to the snapshot; True when routing could change (not for status-only updates)."""
        changed = False
        snapshot = self.snapshot
        for event in events:
            if event.revision <= self._listed.get(event.key.kind, 0):
                continue  # already in that kind's list (an older object here would undo a newer one)
            snapshot.revision = max(snapshot.revision, event.revision)
            if event.key.kind == KIND_ROUTE and event.type == "MODIFIED":
                old = snapshot.routes.get(event.key)
                new = Route.from_manifest(event.manifest)
                snapshot.routes[event.key] = new
                if old is None or old.meta.generation != new.meta.generation or not new.meta.generation:
                    changed = True
                continue
            _apply(snapshot, event.type, event.key.kind, event.manifest)
            changed = True
        return changed

    def _rebuild(self) -> None:
        started = time.perf_counter()
        snapshot = self.snapshot
        verdicts = self.admitter.admit(snapshot.routes.values())
        admitted = time.perf_counter()
        slices = slices_by_service(snapshot.slices.values())
        result = self.compiler.compile(verdicts, snapshot.services, slices, snapshot.revision)
        compiled = time.perf_counter()
        self.publish(result, verdicts)
        self._published = True
        # Tables are large and acyclic: keep the cyclic GC from rescanning them on every collection
        # (a full collection over 10 000 routes stalls the event loop for tens of milliseconds).
        gc.freeze()
        log.debug(
            "table for revision %d: %d routes in %.1f ms (admission %.1f, compile %.1f)",
            snapshot.revision,
            len(result.table.backends),
            (time.perf_counter() - started) * 1000,
            (admitted - started) * 1000,
            (compiled - admitted) * 1000,
        )


class _Outage:
    """When the store went away, so that an outage logs once and then now and then, not every retry."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._logged = 0.0

    def should_log(self) -> bool:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self._logged < REPEAT_LOG_S:
            return False
        self._logged = now
        return True

    def still(self) -> str:
        """`still (for 42s) ` from the second message of an outage on."""
        if self.since is None or self._logged == self.since:
            return ""
        return f"still (for {time.monotonic() - self.since:.0f}s) "

    def end(self) -> float | None:
        """The outage's length when one was going on (and it is over now), else None."""
        if self.since is None:
            return None
        length, self.since = time.monotonic() - self.since, None
        return length


def _apply(snapshot: Snapshot, event: str, kind: str, manifest: dict[str, object]) -> None:
    if kind == KIND_ROUTE:
        route = Route.from_manifest(manifest)
        if event == "DELETED":
            snapshot.routes.pop(route.key, None)
        else:
            snapshot.routes[route.key] = route
    elif kind == KIND_SERVICE:
        service = Service.from_manifest(manifest)
        key = (service.meta.namespace, service.meta.name)
        if event == "DELETED":
            snapshot.services.pop(key, None)
        else:
            snapshot.services[key] = service
    elif kind == KIND_ENDPOINTSLICE:
        eps = EndpointSlice.from_manifest(manifest)
        if event == "DELETED":
            snapshot.slices.pop(eps.key, None)
        else:
            snapshot.slices[eps.key] = eps


def publish_into_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[[CompileResult, dict[ObjectKey, Verdict]], None]
) -> Callable[[CompileResult, dict[ObjectKey, Verdict]], None]:
    """Wrap a loop-side callback so the controller thread can call it safely."""

    def publish(result: CompileResult, verdicts: dict[ObjectKey, Verdict]) -> None:
        loop.call_soon_threadsafe(callback, result, verdicts)

    return publish
