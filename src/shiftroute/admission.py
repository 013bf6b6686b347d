"""Route admission: which routes this router serves, and why not the others (routes.md §3).

A pure function of (routes, router options): every replica that sees the same routes reaches the same
verdicts, so host claims agree across routers without them talking to each other. Services and endpoints do
not take part: a route to a missing service is admitted and answers 503, as in OpenShift.

Order of checks for each route: effective host (generated from name/namespace or subdomain when empty),
host syntax, allowed/denied domains, wildcard policy, extended validation (certificates, backend
verification, allowlist), then host claims, decided oldest first (earlier creationTimestamp, then smaller
uid). A route that fails an early check claims nothing, so it never blocks another route.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

from shiftroute.api import annotations as ann
from shiftroute.api.objects import ObjectKey, Route
from shiftroute.api.validation import dns1123_subdomain_problem, shown
from shiftroute.pki.validate import validate_route_tls

INVALID_HOST = "InvalidHost"
NO_HOST_VALUE = "NoHostValue"
HOST_ALREADY_CLAIMED = "HostAlreadyClaimed"
EXTENDED_VALIDATION_FAILED = "ExtendedValidationFailed"
ROUTE_NOT_ADMITTED = "RouteNotAdmitted"


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """What a router was started with that changes admission."""

    router_name: str = "default"
    domain: str = "apps.localhost"
    allow_wildcard_routes: bool = False
    disable_namespace_ownership_check: bool = False
    allowed_domains: tuple[str, ...] = ()
    denied_domains: tuple[str, ...] = ()
    has_service_ca: bool = False
    insecure_skip_backend_verify: bool = False

    @property
    def canonical_hostname(self) -> str:
        """What OpenShift calls routerCanonicalHostname: the name DNS should point route hosts at."""
        return f"router-{self.router_name}.{self.domain}" if self.domain else ""


@dataclass(frozen=True, slots=True)
class Verdict:
    route: Route
    host: str
    admitted: bool
    reason: str = ""
    message: str = ""

    @property
    def key(self) -> ObjectKey:
        return self.route.key


@dataclass(slots=True)
class _Claims:
    """Who holds what, filled oldest route first."""

    host_owner: dict[str, Route] = field(default_factory=dict)  # host -> oldest admitted route on it
    # parent domain -> every admitted route under it, oldest first. All of them, not just the oldest: any
    # older route of another namespace under a subdomain blocks a wildcard route for it (OpenShift's
    # HostAdmitter checks its whole blockedWildcards list).
    subdomain_routes: dict[str, list[Route]] = field(default_factory=dict)
    wildcard_owner: dict[str, Route] = field(default_factory=dict)  # parent domain -> oldest wildcard route
    admitted: dict[str, list[Route]] = field(default_factory=dict)  # claim key -> admitted routes


def effective_host(route: Route, domain: str) -> str:
    """spec.host; else `<subdomain>.<domain>`; else `<name>-<namespace>.<domain>` (routes.md §2)."""
    spec = route.spec
    if spec.host:
        return spec.host.lower().rstrip(".")
    if not domain:
        return ""
    if spec.subdomain:
        return f"{spec.subdomain}.{domain}".lower()
    return f"{route.meta.name}-{route.meta.namespace}.{domain}".lower()


def parent_domain(host: str) -> str:
    return host.split(".", 1)[1] if "." in host else ""


def is_wildcard(route: Route) -> bool:
    return route.spec.wildcard_policy == "Subdomain"


def claim_key(route: Route, host: str) -> str:
    """Wildcard routes claim `*.<parent domain>`; others claim their host."""
    return f"*.{parent_domain(host)}" if is_wildcard(route) else host


def _in_domains(host: str, domains: Iterable[str]) -> bool:
    for domain in domains:
        d = domain.lower().strip(".")
        if d.startswith("*."):
            d = d[2:]
        if host == d or host.endswith("." + d):
            return True
    return False


_AGE_ORDER = operator.attrgetter("age_order")


def admit(routes: Iterable[Route], options: RouterOptions) -> dict[ObjectKey, Verdict]:
    """Every route's verdict, deciding host claims oldest first. A router keeps this up to date from
    changes with `live_admission.LiveAdmitter`, which reaches the same verdicts with less work."""
    verdicts: dict[ObjectKey, Verdict] = {}
    claims = _Claims()
    for route in sorted(routes, key=_AGE_ORDER):
        host = effective_host(route, options.domain)
        rejected = _precheck(route, host, options)
        if rejected is None:
            rejected = _claim(route, host, claims, options)
        verdicts[route.key] = rejected or Verdict(route, host, admitted=True)
    return verdicts


def _reject(route: Route, host: str, reason: str, message: str) -> Verdict:
    return Verdict(route, host, admitted=False, reason=reason, message=message)


def _precheck(route: Route, host: str, options: RouterOptions) -> Verdict | None:
    if not host:
        return _reject(route, host, NO_HOST_VALUE, "no host value was specified and the router has no domain")
    if problem := dns1123_subdomain_problem(host):
        return _reject(route, host, INVALID_HOST, f"host {shown(host)}: {problem}")
    if options.denied_domains and _in_domains(host, options.denied_domains):
        return _reject(route, host, ROUTE_NOT_ADMITTED, f"host {host} is in a denied domain")
    if options.allowed_domains and not _in_domains(host, options.allowed_domains):
        return _reject(route, host, ROUTE_NOT_ADMITTED, f"host {host} is not in an allowed domain")
    if is_wildcard(route):
        if not options.allow_wildcard_routes:
            return _reject(
                route,
                host,
                ROUTE_NOT_ADMITTED,
                "wildcard routes are not allowed by this router (start it with --allow-wildcard-routes)",
            )
        if host.count(".") < 2:
            return _reject(
                route, host, INVALID_HOST, f"wildcard route host {host} needs a parent domain of 2+ labels"
            )
    problems = _extended_validation(route, options)
    if problems:
        return _reject(route, host, EXTENDED_VALIDATION_FAILED, "; ".join(problems))
    return None


def _extended_validation(route: Route, options: RouterOptions) -> list[str]:
    problems: list[str] = []
    tls = route.spec.tls
    if tls is not None:
        problems.extend(str(e) for e in validate_route_tls(tls))
        if (
            tls.termination == "reencrypt"
            and not tls.destination_ca_certificate
            and not options.has_service_ca
            and not options.insecure_skip_backend_verify
        ):
            # routes.md §4, shiftroute differs: OpenShift would skip backend verification silently.
            problems.append(
                "spec.tls.destinationCACertificate: required for reencrypt: this router has no service CA, "
                "so without it the backend certificate could not be verified. Give the CA that signed the "
                "backend certificate (--dest-ca-cert), start the router with --service-ca, or, only for "
                "testing, --insecure-skip-backend-verify"
            )
    allowlist = ann.allowlist_annotation(route.meta.annotations)
    if allowlist is not None:
        parsed = ann.parse_allowlist(allowlist[1])
        if isinstance(parsed, str):
            problems.append(f"metadata.annotations[{allowlist[0]}]: {parsed}")
    return problems


def _claim(route: Route, host: str, claims: _Claims, options: RouterOptions) -> Verdict | None:
    parent = parent_domain(host)
    if not options.disable_namespace_ownership_check:
        holder = _namespace_conflict(route, host, parent, claims)
        if holder is not None:
            return _reject(
                route,
                host,
                HOST_ALREADY_CLAIMED,
                f"{_what(route, host)} is owned by namespace {holder.meta.namespace}: route "
                f"{holder.meta.namespace}/{holder.meta.name} is older",
            )
    key = claim_key(route, host)
    for other in claims.admitted.get(key, []):
        if _conflicts(route, other):
            return _reject(
                route,
                host,
                HOST_ALREADY_CLAIMED,
                f"route {other.meta.namespace}/{other.meta.name} already exposes {key}"
                f"{_path_text(other)} and is older",
            )
    claims.admitted.setdefault(key, []).append(route)
    if is_wildcard(route):
        claims.wildcard_owner.setdefault(parent, route)
    else:
        claims.host_owner.setdefault(host, route)
    claims.subdomain_routes.setdefault(parent, []).append(route)
    return None


def _namespace_conflict(route: Route, host: str, parent: str, claims: _Claims) -> Route | None:
    """The older route whose namespace owns what `route` wants, when that namespace is another one.

    OpenShift: the oldest route on a host makes its namespace the owner of the host and, for wildcard
    routes, of its subdomain; a namespace that owns a subdomain through a wildcard route owns every host
    in it.
    """
    ns = route.meta.namespace
    if is_wildcard(route):
        return next((r for r in claims.subdomain_routes.get(parent, []) if r.meta.namespace != ns), None)
    for owner in (claims.host_owner.get(host), claims.wildcard_owner.get(parent)):
        if owner is not None and owner.meta.namespace != ns:
            return owner
    return None


def _norm_path(path: str) -> str:
    return "" if path in ("", "/") else path


def _conflicts(route: Route, other: Route) -> bool:
    """Same host (or wildcard domain): same path, or both TLS and either passthrough (routes.md §3).

    A passthrough route and a plain-HTTP route never conflict: one is served on the HTTPS listener by SNI,
    the other on the HTTP listener."""
    a, b = route.spec.termination, other.spec.termination
    if "passthrough" in (a, b) and "" in (a, b):
        return False
    if _norm_path(route.spec.path) == _norm_path(other.spec.path):
        return True
    return bool(a and b and "passthrough" in (a, b))


def _what(route: Route, host: str) -> str:
    return f"subdomain {parent_domain(host)}" if is_wildcard(route) else f"host {host}"


def _path_text(route: Route) -> str:
    path = _norm_path(route.spec.path)
    return f" with path {path}" if path else ""
