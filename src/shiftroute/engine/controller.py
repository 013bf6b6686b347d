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

from shiftroute.admission import Admitter, RouterOptions, Verdict
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
from shiftroute.routing.compile import Compiler, CompileResult, slices_by_service
from shiftroute.store import Store, WatchEvent, open_store

log = logging.getLogger("shiftroute.controller")

KINDS = (KIND_ROUTE, KIND_SERVICE, KIND_ENDPOINTSLICE)
MAX_BACKOFF = 10.0


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
        self.admitter = Admitter(options)
        self.publish = publish
        self.on_store_state = on_store_state or (lambda ok, why: None)
        self.snapshot = Snapshot({}, {}, {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shiftroute-controller", daemon=True)
        self._store: Store | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._sync()
                backoff = 0.2
            except CompactedError as exc:
                log.info("watch fell behind (%s); listing again", exc)
            except ShiftrouteError as exc:
                self.on_store_state(False, str(exc))
                log.warning(
                    "store unavailable: %s; serving the last good routing table, retrying in %.1fs",
                    exc,
                    backoff,
                )
                self._close_store()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:  # a bug must not stop the router from serving its last table
                log.exception("controller error; retrying in %.1fs", backoff)
                self._close_store()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self._close_store()

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
        revisions = []
        for kind in KINDS:
            listed = store.list(kind)
            revisions.append(listed.revision)
            for manifest in listed.items:
                _apply(snapshot, "ADDED", kind, manifest)
        # Each list has its own revision; replaying from the oldest converges (events set whole objects).
        snapshot.revision = max(revisions)
        self.snapshot = snapshot
        self.on_store_state(True, "")
        self._rebuild()
        watch = store.watch(KINDS, min(revisions) + 1)
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
        slices = slices_by_service(snapshot.slices.values())
        result = self.compiler.compile(verdicts, snapshot.services, slices, snapshot.revision)
        self.publish(result, verdicts)
        # Tables are large and acyclic: keep the cyclic GC from rescanning them on every collection
        # (a full collection over 10 000 routes stalls the event loop for tens of milliseconds).
        gc.freeze()
        log.debug(
            "table for revision %d: %d routes in %.1f ms",
            snapshot.revision,
            len(result.table.backends),
            (time.perf_counter() - started) * 1000,
        )


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
