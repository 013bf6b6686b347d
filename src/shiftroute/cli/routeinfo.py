"""How routes and routers read in tables: the HOST/PORT, SERVICES and TERMINATION columns of `oc get
route`, router verdicts, and certificate lines for describe (never key material)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shiftroute.api.objects import Route
from shiftroute.errors import PKIError
from shiftroute.pki.pem import CertSummary, load_certificates, summarize

# A router whose heartbeat is older than this is shown as stale (it heartbeats every few seconds).
ROUTER_STALE_AFTER_S = 30.0


def host_column(route: Route) -> str:
    """oc: the admitted host; when no router admitted it, the reason of a rejection instead."""
    admitted = [i for i in route.ingress if i.admitted is not None and i.admitted.status == "True"]
    if admitted:
        return admitted[0].host
    rejected = [i for i in route.ingress if i.admitted is not None and i.admitted.status == "False"]
    if rejected:
        return rejected[0].admitted.reason if rejected[0].admitted else ""
    return route.spec.host or "<pending>"


def services_column(route: Route) -> str:
    """`web` alone; with alternate backends `a(60%),b(40%)`, from the weights."""
    backends = route.spec.backends
    if len(backends) == 1:
        return backends[0].name
    total = sum(b.effective_weight for b in backends)
    parts = []
    for backend in backends:
        # oc divides in integers (weight*100/total), so 1:2 reads a(33%),b(66%), not b(67%).
        share = 100 * backend.effective_weight // total if total else 0
        parts.append(f"{backend.name}({share}%)")
    return ",".join(parts)


def termination_column(route: Route) -> str:
    """`edge`, or `edge/Redirect` when an insecure policy other than None is set."""
    tls = route.spec.tls
    if tls is None:
        return ""
    if tls.insecure_policy and tls.insecure_policy != "None":
        return f"{tls.termination}/{tls.insecure_policy}"
    return tls.termination


def router_verdicts(route: Route) -> list[tuple[str, str]]:
    out = []
    for ingress in route.ingress:
        condition = ingress.admitted
        if condition is None:
            continue
        out.append((ingress.router_name, "Admitted" if condition.status == "True" else condition.reason))
    return out


_CERT_FIELDS = (
    ("certificate", "spec.tls.certificate"),
    ("ca_certificate", "spec.tls.caCertificate"),
    ("destination_ca_certificate", "spec.tls.destinationCACertificate"),
)


def _certs_of(route: Route) -> list[tuple[str, CertSummary | None]]:
    tls = route.spec.tls
    if tls is None:
        return []
    out: list[tuple[str, CertSummary | None]] = []
    for attr, path in _CERT_FIELDS:
        text = getattr(tls, attr)
        if not text:
            continue
        try:
            certs = load_certificates(text, path)
        except PKIError:
            out.append((path, None))
            continue
        out.extend((path, summarize(c)) for c in certs)
    return out


def cert_warnings(route: Route, now: datetime | None = None) -> list[str]:
    """routes.md §3, shiftroute differs: an expired or not-yet-valid certificate is admitted, but shown."""
    warnings = []
    for path, summary in _certs_of(route):
        if summary is None:
            continue
        problem = summary.validity_problem(now)
        if problem:
            warnings.append(
                f"route {route.meta.namespace}/{route.meta.name}: {path} ({summary.subject}) {problem}"
            )
    return warnings


def describe_certificates(route: Route, now: datetime | None = None) -> list[str]:
    lines = []
    for path, summary in _certs_of(route):
        if summary is None:
            lines.append(f"{path}: does not parse")
            continue
        flag = summary.validity_problem(now)
        sans = ", ".join(summary.sans) or "none"
        lines.append(f"{path}:")
        lines.append(f"  subject:  {summary.subject or '(empty)'}")
        lines.append(f"  issuer:   {summary.issuer or '(empty)'}")
        lines.append(f"  SANs:     {sans}")
        expiry = f"{summary.not_after:%Y-%m-%d %H:%M:%SZ}"
        lines.append(f"  expires:  {expiry}" + (f"  WARNING: {flag}" if flag else ""))
    return lines


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def router_is_live(manifest: Mapping[str, Any], now: datetime | None = None) -> bool:
    status = manifest.get("status") or {}
    seen = _parse_time(str(status.get("heartbeat", "")))
    if seen is None or status.get("phase") == "Stopped":
        return False
    return ((now or datetime.now(UTC)) - seen).total_seconds() <= ROUTER_STALE_AFTER_S


def router_row(manifest: Mapping[str, Any]) -> list[str]:
    spec = manifest.get("spec") or {}
    status = manifest.get("status") or {}
    state = (
        "Live" if router_is_live(manifest) else ("Stopped" if status.get("phase") == "Stopped" else "Stale")
    )
    return [
        str((manifest.get("metadata") or {}).get("name", "")),
        state,
        str(spec.get("http") or "-"),
        str(spec.get("https") or "-"),
        str(spec.get("admin") or "-"),
        str(spec.get("domain") or "-"),
        str(spec.get("version") or "-"),
        str(status.get("heartbeat") or "-"),
    ]
