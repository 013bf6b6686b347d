"""The distributed store: etcd v3, with the same semantics as the embedded SQLite store.

Mapping (issue 6):
- an object is a JSON value under `<prefix><kind>/<namespace>/<name>` (default prefix `/shiftroute/`);
- `metadata.resourceVersion` is the key's mod_revision. It is not stored in the value (a value cannot know
  the revision its own write will get); it is filled in from mod_revision on every read and event;
- create is a txn on `create_revision == 0`; update, delete and update_status are read-modify-write txns on
  `mod_revision == <as read>`, so status updates never lose a concurrent spec change; apply is one txn over
  every object (all or nothing), retried from a fresh read a bounded number of times when it loses a race;
- list reads every page at the revision of its first page and returns that revision; watch from
  revision + 1 then loses nothing and repeats nothing (store/etcd_watch.py).

Client: etcd's own JSON gateway (`POST /v3/kv/range|txn`, `/v3/watch`), served on the client URL by every
etcd since 3.4, through the standard library's http.client (store/etcd_client.py). Why not a PyPI client:
the Store interface is synchronous (the router drives it from a thread), so an asyncio client would need
a second event loop just to be called; the gRPC clients (etcd3, aetcd) pull in grpcio and pin protobuf
versions, and python-etcd3 is no longer maintained. The gateway is part of the server, so it never lags
the server's API; what we give up (multiplexed watches, gRPC keepalive) is replaced by one HTTP stream per
watch, TCP keepalive and an idle reopen.

Every call has a deadline (`timeout`, default 10 s). When no member answers in time or quorum is lost the
call raises StoreUnavailableError naming each member's state; a write that was sent but not answered is
retried, and if the retry's compare fails because the store already holds exactly the value we wrote, it
was ours and succeeds (so an ambiguous create never turns into a false AlreadyExists).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from shiftroute.api.objects import Manifest, ObjectKey
from shiftroute.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    UsageError,
)
from shiftroute.store.base import (
    ApplyResult,
    ApplyResults,
    ListResult,
    ManifestList,
    StatusResults,
    StatusUpdate,
    key_of,
    matches_selector,
    parse_selector,
    prepare_create,
    prepare_update,
    same_content,
    with_status,
)
from shiftroute.store.etcd_client import (
    JSON,
    AmbiguousWriteError,
    EtcdClient,
    KeyValue,
    RevisionCompactedError,
    compare_absent,
    compare_mod,
    op_delete,
    op_get,
    op_put,
    prefix_end,
    range_result,
)
from shiftroute.store.etcd_watch import EtcdWatch
from shiftroute.store.sqlite import _check_version, _kind_label, _not_found

DEFAULT_PREFIX = "/shiftroute/"
DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 10.0
TLS_ENV = {"cacert": "SHIFTROUTE_ETCD_CACERT", "cert": "SHIFTROUTE_ETCD_CERT", "key": "SHIFTROUTE_ETCD_KEY"}

# Read-modify-write attempts before a call gives up with ConflictError (each lost attempt means another
# writer changed the same object in between, so a handful only runs out under a write storm).
MAX_CAS_ATTEMPTS = 16
_PAGE = 500
# etcd's default --max-txn-ops; reads of many keys are split into txns of this size.
_MAX_TXN_OPS = 128


@dataclass(frozen=True, slots=True)
class _Write:
    """One key of a txn: what it must still be (mod_revision, 0 = absent) and what becomes of it."""

    key: bytes
    expect: int
    action: Literal["put", "delete", "check"]
    value: bytes = b""


_KeyValues = list[KeyValue]
_Change = Callable[[Manifest, KeyValue], tuple[Manifest, _Write]]


def parse_url(url: str) -> tuple[list[tuple[str, int]], str, bool]:
    """`etcd[s]://host[:port][,host[:port]...][/prefix/]` -> (endpoints, prefix, tls)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise UsageError(f"--store {url}: an etcd store URL starts with etcd:// or etcds://")
    hosts, slash, path = rest.partition("/")
    endpoints = [_endpoint(url, part.strip()) for part in hosts.split(",") if part.strip()]
    if not endpoints:
        raise UsageError(f"--store {url}: no etcd host (use etcd://127.0.0.1:2379)")
    prefix = "/" + unquote(path) if slash and path else DEFAULT_PREFIX
    return endpoints, prefix if prefix.endswith("/") else prefix + "/", scheme == "etcds"


def _endpoint(url: str, text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:2379
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise UsageError(f"--store {url}: empty host in {text!r}")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--store {url}: bad port in {text!r}")
    return host, int(port)


def tls_context(cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """Server verification against `cacert` (or the system CAs) and an optional client certificate."""
    if key and not cert:
        raise UsageError("etcd TLS: --etcd-key needs --etcd-cert")
    try:
        context = ssl.create_default_context(cafile=cacert)
        if cert:
            context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise UsageError(f"etcd TLS: {exc.filename}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"etcd TLS: cannot load certificates: {exc}") from None
    return context


class EtcdStore:
    def __init__(
        self,
        url: str,
        *,
        etcd_cacert: str | None = None,
        etcd_cert: str | None = None,
        etcd_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        endpoints, self.prefix, use_tls = parse_url(url)
        given = {"cacert": etcd_cacert, "cert": etcd_cert, "key": etcd_key}
        if not use_tls and any(given.values()):
            raise UsageError(f"--store {url}: TLS certificates need an etcds:// URL")
        context = None
        if use_tls:
            files = {name: value or os.environ.get(TLS_ENV[name]) or None for name, value in given.items()}
            context = tls_context(files["cacert"], files["cert"], files["key"])
        self.url = url
        self.timeout = timeout
        self._client = EtcdClient(endpoints, tls=context, request_timeout=min(5.0, timeout))
        self._root = self.prefix.encode()
        self._watches: list[EtcdWatch] = []

    # -- keys and values -------------------------------------------------------------------------------

    def _key(self, kind: str, namespace: str, name: str) -> bytes:
        return f"{self.prefix}{kind}/{namespace}/{name}".encode()

    def _key_of(self, manifest: Mapping[str, Any]) -> tuple[ObjectKey, bytes]:
        key = key_of(manifest)
        return key, self._key(key.kind, key.namespace, key.name)

    def _decode(self, kv: KeyValue) -> Manifest:
        if not kv.value:
            # A DELETE event whose previous value etcd no longer has: the key still names the object.
            kind, _, rest = kv.key.decode()[len(self.prefix) :].partition("/")
            namespace, _, name = rest.partition("/")
            return {"kind": kind, "metadata": {"namespace": namespace, "name": name}}
        manifest = json.loads(kv.value)
        if not isinstance(manifest, dict):
            raise ValueError(f"{kv.key!r} does not hold an object")
        manifest.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return manifest

    @staticmethod
    def _encode(manifest: Mapping[str, Any]) -> bytes:
        meta = {k: v for k, v in (manifest.get("metadata") or {}).items() if k != "resourceVersion"}
        return json.dumps({**manifest, "metadata": meta}, separators=(",", ":")).encode()

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout

    # -- reads -----------------------------------------------------------------------------------------

    def revision(self) -> int:
        return self._client.range(self._root, count_only=True, deadline=self._deadline()).revision

    def _get_kv(self, key: bytes, deadline: float) -> KeyValue | None:
        kvs = self._client.range(key, deadline=deadline).kvs
        return kvs[0] if kvs else None

    def get(self, kind: str, namespace: str, name: str) -> Manifest:
        kv = self._get_kv(self._key(kind, namespace, name), self._deadline())
        if kv is None:
            raise _not_found(kind, namespace, name)
        return self._decode(kv)

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> ListResult:
        terms = parse_selector(selector)
        start = f"{self.prefix}{kind}/" + ("" if namespace is None else f"{namespace}/")
        deadline = self._deadline()
        for _ in range(MAX_CAS_ATTEMPTS):
            try:
                kvs, revision = self._range_all(start.encode(), deadline)
            except RevisionCompactedError:
                continue  # compacted between two pages: read again at a newer revision
            items = [self._decode(kv) for kv in kvs]
            # SQLite's order (namespace, then name); etcd's byte order differs ("a-b/" < "a/").
            items.sort(key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"].get("name", "")))
            return ListResult([m for m in items if matches_selector(m, terms)], revision)
        raise StoreUnavailableError(f"etcd at {self._client.names}: history compacted under every list")

    def _range_all(self, prefix: bytes, deadline: float) -> tuple[_KeyValues, int]:
        """Every key under `prefix`, page by page, all pages at the first page's revision."""
        kvs: _KeyValues = []
        end, key, revision = prefix_end(prefix), prefix, 0
        while True:
            page = self._client.range(key, end, revision=revision, limit=_PAGE, deadline=deadline)
            revision = revision or page.revision
            kvs.extend(page.kvs)
            if not page.more or not page.kvs:
                return kvs, revision
            key = page.kvs[-1].key + b"\0"

    def _read_many(self, keys: Sequence[bytes], deadline: float) -> dict[bytes, KeyValue | None]:
        found: dict[bytes, KeyValue | None] = dict.fromkeys(keys)
        for i in range(0, len(keys), _MAX_TXN_OPS):
            chunk = [op_get(k) for k in keys[i : i + _MAX_TXN_OPS]]
            for response in self._client.txn([], chunk, [], deadline=deadline).responses:
                for kv in range_result(response.get("response_range") or {}).kvs:
                    found[kv.key] = kv
        return found

    # -- the one write path ----------------------------------------------------------------------------

    def _commit(self, writes: Sequence[_Write], deadline: float) -> int | None:
        """Run one txn: the revision it wrote at, or None when a compare failed (someone else won)."""
        compare: list[JSON] = [
            compare_mod(w.key, w.expect) if w.expect else compare_absent(w.key) for w in writes
        ]
        success = [
            op_put(w.key, w.value) if w.action == "put" else op_delete(w.key)
            for w in writes
            if w.action != "check"
        ]
        ambiguous: AmbiguousWriteError | None = None
        while True:
            try:
                result = self._client.txn(compare, success, [], deadline=deadline)
            except AmbiguousWriteError as exc:
                ambiguous = exc
                if time.monotonic() >= deadline:
                    raise self._client.unavailable(exc.problems, ambiguous=True) from None
                continue  # the same compare makes a second try safe; _ours tells who won
            except StoreUnavailableError:
                if ambiguous is not None:
                    raise self._client.unavailable(ambiguous.problems, ambiguous=True) from None
                raise
            if result.succeeded:
                return result.revision
            return self._ours(writes, deadline) if ambiguous is not None else None

    def _ours(self, writes: Sequence[_Write], deadline: float) -> int | None:
        """After an unanswered try and a failed retry: did the first try apply? Yes if, at the revision
        where each key first changed after the version we compared on, it holds exactly what we wrote, and
        that revision is the same for every key (one txn). Our values carry a fresh uid or the exact new
        content, so another writer matching all of them byte for byte wrote the same thing anyway.

        Not "the key holds what we wrote now": with router replicas, a router writes its status entry
        into a new route within milliseconds, before our retry, and a create would turn into a false
        AlreadyExists (an update into a false conflict)."""
        current = self._read_many([w.key for w in writes], deadline)
        revisions = set()
        try:
            for w in writes:
                kv = current[w.key]
                if w.action == "delete" and kv is not None:
                    return None
                if w.action != "put":
                    continue
                revision = self._applied_at(w, kv, deadline)
                if revision is None:
                    return None
                revisions.add(revision)
        except RevisionCompactedError:
            return None  # the history that would tell is gone: say what is certain, someone else won
        return max(revisions) if len(revisions) == 1 else (None if revisions else self.revision())

    def _applied_at(self, write: _Write, kv: KeyValue | None, deadline: float) -> int | None:
        """The revision at which `write` was applied, or None when the key's next version is not ours."""
        if kv is not None and kv.value == write.value:
            return kv.mod_revision  # unchanged since
        if write.expect == 0:
            # A create: this incarnation of the key began at its create_revision.
            revision = kv.create_revision if kv is not None else 0
        else:
            revision = self._next_change(write.key, write.expect, kv, deadline)
        if not revision:
            return None
        then = self._client.range(write.key, revision=revision, deadline=deadline).kvs
        ours = bool(then) and then[0].mod_revision == revision and then[0].value == write.value
        return revision if ours else None

    def _next_change(self, key: bytes, expect: int, kv: KeyValue | None, deadline: float) -> int:
        """The first revision after `expect` at which `key` no longer had mod_revision `expect`: a binary
        search over the key's history (a handful of reads, only after an unanswered write)."""
        low, high = expect + 1, kv.mod_revision if kv is not None else self.revision()
        while low < high:
            middle = (low + high) // 2
            then = self._client.range(key, revision=middle, deadline=deadline).kvs
            if then and then[0].mod_revision == expect:
                low = middle + 1
            else:
                high = middle
        return low

    def _cas_loop(self, kind: str, namespace: str, name: str, change: _Change) -> Manifest:
        """Read, let `change(current, kv)` decide, commit on mod_revision; again on a lost race."""
        key = self._key(kind, namespace, name)
        deadline = self._deadline()
        for _ in range(MAX_CAS_ATTEMPTS):
            kv = self._get_kv(key, deadline)
            if kv is None:
                raise _not_found(kind, namespace, name)
            current = self._decode(kv)
            result, write = change(current, kv)
            revision = self._commit([write], deadline)
            if revision is not None:
                if write.action == "put":
                    result["metadata"]["resourceVersion"] = str(revision)
                return dict(result)
        raise _busy(kind, name)

    # -- writes ----------------------------------------------------------------------------------------

    def create(self, manifest: Manifest) -> Manifest:
        key, path = self._key_of(manifest)
        stored = prepare_create(manifest, 0)
        revision = self._commit([_Write(path, 0, "put", self._encode(stored))], self._deadline())
        if revision is None:
            where = f' in namespace "{key.namespace}"' if key.namespace else ""
            raise AlreadyExistsError(f'{_kind_label(key.kind)} "{key.name}" already exists{where}')
        stored["metadata"]["resourceVersion"] = str(revision)
        return stored

    def update(self, manifest: Manifest) -> Manifest:
        """Replace an object; compare-and-swap when `metadata.resourceVersion` is set."""
        key, path = self._key_of(manifest)
        expected = (manifest.get("metadata") or {}).get("resourceVersion")

        def change(current: Manifest, kv: KeyValue) -> tuple[Manifest, _Write]:
            _check_version(current, expected)
            stored = prepare_update(current, manifest, 0)
            return stored, _Write(path, kv.mod_revision, "put", self._encode(stored))

        return self._cas_loop(key.kind, key.namespace, key.name, change)

    def update_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> Manifest:
        def change(current: Manifest, kv: KeyValue) -> tuple[Manifest, _Write]:
            _check_version(current, resource_version)
            stored = with_status(current, status, 0)
            return stored, _Write(kv.key, kv.mod_revision, "put", self._encode(stored))

        return self._cas_loop(kind, namespace, name, change)

    def update_statuses(self, updates: Sequence[StatusUpdate]) -> StatusResults:
        """One compare-and-swap txn per object: etcd has no store-wide write lock for a batch to spare
        (SQLite's reason to batch), and a txn over all of them would fail whole on one changed object."""
        results: StatusResults = []
        for u in updates:
            try:
                results.append(self.update_status(u.kind, u.namespace, u.name, u.status, u.resource_version))
            except (NotFoundError, ConflictError) as exc:
                results.append(exc)
        return results

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> Manifest:
        def change(current: Manifest, kv: KeyValue) -> tuple[Manifest, _Write]:
            _check_version(current, resource_version)
            return current, _Write(kv.key, kv.mod_revision, "delete")

        return self._cas_loop(kind, namespace, name, change)

    def apply(self, manifests: Iterable[Manifest]) -> ApplyResults:
        """Create or update every object in one txn: all of them change, or none does.

        As with SQLite, a resourceVersion in an applied manifest is ignored; the txn compares every key's
        mod_revision as read (unchanged ones too, so "unchanged" is true at the txn's revision) and the
        whole apply starts again from a fresh read when another writer got in between.
        """
        todo = [dict(m) for m in manifests]
        paths = list(dict.fromkeys(self._key_of(m)[1] for m in todo))
        deadline = self._deadline()
        for _ in range(MAX_CAS_ATTEMPTS):
            read = self._read_many(paths, deadline)
            results, final = self._plan_apply(todo, read)
            writes = [
                _Write(path, kv.mod_revision if kv else 0, "put" if path in final else "check",
                       self._encode(final[path]) if path in final else b"")
                for path, kv in read.items()
            ]  # fmt: skip
            if not final:
                return results
            revision = self._commit_apply(writes, deadline)
            if revision is not None:
                for result in results:
                    # Everything this txn wrote, including an "unchanged" repeat of an object created or
                    # configured earlier in the same apply, now has the txn's revision.
                    if self._key_of(result.manifest)[1] in final:
                        result.manifest["metadata"]["resourceVersion"] = str(revision)
                return results
        key = key_of(todo[0])
        raise _busy(key.kind, key.name, apply=True)

    def _commit_apply(self, writes: Sequence[_Write], deadline: float) -> int | None:
        try:
            return self._commit(writes, deadline)
        except StoreError as exc:
            if "too many operations" not in str(exc):
                raise
            raise StoreError(
                f"apply of {len(writes)} objects: etcd takes at most --max-txn-ops (default 128) objects in "
                "one transaction; nothing was changed: apply them in smaller batches"
            ) from None

    def _plan_apply(
        self, todo: ManifestList, read: Mapping[bytes, KeyValue | None]
    ) -> tuple[ApplyResults, dict[bytes, Manifest]]:
        """What apply would store, object by object in order (a name given twice builds on itself)."""
        state = {path: (self._decode(kv) if kv else None) for path, kv in read.items()}
        final: dict[bytes, Manifest] = {}
        results: ApplyResults = []
        for manifest in todo:
            path = self._key_of(manifest)[1]
            current = state[path]
            if current is None:
                stored = prepare_create(manifest, 0)
                results.append(ApplyResult("created", stored))
            elif same_content(current, manifest):
                results.append(ApplyResult("unchanged", current))
                continue
            else:
                stored = prepare_update(current, manifest, 0)
                results.append(ApplyResult("configured", stored))
            state[path] = final[path] = copy.deepcopy(stored)
        return results, final

    # -- history ---------------------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Forget history up to and including `revision`, as SqliteStore does: etcd keeps the revisions from
        its compact revision on, so that is `revision + 1`. etcd cannot compact past its current revision;
        asked to, this keeps the current revision's events (SQLite would drop them too)."""
        deadline = self._deadline()
        target = min(revision + 1, self.revision())
        with contextlib.suppress(RevisionCompactedError):  # already compacted further
            self._client.compact(target, deadline=deadline)

    def watch(self, kinds: Collection[str], from_revision: int) -> EtcdWatch:
        kinds = tuple(kinds)
        if from_revision <= 0:
            from_revision = self.revision() + 1  # etcd's own meaning of 0: changes from now on
        # One kind: watch only its keys; several: the whole prefix, filtered, in one revision order.
        start = f"{self.prefix}{kinds[0]}/".encode() if len(kinds) == 1 else self._root
        watch = EtcdWatch(self._client, start, prefix_end(start), kinds, from_revision, self._decode)
        self._watches = [w for w in self._watches if not w.closed] + [watch]
        return watch

    def close(self) -> None:
        for watch in self._watches:
            watch.close()
        self._watches.clear()
        self._client.close()


def _busy(kind: str, name: str, apply: bool = False) -> ConflictError:
    what = "apply" if apply else f'{_kind_label(kind)} "{name}"'
    return ConflictError(
        f"{what}: lost {MAX_CAS_ATTEMPTS} compare-and-swap races in a row to other writers; retry"
    )
