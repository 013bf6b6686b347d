"""compile(verdicts, services, endpoint slices, options) -> RoutingTable (ARCHITECTURE.md: pure, so every
replica builds the same table from the same store, and sticky cookies agree across replicas).

A Compiler keeps the Backends it built, keyed by what they were built from, so a change to one route out
of 10 000 rebuilds one Backend and re-indexes the rest (routes.md §7: a change lands in milliseconds).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from shiftroute.admission import Verdict
from shiftroute.api import annotations as ann
from shiftroute.api.objects import EndpointSlice, ObjectKey, Route, Service, TargetRef
from shiftroute.errors import PKIError
from shiftroute.pki.pem import load_certificates
from shiftroute.routing.contexts import backend_context, cached_server_context, insecure_backend_context
from shiftroute.routing.table import Backend, RateLimits, RoutingTable, Server, Timeouts

log = logging.getLogger("shiftroute.compile")


@dataclass(frozen=True, slots=True)
class CompileOptions:
    tls_profile: str = "intermediate"
    service_ca_pem: str = ""
    insecure_skip_backend_verify: bool = False
    default_timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(slots=True)
class CompileResult:
    table: RoutingTable
    warnings: list[str]  # bad annotation values and similar: logged once, the route still serves
    errors: dict[str, str]  # route label -> why it could not be compiled (it serves nothing)


def cookie_name_for(namespace: str, name: str) -> str:
    """routes.md §5: md5 hex of " <namespace>:<route name>" (with the leading space the OpenShift router
    hashes), unless the route names its cookie."""
    return hashlib.md5(f" {namespace}:{name}".encode()).hexdigest()


def endpoint_id(pod: str, service: str, port_name: str, address: str, port: int) -> str:
    if pod:
        return f"pod:{pod}:{service}:{port_name}:{address}:{port}"
    return f"ept:{service}:{port_name}:{address}:{port}"


def cookie_value_for(server_id: str) -> str:
    return hashlib.md5(server_id.encode()).hexdigest()


def slices_by_service(slices: Iterable[EndpointSlice]) -> dict[tuple[str, str], list[EndpointSlice]]:
    """Slices per (namespace, service). When a service has native slices, mirrored ones (from Endpoints
    objects in the same export) are dropped so no endpoint counts twice."""
    grouped: dict[tuple[str, str], list[EndpointSlice]] = {}
    for eps in slices:
        if eps.service_name:
            grouped.setdefault((eps.meta.namespace, eps.service_name), []).append(eps)
    for key, members in grouped.items():
        native = [s for s in members if not s.mirrored]
        grouped[key] = sorted(native or members, key=lambda s: s.meta.name)
    return grouped


def _port_matches(target: str | None, port_name: str, port_number: int, service: Service | None) -> bool:
    """routes.md §2: targetPort compared as a string with the endpoint port's name or number. shiftroute
    also accepts the number of a service port, meaning that port's endpoints (`--port 443` works)."""
    if target is None:
        return True
    if target in (port_name, str(port_number)):
        return True
    if service is not None and port_name:
        return any(p.name == port_name and str(p.port) == target for p in service.ports)
    return False


def servers_for(
    target: TargetRef,
    namespace: str,
    target_port: str | None,
    service: Service | None,
    slices: list[EndpointSlice],
) -> tuple[Server, ...]:
    if service is None:
        return ()
    found: list[tuple[str, str, str, int]] = []  # (id, address, port name, port)
    for eps in slices:
        for port in eps.ports:
            if not _port_matches(target_port, port.name, port.port, service) or port.protocol != "TCP":
                continue
            for endpoint in eps.endpoints:
                if not endpoint.ready:
                    continue
                for address in endpoint.addresses:
                    sid = endpoint_id(endpoint.pod_name, target.name, port.name, address, port.port)
                    found.append((sid, address, port.name, port.port))
    unique = {sid: (sid, addr, pname, pnum) for sid, addr, pname, pnum in found}
    if not unique:
        return ()
    share = target.effective_weight / len(unique)
    return tuple(
        Server(
            id=sid,
            cookie_value=cookie_value_for(sid),
            address=addr,
            port=pnum,
            service=target.name,
            weight=share,
        )
        for sid, addr, _pname, pnum in sorted(unique.values())
    )


def _default_balance(route: Route, termination: str) -> str:
    """routes.md §5: roundrobin when more than one service has weight > 0, else random (HTTP kinds) or
    source (passthrough)."""
    weighted = sum(1 for b in route.spec.backends if b.effective_weight > 0)
    if weighted > 1:
        return "roundrobin"
    return "source" if termination == "passthrough" else "random"


class Compiler:
    """Keeps the Backends it built: a route whose verdict (the same object, see LiveAdmitter) and whose
    services did not change keeps its Backend, and the new table is the old one with only the touched
    hosts rebuilt (RoutingTable.with_changes)."""

    # Above this share of changed backends a full build is as cheap as patching.
    FULL_BUILD_SHARE = 0.25

    def __init__(self, options: CompileOptions) -> None:
        self.options = options
        self._entries: dict[ObjectKey, tuple[Verdict, Backend, frozenset[tuple[str, str]]]] = {}
        self._versions: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
        self._table: RoutingTable | None = None

    def compile(
        self,
        verdicts: Mapping[ObjectKey, Verdict],
        services: Mapping[tuple[str, str], Service],
        slices: Mapping[tuple[str, str], list[EndpointSlice]],
        revision: int,
    ) -> CompileResult:
        warnings: list[str] = []
        errors: dict[str, str] = {}
        # What a backend's servers are built from, per service; the services that changed since last time.
        versions: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
        for key_ in set(services) | set(slices):
            service = services.get(key_)
            versions[key_] = (
                service.meta.resource_version if service is not None else "",
                tuple(s.meta.resource_version for s in slices.get(key_, ())),
            )
        old_versions = self._versions
        changed = {k for k in versions.keys() | old_versions.keys() if versions.get(k) != old_versions.get(k)}
        self._versions = versions
        previous = self._entries
        entries: dict[ObjectKey, tuple[Verdict, Backend, frozenset[tuple[str, str]]]] = {}
        added: list[Backend] = []
        removed: list[Backend] = []
        for key, verdict in verdicts.items():
            if not verdict.admitted:
                continue
            prev = previous.get(key)
            if prev is not None and prev[0] is verdict and (not changed or prev[2].isdisjoint(changed)):
                entries[key] = prev
                continue
            route = verdict.route
            ns = route.meta.namespace
            uses = frozenset((ns, b.name) for b in route.spec.backends)
            try:
                backend = self._compile_route(route, verdict.host, services, slices, warnings)
            except PKIError as exc:
                errors[f"{ns}/{route.meta.name}"] = str(exc)
                if prev is not None:
                    removed.append(prev[1])
                continue
            entries[key] = (verdict, backend, uses)
            added.append(backend)
            if prev is not None:
                removed.append(prev[1])
        # Routes deleted or no longer admitted (a route that failed to compile was handled above).
        removed.extend(
            entry[1]
            for key, entry in previous.items()
            if key not in entries and not (key in verdicts and verdicts[key].admitted)
        )
        self._entries = entries
        backends = tuple(entry[1] for entry in entries.values())
        table = self._table
        if table is None or len(added) + len(removed) > self.FULL_BUILD_SHARE * max(len(entries), 1):
            table = RoutingTable.build(list(backends), revision)
        else:
            table = table.with_changes(removed, added, backends, revision)
        self._table = table
        return CompileResult(table, warnings, errors)

    def _compile_route(
        self,
        route: Route,
        host: str,
        services: Mapping[tuple[str, str], Service],
        slices: Mapping[tuple[str, str], list[EndpointSlice]],
        warnings: list[str],
    ) -> Backend:
        ns, name = route.meta.namespace, route.meta.name
        label = f"{ns}/{name}"
        annotations = route.meta.annotations
        termination = route.spec.termination
        tls = route.spec.tls
        servers: list[Server] = []
        for target in route.spec.backends:
            svc = services.get((ns, target.name))
            servers.extend(
                servers_for(target, ns, route.spec.target_port, svc, slices.get((ns, target.name), []))
            )

        balance = annotations.get(ann.BALANCE, "")
        if balance and balance not in ann.BALANCE_ALGORITHMS:
            warnings.append(
                f"route {label}: {ann.BALANCE}={balance!r} is not one of "
                f"{', '.join(ann.BALANCE_ALGORITHMS)}; using the default"
            )
            balance = ""
        balance = balance or _default_balance(route, termination)

        cookie_name: str | None = None
        suffix = b""
        if termination != "passthrough" and annotations.get(ann.DISABLE_COOKIES, "").lower() not in (
            "true",
            "1",
        ):
            cookie_name = annotations.get(ann.COOKIE_NAME) or cookie_name_for(ns, name)
            suffix = b"; path=/; HttpOnly"
            insecure = tls.insecure_policy if tls else "None"
            if termination in ("edge", "reencrypt") and insecure != "Allow":
                same_site = annotations.get(ann.COOKIE_SAME_SITE, "None")
                if same_site not in ann.SAME_SITE_VALUES:
                    warnings.append(
                        f"route {label}: {ann.COOKIE_SAME_SITE}={same_site!r} is not one of "
                        f"{', '.join(ann.SAME_SITE_VALUES)}; using None"
                    )
                    same_site = "None"
                suffix += f"; Secure; SameSite={same_site}".encode()

        backend_ctx = None
        verify_service = False
        serving_ctx = None
        if tls is not None and termination == "reencrypt":
            if tls.destination_ca_certificate:
                backend_ctx = backend_context(tls.destination_ca_certificate, verify_hostname=False)
            elif self.options.service_ca_pem:
                backend_ctx = backend_context(self.options.service_ca_pem, verify_hostname=True)
                verify_service = True
            elif self.options.insecure_skip_backend_verify:
                backend_ctx = insecure_backend_context()
            else:
                raise PKIError("reencrypt without destinationCACertificate or a service CA")
        if tls is not None and termination in ("edge", "reencrypt") and tls.certificate and tls.key:
            serving_ctx = cached_server_context(
                tls.certificate, tls.key, tls.ca_certificate, self.options.tls_profile
            )

        return Backend(
            namespace=ns,
            name=name,
            host=host,
            wildcard=route.spec.wildcard_policy == "Subdomain",
            path=route.spec.path if route.spec.path != "/" else "",
            termination=termination,
            insecure_policy=tls.insecure_policy if tls else "None",
            servers=tuple(servers),
            balance=balance,
            cookie_name=cookie_name,
            cookie_suffix=suffix,
            servers_by_cookie={s.cookie_value: s for s in servers},
            backend_context=backend_ctx,
            verify_service_hostname=verify_service,
            serving_context=serving_ctx,
            timeouts=self._timeouts(annotations, termination, label, warnings),
            hsts=self._hsts(annotations, termination, label, warnings),
            forwarded_policy=self._forwarded(annotations, label, warnings),
            rewrite_target=annotations.get(ann.REWRITE_TARGET) or None,
            request_actions=_actions(route.spec.request_headers),
            response_actions=_actions(route.spec.response_headers),
            allowlist=self._allowlist(annotations),
            rate_limits=self._rate_limits(annotations, label, warnings),
            max_conn_per_server=self._positive(annotations, ann.POD_CONCURRENT, label, warnings),
            health_interval=self._duration(annotations, ann.HEALTH_INTERVAL, label, warnings),
            generation=route.meta.generation,
            age_order=route.age_order,
            certificate_expiry=_expiry(tls.certificate) if tls is not None and tls.certificate else None,
        )

    def _duration(
        self, annotations: Mapping[str, str], name: str, label: str, warnings: list[str]
    ) -> float | None:
        value = annotations.get(name)
        if value is None:
            return None
        seconds = ann.parse_duration(value)
        if seconds is None:
            warnings.append(
                f"route {label}: {name}={value!r} is not a duration like 30s, 500ms or 2m; ignored"
            )
        return seconds

    def _positive(
        self, annotations: Mapping[str, str], name: str, label: str, warnings: list[str]
    ) -> int | None:
        value = annotations.get(name)
        if value is None:
            return None
        number = ann.parse_positive_int(value)
        if number is None:
            warnings.append(f"route {label}: {name}={value!r} is not a positive integer; ignored")
        return number

    def _timeouts(
        self, annotations: Mapping[str, str], termination: str, label: str, warnings: list[str]
    ) -> Timeouts:
        base = self.options.default_timeouts
        server = self._duration(annotations, ann.TIMEOUT, label, warnings)
        tunnel = self._duration(annotations, ann.TIMEOUT_TUNNEL, label, warnings)
        if tunnel is None and termination == "passthrough" and server is not None:
            tunnel = server  # routes.md §6: `timeout` is the tunnel fallback for passthrough
        return Timeouts(
            connect=base.connect,
            server=server or base.server,
            client=base.client,
            tunnel=tunnel or base.tunnel,
        )

    def _hsts(
        self, annotations: Mapping[str, str], termination: str, label: str, warnings: list[str]
    ) -> bytes | None:
        value = annotations.get(ann.HSTS)
        if value is None or termination not in ("edge", "reencrypt"):
            return None
        parsed = ann.parse_hsts(value)
        if parsed is None:
            warnings.append(
                f"route {label}: {ann.HSTS}={value!r} needs max-age=N (and only includeSubDomains, "
                "preload); ignored"
            )
            return None
        return parsed.encode()

    def _forwarded(self, annotations: Mapping[str, str], label: str, warnings: list[str]) -> str:
        value = annotations.get(ann.FORWARDED, "append")
        if value not in ann.FORWARDED_POLICIES:
            warnings.append(
                f"route {label}: {ann.FORWARDED}={value!r} is not one of "
                f"{', '.join(ann.FORWARDED_POLICIES)}; using append"
            )
            return "append"
        return value

    def _allowlist(self, annotations: Mapping[str, str]) -> tuple[ann.IPNetwork, ...] | None:
        found = ann.allowlist_annotation(annotations)
        if found is None:
            return None
        parsed = ann.parse_allowlist(found[1])
        # Admission refused unparsable lists (fail closed), so this is always a tuple here.
        return parsed if isinstance(parsed, tuple) else ()

    def _rate_limits(self, annotations: Mapping[str, str], label: str, warnings: list[str]) -> RateLimits:
        if annotations.get(ann.RATE_LIMIT, "").lower() != "true":
            return RateLimits()
        return RateLimits(
            concurrent_tcp=self._positive(annotations, ann.RATE_LIMIT_CONCURRENT, label, warnings),
            rate_tcp=self._positive(annotations, ann.RATE_LIMIT_TCP, label, warnings),
            rate_http=self._positive(annotations, ann.RATE_LIMIT_HTTP, label, warnings),
        )


@lru_cache(maxsize=8192)
def _expiry(cert_pem: str) -> datetime | None:
    try:
        return load_certificates(cert_pem)[0].not_valid_after_utc
    except PKIError:
        return None


def _actions(actions: Iterable[object]) -> tuple[tuple[bytes, bytes | None], ...]:
    out: list[tuple[bytes, bytes | None]] = []
    for action in actions:
        name = getattr(action, "name", "")
        kind = getattr(action, "action", "")
        value = getattr(action, "value", "")
        out.append((name.lower().encode("latin-1"), value.encode("latin-1") if kind == "Set" else None))
    return tuple(out)
