"""The Store contract shared by the embedded SQLite store and the etcd store.

It follows etcd's model so both fit one interface:
- one monotonic revision for the whole store; an object's `metadata.resourceVersion` is the revision of
  its last change (etcd: mod_revision);
- update and delete are compare-and-swap on resourceVersion (a stale version is a ConflictError);
- `list` answers at a revision, and `watch(kinds, from_revision)` yields every later change in revision
  order, so list + watch(revision + 1) loses nothing and repeats nothing;
- old history is compacted; watching from a compacted revision raises CompactedError (list again).
Status is a subresource: create/update keep the stored status, only `update_status` and
`update_statuses` write it.
"""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shiftroute.api.objects import Manifest, ObjectKey
from shiftroute.errors import StoreError, UsageError

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    revision: int
    key: ObjectKey
    manifest: Manifest  # for DELETED: the object as it was when deleted


@dataclass(frozen=True, slots=True)
class ListResult:
    items: ManifestList
    revision: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    action: Literal["created", "configured", "unchanged"]
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One object's new status for `update_statuses`; compare-and-swap when `resource_version` is set."""

    kind: str
    namespace: str
    name: str
    status: Mapping[str, Any]
    resource_version: str | None = None


EventList = list[WatchEvent]
ManifestList = list[Manifest]
ApplyResults = list[ApplyResult]
# Per StatusUpdate, in order: the stored object, or why that one was not written (NotFoundError,
# ConflictError); the others are written all the same.
StatusResults = list[Manifest | StoreError]


class Watch(Protocol):
    def next_batch(self, timeout: float) -> EventList:
        """Events after the last one returned, waiting at most `timeout` s; [] when none came."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    url: str

    def revision(self) -> int: ...

    def get(self, kind: str, namespace: str, name: str) -> Manifest: ...

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> ListResult: ...

    def create(self, manifest: Manifest) -> Manifest: ...

    def update(self, manifest: Manifest) -> Manifest: ...

    def apply(self, manifests: Iterable[Manifest]) -> ApplyResults: ...

    def delete(
        self, kind: str, namespace: str, name: str, resource_version: str | None = None
    ) -> Manifest: ...

    def update_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> Manifest: ...

    def update_statuses(self, updates: Sequence[StatusUpdate]) -> StatusResults:
        """Several `update_status` calls at once (the router's status writer: one per route it serves).
        Each is its own compare-and-swap: one object gone or changed does not stop the others."""
        ...

    def watch(self, kinds: Collection[str], from_revision: int) -> Watch: ...

    def compact(self, revision: int) -> None: ...

    def close(self) -> None: ...


def key_of(manifest: Mapping[str, Any]) -> ObjectKey:
    meta = manifest.get("metadata") or {}
    return ObjectKey(
        str(manifest.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", ""))
    )


def now_rfc3339() -> str:
    """Kubernetes timestamps: UTC, RFC 3339, whole seconds (`2026-11-29T19:30:00Z`)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What generation counts: everything but status and server-managed metadata."""
    body = {k: v for k, v in manifest.items() if k not in ("status", "metadata")}
    meta = manifest.get("metadata") or {}
    body["__meta"] = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
    return body


def time_ordered_uid() -> str:
    """A UUID whose text sorts by creation time (the layout of RFC 9562's UUIDv7: 48-bit Unix
    milliseconds, then random bits). Host claims break creationTimestamp ties (whole seconds) by the
    smaller uid (routes.md §3), so two routes created in the same second are ordered as they were made."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def prepare_create(manifest: Mapping[str, Any], revision: int) -> Manifest:
    """Fill the server-side fields of a new object.

    uid and creationTimestamp are kept when the manifest carries them (an export from a cluster keeps its
    age, and routes.md §3 decides host claims by age); otherwise they are generated.
    """
    out = copy.deepcopy(dict(manifest))
    meta = out.setdefault("metadata", {})
    meta.setdefault("namespace", "")
    if not meta.get("uid"):
        meta["uid"] = time_ordered_uid()
    if not meta.get("creationTimestamp"):
        meta["creationTimestamp"] = now_rfc3339()
    meta["resourceVersion"] = str(revision)
    meta["generation"] = 1
    out.pop("status", None)
    return out


def prepare_update(current: Mapping[str, Any], manifest: Mapping[str, Any], revision: int) -> Manifest:
    """The stored object after an update: server fields and status from `current`, the rest from
    `manifest`."""
    out = copy.deepcopy(dict(manifest))
    meta = out.setdefault("metadata", {})
    cur_meta = current.get("metadata") or {}
    for field in ("uid", "creationTimestamp", "namespace"):
        if field in cur_meta:
            meta[field] = cur_meta[field]
    generation = int(cur_meta.get("generation") or 1)
    meta["generation"] = generation + 1 if _content(current) != _content(out) else generation
    meta["resourceVersion"] = str(revision)
    out.pop("status", None)
    if "status" in current:
        out["status"] = copy.deepcopy(current["status"])
    return out


def same_content(current: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    return _content(current) == _content(manifest)


def with_status(current: Mapping[str, Any], status: Mapping[str, Any], revision: int) -> Manifest:
    out = copy.deepcopy(dict(current))
    out["status"] = copy.deepcopy(dict(status))
    out["metadata"]["resourceVersion"] = str(revision)
    return out


def parse_selector(selector: str | None) -> list[tuple[str, str, str]]:
    """Equality-based label selectors as kubectl takes them: `a=b,c!=d,e` (e: the label exists)."""
    if not selector:
        return []
    terms: list[tuple[str, str, str]] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            terms.append((k.strip(), "!=", v.strip()))
        elif "==" in term:
            k, v = term.split("==", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif "=" in term:
            k, v = term.split("=", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif term.startswith("!"):
            terms.append((term[1:].strip(), "!", ""))
        else:
            terms.append((term, "exists", ""))
        if not terms[-1][0]:
            raise UsageError(f"label selector {selector!r}: empty label name in {term!r}")
    return terms


def matches_selector(manifest: Mapping[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    for key, op, value in terms:
        present = key in labels
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and present and labels.get(key) == value:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True
