"""The immutable routing table the data plane reads (ARCHITECTURE.md: publish by replacing).

Everything per-request work would otherwise repeat is done here once: lowercased host indexes, paths
sorted most specific first, backend SSL contexts, cookie names and values, header blocks.
A published table is never mutated; a connection takes `holder.current` once and keeps it.
"""

from __future__ import annotations

import importlib.machinery
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shiftroute.api.annotations import IPNetwork

# Compiled by setup.py, the classes below are extension types (table.pxd) whose fields Python code may
# read but never assign, so the fields derived in `__post_init__` are assigned there directly, in C. As
# Python sources they are frozen dataclasses, set through `object.__setattr__` as the dataclasses
# documentation prescribes. (Compiled, `slots=True` is not accepted and not needed: an extension type
# has no instance dictionary.)
_COMPILED = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))  # not .py, .pyc


@dataclass(frozen=True)
class Server:
    """One endpoint address of one service port, as HAProxy would have one `server` line."""

    id: str  # routes.md §5: pod:<pod>:<svc>:<port name>:<ip>:<port> or ept:<svc>:<port name>:<ip>:<port>
    cookie_value: str  # md5 hex of id: deterministic, so replicas agree
    address: str
    port: int
    service: str
    weight: float  # the service's weight shared among its endpoints
    # `address:port` for logs, made once (the data plane names the endpoint of every request it logs).
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        address = f"[{self.address}]" if ":" in self.address else self.address
        label = f"{address}:{self.port}"
        if _COMPILED:
            self.label = label  # type: ignore[misc]
        else:
            object.__setattr__(self, "label", label)


@dataclass(frozen=True)
class RateLimits:
    concurrent_tcp: int | None = None
    rate_tcp: int | None = None  # per 3 s
    rate_http: int | None = None  # per 10 s

    @property
    def any(self) -> bool:
        return bool(self.concurrent_tcp or self.rate_tcp or self.rate_http)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    server: float = 30.0  # backend inactivity (annotation `timeout`)
    client: float = 30.0
    tunnel: float = 3600.0  # annotation `timeout-tunnel`


@dataclass(frozen=True, eq=False)
class Backend:
    """A compiled, admitted route: where its traffic goes and what the router does on the way."""

    namespace: str
    name: str
    host: str  # lowercased, no trailing dot; for wildcard routes the route's own host
    wildcard: bool
    path: str  # "" matches everything
    termination: str  # "", "edge", "reencrypt", "passthrough"
    insecure_policy: str  # "None" | "Allow" | "Redirect"
    servers: tuple[Server, ...]
    balance: str
    cookie_name: str | None  # None: cookies off (passthrough, or disabled)
    cookie_suffix: bytes  # `; path=/; HttpOnly[; Secure; SameSite=X]`
    servers_by_cookie: Mapping[str, Server]
    backend_context: ssl.SSLContext | None  # reencrypt: verifies the endpoint
    # reencrypt with the service CA: send SNI `<service>.<namespace>.svc` and verify that name
    verify_service_hostname: bool
    serving_context: ssl.SSLContext | None  # the route's own certificate, when it has one
    timeouts: Timeouts = field(default_factory=Timeouts)
    hsts: bytes | None = None  # the Strict-Transport-Security value
    forwarded_policy: str = "append"
    rewrite_target: str | None = None
    request_actions: tuple[tuple[bytes, bytes | None], ...] = ()  # (lowercase name, value or None=delete)
    response_actions: tuple[tuple[bytes, bytes | None], ...] = ()
    allowlist: tuple[IPNetwork, ...] | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_conn_per_server: int | None = None
    health_interval: float | None = None  # active checks when there is more than one server
    generation: int = 0
    age_order: tuple[float, str, str, str] = (0.0, "", "", "")  # the route's (routes.md §3)
    certificate_expiry: datetime | None = None  # of the route's own certificate (routes.md §3: warn, metrics)
    # Made once here rather than on every request: `namespace/name` for logs and counters, each server's
    # whole Set-Cookie value (routes.md §5), and `<cookie name>=` as it is looked for in requests.
    label: str = field(init=False, repr=False)
    set_cookie: Mapping[str, bytes] = field(init=False, repr=False)
    cookie_prefix: bytes | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        label = f"{self.namespace}/{self.name}"
        cookie_prefix = self.cookie_name.encode() + b"=" if self.cookie_name else None
        cookies: dict[str, bytes] = {}
        if self.cookie_name:
            name = self.cookie_name.encode()
            for server in self.servers:
                cookies[server.id] = b"%b=%b%b" % (name, server.cookie_value.encode(), self.cookie_suffix)
        if _COMPILED:
            self.label = label  # type: ignore[misc]
            self.cookie_prefix = cookie_prefix  # type: ignore[misc]
            self.set_cookie = cookies  # type: ignore[misc]
        else:
            object.__setattr__(self, "label", label)
            object.__setattr__(self, "cookie_prefix", cookie_prefix)
            object.__setattr__(self, "set_cookie", cookies)

    def backend_hostname(self, server: Server) -> str | None:
        return f"{server.service}.{self.namespace}.svc" if self.verify_service_hostname else None

    @property
    def is_tls(self) -> bool:
        return self.termination in ("edge", "reencrypt")

    def matches_path(self, path: str) -> bool:
        """routes.md §4: prefix match on `/` boundaries; `/foo` matches `/foo` and `/foo/x`, not `/foobar`."""
        prefix = self.path
        if not prefix or prefix == "/":
            return True
        if not path.startswith(prefix):
            return False
        return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


def _path_order(backend: Backend) -> tuple[int, str]:
    # Most specific (longest) prefix first; ties are impossible for admitted routes on one host.
    return (-len(backend.path.rstrip("/")), backend.path)


def _index_key(backend: Backend) -> str:
    return parent_domain(backend.host) if backend.wildcard else backend.host


def _set_certificate(certs: dict[str, ssl.SSLContext], key: str, members: Iterable[Backend]) -> None:
    """The certificate served for a host is the oldest route's own one (deterministic on every replica)."""
    owners = [b for b in members if b.serving_context is not None]
    if owners:
        context = min(owners, key=lambda b: b.age_order).serving_context
        assert context is not None
        certs[key] = context


def _by_path(backends: list[Backend]) -> tuple[Backend, ...]:
    # Most hosts have one route: nothing to sort (this runs for 10 000 hosts on every change).
    return (backends[0],) if len(backends) == 1 else tuple(sorted(backends, key=_path_order))


def parent_domain(host: str) -> str:
    return host.split(".", 1)[1] if "." in host else ""


def passthrough_for(table: RoutingTable, sni: str) -> Backend | None:
    """`table.match_passthrough(sni)` as a function: compiled (table.pxd), the HTTPS listener's call per
    connection is a C call and the lookups are C dictionary lookups, where the method was a Python call
    making a method call per dictionary."""
    exact = table.passthrough_exact
    found = exact.get(sni)
    if found is None:
        wildcard = table.passthrough_wildcard
        found = wildcard.get(parent_domain(sni))
    return found


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Lookups for the listeners. Hosts are lowercase with no port and no trailing dot."""

    http_exact: Mapping[str, tuple[Backend, ...]] = field(default_factory=dict)
    http_wildcard: Mapping[str, tuple[Backend, ...]] = field(default_factory=dict)  # key: parent domain
    passthrough_exact: Mapping[str, Backend] = field(default_factory=dict)
    passthrough_wildcard: Mapping[str, Backend] = field(default_factory=dict)
    certs_exact: Mapping[str, ssl.SSLContext] = field(default_factory=dict)
    certs_wildcard: Mapping[str, ssl.SSLContext] = field(default_factory=dict)
    backends: tuple[Backend, ...] = ()
    revision: int = 0

    @staticmethod
    def build(backends: list[Backend], revision: int) -> RoutingTable:
        http: tuple[dict[str, list[Backend]], dict[str, list[Backend]]] = ({}, {})
        passthrough: tuple[dict[str, Backend], dict[str, Backend]] = ({}, {})
        for backend in backends:
            wild, key = backend.wildcard, _index_key(backend)
            if backend.termination == "passthrough":
                passthrough[wild][key] = backend
            else:
                http[wild].setdefault(key, []).append(backend)
        certs: tuple[dict[str, ssl.SSLContext], dict[str, ssl.SSLContext]] = ({}, {})
        for wild in (False, True):
            for key, members in http[wild].items():
                _set_certificate(certs[wild], key, members)
        return RoutingTable(
            http_exact={h: _by_path(bs) for h, bs in http[False].items()},
            http_wildcard={h: _by_path(bs) for h, bs in http[True].items()},
            passthrough_exact=passthrough[False],
            passthrough_wildcard=passthrough[True],
            certs_exact=certs[False],
            certs_wildcard=certs[True],
            backends=tuple(backends),
            revision=revision,
        )

    def with_changes(
        self, removed: list[Backend], added: list[Backend], backends: tuple[Backend, ...], revision: int
    ) -> RoutingTable:
        """A new table from this one: the indexes are copied (cheap, in C) and only the hosts that
        `removed` and `added` touch are rebuilt, so one route change among 10 000 costs little. The result
        equals `build()` of `backends`."""
        http = (dict(self.http_exact), dict(self.http_wildcard))
        passthrough = (dict(self.passthrough_exact), dict(self.passthrough_wildcard))
        certs = (dict(self.certs_exact), dict(self.certs_wildcard))
        gone = {id(b) for b in removed}
        touched: set[tuple[bool, str]] = set()
        for backend in removed:
            wild, key = backend.wildcard, _index_key(backend)
            if backend.termination == "passthrough":
                if passthrough[wild].get(key) is backend:
                    del passthrough[wild][key]
            else:
                touched.add((wild, key))
        arriving: dict[tuple[bool, str], list[Backend]] = {}
        for backend in added:
            wild, key = backend.wildcard, _index_key(backend)
            if backend.termination == "passthrough":
                passthrough[wild][key] = backend
            else:
                arriving.setdefault((wild, key), []).append(backend)
                touched.add((wild, key))
        for wild, key in touched:
            members = [b for b in http[wild].get(key, ()) if id(b) not in gone]
            members += arriving.get((wild, key), [])
            certs[wild].pop(key, None)
            if members:
                http[wild][key] = _by_path(members)
                _set_certificate(certs[wild], key, members)
            else:
                http[wild].pop(key, None)
        return RoutingTable(
            http_exact=http[False],
            http_wildcard=http[True],
            passthrough_exact=passthrough[False],
            passthrough_wildcard=passthrough[True],
            certs_exact=certs[False],
            certs_wildcard=certs[True],
            backends=backends,
            revision=revision,
        )

    def match_passthrough(self, sni: str) -> Backend | None:
        """routes.md §4 step 1: exact host, else a wildcard route for the parent domain."""
        return passthrough_for(self, sni)

    def serving_context(self, sni: str) -> ssl.SSLContext | None:
        """The route's own certificate by SNI (exact, then wildcard); None means the default one."""
        found = self.certs_exact.get(sni)
        if found is None:
            found = self.certs_wildcard.get(parent_domain(sni))
        return found

    def match_http(self, host: str, path: str) -> Backend | None:
        """routes.md §4 step 3: exact hosts before wildcard hosts; most specific path prefix wins."""
        candidates = self.http_exact.get(host)
        if candidates is not None:
            for backend in candidates:
                if backend.matches_path(path):
                    return backend
        candidates = self.http_wildcard.get(parent_domain(host))
        if candidates is not None:
            for backend in candidates:
                if backend.matches_path(path):
                    return backend
        return None


class TableHolder:
    """Publish by replacing: the writer swaps the reference, readers take `current` once."""

    __slots__ = ("current", "published")

    def __init__(self, table: RoutingTable | None = None) -> None:
        self.current = table or RoutingTable()
        self.published = table is not None

    def publish(self, table: RoutingTable) -> None:
        self.current = table
        self.published = True
