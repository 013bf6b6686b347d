"""A small synchronous client for etcd v3's JSON gateway (`/v3/kv/*`, `/v3/watch`), standard library only.

etcd (3.4 and later) serves a grpc-gateway on its client URLs that maps every KV RPC to `POST /v3/...` with
JSON bodies: keys and values base64, int64 fields as decimal strings, zero values omitted. Using it keeps
shiftroute free of a gRPC stack (see store/etcd.py for why).

Failure handling, the part a client library would otherwise own:
- endpoints are tried in turn, starting with the last one that answered (sticky, as etcd's own client);
- every request has a deadline; a call never blocks longer than the deadline it was given;
- reads are retried on another endpoint until the deadline; a write that failed *after* it was sent may or
  may not have been applied, so it raises `AmbiguousWriteError` and the caller decides (store/etcd.py
  retries its compare-and-swap and checks whether its own value is the one stored).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from shiftroute.errors import StoreError, StoreUnavailableError

JSON = dict[str, Any]

# grpc codes the gateway returns when the cluster, not the request, is the problem: UNKNOWN carries
# "context deadline exceeded", DEADLINE_EXCEEDED and UNAVAILABLE carry "no leader", "request timed out",
# "leader changed".
_UNAVAILABLE_CODES = frozenset({2, 4, 14})
_OUT_OF_RANGE = 11  # "required revision has been compacted" / "is a future revision"
_BACKOFF_MAX = 0.5
# How long a call keeps retrying when no member accepts a connection at all (etcdctl's --dial-timeout).
DIAL_TIMEOUT = 2.0


class AmbiguousWriteError(StoreUnavailableError):
    """A write was sent but no answer came back: it may or may not have been applied."""

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems = dict(problems or {})


class RevisionCompactedError(StoreError):
    """A read or compaction named a revision etcd no longer keeps."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's `clientv3.GetPrefixRangeEnd`)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int

    @classmethod
    def from_json(cls, kv: JSON) -> KeyValue:
        return cls(
            unb64(kv.get("key")),
            unb64(kv.get("value")),
            int(kv.get("create_revision") or 0),
            int(kv.get("mod_revision") or 0),
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    more: bool
    revision: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[JSON]


def range_result(body: JSON) -> RangeResult:
    kvs = [KeyValue.from_json(kv) for kv in body.get("kvs") or []]
    return RangeResult(kvs, bool(body.get("more")), int((body.get("header") or {}).get("revision") or 0))


class _Sent(Exception):
    """Internal: the transport failed after the request left (the outcome is unknown)."""


class EtcdClient:
    """Thread-safe: each request borrows a keep-alive connection from a small per-endpoint pool."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        tls: ssl.SSLContext | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = list(endpoints)
        self.tls = tls
        self.request_timeout = request_timeout
        self._preferred = 0
        self._idle: dict[int, list[http.client.HTTPConnection]] = {i: [] for i in range(len(endpoints))}
        self._lock = threading.Lock()

    def name(self, index: int) -> str:
        host, port = self.endpoints[index]
        return f"{host}:{port}"

    @property
    def names(self) -> str:
        return ",".join(self.name(i) for i in range(len(self.endpoints)))

    # -- connections -----------------------------------------------------------------------------------

    def connect(self, index: int, timeout: float) -> http.client.HTTPConnection:
        host, port = self.endpoints[index]
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self.tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        return conn

    def _borrow(self, index: int, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            pool = self._idle[index]
            conn = pool.pop() if pool else None
        if conn is None:
            return self.connect(index, timeout)
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _give_back(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle[index].append(conn)

    def close(self) -> None:
        with self._lock:
            pools = [conn for pool in self._idle.values() for conn in pool]
            for pool in self._idle.values():
                pool.clear()
        for conn in pools:
            conn.close()

    def order(self) -> list[int]:
        """Endpoints to try, the last one that answered first."""
        start = self._preferred
        return [(start + i) % len(self.endpoints) for i in range(len(self.endpoints))]

    # -- requests --------------------------------------------------------------------------------------

    def _post_once(self, index: int, path: str, payload: bytes, timeout: float) -> tuple[int, JSON]:
        """One request on one endpoint. OSError before sending; `_Sent` when the answer was lost."""
        conn = self._borrow(index, timeout)
        try:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        except (OSError, http.client.HTTPException):
            # A reused keep-alive connection the server had closed fails here, before etcd saw anything.
            conn.close()
            conn = self.connect(index, timeout)
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        try:
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _Sent(str(exc) or type(exc).__name__) from None
        self._give_back(index, conn)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Sent(f"HTTP {resp.status}: not JSON: {raw[:100]!r}") from None
        return resp.status, body if isinstance(body, dict) else {}

    def call(self, path: str, body: JSON, *, deadline: float, write: bool = False) -> JSON:
        """POST to the first endpoint that answers before `deadline`; etcd errors become store errors."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        problems: dict[str, str] = {}
        delay = 0.02
        started = time.monotonic()
        while True:
            refused = 0
            for index in self.order():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.unavailable(problems)
                name = self.name(index)
                try:
                    status, answer = self._post_once(
                        index, path, payload, min(self.request_timeout, remaining)
                    )
                except OSError as exc:
                    problems[name] = _describe(exc)
                    refused += 1
                    continue
                except _Sent as exc:
                    problems[name] = f"no answer ({exc})"
                    if write:
                        self._preferred = (index + 1) % len(self.endpoints)  # the retry goes elsewhere
                        raise AmbiguousWriteError(self._message(problems, ambiguous=True), problems) from None
                    continue
                if status == 200:
                    self._preferred = index
                    return answer
                code = int(answer.get("code") or 0)
                message = str(answer.get("message") or answer.get("error") or f"HTTP {status}")
                if code == _OUT_OF_RANGE and "compacted" in message:
                    raise RevisionCompactedError(f"etcd at {name}: {message}")
                if code not in _UNAVAILABLE_CODES and status not in (502, 503, 504):
                    raise StoreError(f"etcd at {name}: {message}")
                problems[name] = message
                if write:
                    # "request timed out" and "leader changed" are given after the proposal was made.
                    self._preferred = (index + 1) % len(self.endpoints)
                    raise AmbiguousWriteError(self._message(problems, ambiguous=True), problems)
            if refused == len(self.endpoints) and time.monotonic() - started >= DIAL_TIMEOUT:
                # Nobody listens anywhere (a wrong URL, or every member down): say so now rather than at
                # the deadline, which is there for members that answer slowly.
                raise self.unavailable(problems)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _BACKOFF_MAX)

    def unavailable(self, problems: dict[str, str], *, ambiguous: bool = False) -> StoreUnavailableError:
        """The error a caller sees once the deadline passed, with each member's state to say why."""
        return StoreUnavailableError(self._message(problems, self.diagnose(), ambiguous=ambiguous))

    def diagnose(self, timeout: float = 0.5) -> dict[str, str]:
        """Each member's own view (maintenance/status is answered locally, even without a leader)."""
        states = {}
        for index in range(len(self.endpoints)):
            try:
                leader = int(self.status(index, timeout).get("leader") or 0)
            except (OSError, http.client.HTTPException, _Sent) as exc:
                states[self.name(index)] = _describe(exc) if isinstance(exc, OSError) else "no answer"
                continue
            states[self.name(index)] = "has a leader" if leader else "no leader"
        return states

    def _message(
        self, problems: dict[str, str], states: dict[str, str] | None = None, *, ambiguous: bool = False
    ) -> str:
        views = states or {}
        if any(v == "no leader" for v in views.values()):
            what = "no quorum"
        elif views and all(v != "has a leader" for v in views.values()):
            what = "unreachable"
        elif views:
            what = "not answering in time"
        else:
            what = "unreachable or without quorum"
        names = [n for n in (self.name(i) for i in range(len(self.endpoints))) if n in problems or n in views]
        details = "; ".join(_detail(name, views.get(name), problems.get(name)) for name in names)
        text = f"etcd at {self.names}: {what} ({details or 'no answer in time'})"
        if ambiguous:
            text += "; the write may or may not have been applied: get the object to check"
        return text + "; retry when the cluster is healthy"

    # -- typed calls -----------------------------------------------------------------------------------

    def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        deadline: float,
        revision: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> RangeResult:
        body: JSON = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if count_only:
            body["count_only"] = True
        return range_result(self.call("/v3/kv/range", body, deadline=deadline))

    def txn(
        self, compare: list[JSON], success: list[JSON], failure: list[JSON], *, deadline: float
    ) -> TxnResult:
        writes = any("request_range" not in op for op in success + failure)
        answer = self.call(
            "/v3/kv/txn",
            {"compare": compare, "success": success, "failure": failure},
            deadline=deadline,
            write=writes,
        )
        return TxnResult(
            bool(answer.get("succeeded")),
            int((answer.get("header") or {}).get("revision") or 0),
            list(answer.get("responses") or []),
        )

    def compact(self, revision: int, *, deadline: float) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision)}, deadline=deadline)

    def answers(self, index: int, timeout: float) -> bool:
        """Whether the member answers at all within `timeout` (maintenance/status, answered locally)."""
        try:
            self.status(index, timeout)
        except (OSError, http.client.HTTPException, _Sent):
            return False
        return True

    def status(self, index: int, timeout: float = 1.0) -> JSON:
        status, body = self._post_once(index, "/v3/maintenance/status", b"{}", timeout)
        if status != 200:
            raise OSError(f"HTTP {status}: {body.get('message') or body}")
        return body

    def open_watch(self, create: JSON, start: int, idle_timeout: float) -> WatchStream:
        """Open `/v3/watch` on the first endpoint that takes it, trying `start` first."""
        payload = json.dumps({"create_request": create}, separators=(",", ":")).encode()
        problems: dict[str, str] = {}
        for i in range(len(self.endpoints)):
            index = (start + i) % len(self.endpoints)
            try:
                conn = self.connect(index, self.request_timeout)
            except OSError as exc:
                problems[self.name(index)] = _describe(exc)
                continue
            try:
                _keepalive(conn.sock)
                conn.request("POST", "/v3/watch", body=payload, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                problems[self.name(index)] = str(exc) or type(exc).__name__
                continue
            # Between changes the stream is silent: TCP keepalive finds a dead peer within seconds, the
            # idle timeout a hung one (the caller then resumes from its last revision on another member).
            if conn.sock is not None:
                conn.sock.settimeout(idle_timeout)
            return WatchStream(index, self.name(index), conn, resp)
        raise StoreUnavailableError(self._message(problems))


class WatchStream:
    """One open `/v3/watch` response, read by one thread; `interrupt()` from any other thread ends a
    blocked read at once (closing the connection under the reader instead would break http.client)."""

    def __init__(
        self, index: int, name: str, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
    ):
        self.index = index
        self.name = name
        self._conn = conn
        self._resp = resp

    def __iter__(self) -> Iterator[JSON]:
        """One JSON object per line, `{"result": ...}` or `{"error": ...}`; ends at EOF."""
        while True:
            line = self._resp.readline()
            if not line:
                return
            if line.strip():
                yield dict(json.loads(line))

    def interrupt(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already disconnected
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """From the reading thread only."""
        self._conn.close()


def _keepalive(sock: socket.socket | None) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # Linux names; other systems keep their defaults (minutes) and rely on the idle timeout.
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


# -- compare and request builders (the gateway's JSON names for etcdserverpb messages) ----------------------


def compare_mod(key: bytes, mod_revision: int) -> JSON:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def compare_absent(key: bytes) -> JSON:
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def op_put(key: bytes, value: bytes) -> JSON:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def op_delete(key: bytes) -> JSON:
    return {"request_delete_range": {"key": b64(key)}}


def op_get(key: bytes) -> JSON:
    return {"request_range": {"key": b64(key)}}


def _describe(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__


def _detail(name: str, state: str | None, problem: str | None) -> str:
    parts = [p for p in (state, problem) if p and p != "has a leader"]
    if state == "has a leader" and problem:
        parts.insert(0, "up")
    return f"{name}: {', '.join(dict.fromkeys(parts)) or 'up'}"
