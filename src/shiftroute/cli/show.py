"""Commands that read: get and describe, with the columns `oc get route` prints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from shiftroute.api.manifest import dump_json, dump_yaml
from shiftroute.api.objects import (
    KIND_ENDPOINTSLICE,
    KIND_ROUTE,
    KIND_ROUTER,
    KIND_SERVICE,
    SERVICE_NAME_LABEL,
    EndpointSlice,
    Route,
    Service,
)
from shiftroute.cli.common import (
    Context,
    echo_lines,
    handle_errors,
    kind_label,
    pass_context,
    resource_kind,
    store_options,
    table,
)
from shiftroute.cli.routeinfo import (
    cert_warnings,
    describe_certificates,
    host_column,
    router_row,
    router_verdicts,
    services_column,
    termination_column,
)

OUTPUTS = ("wide", "yaml", "json", "name")


def age(timestamp: str, now: datetime | None = None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d."""
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _route_rows(items: list[dict[str, Any]], wide: bool, all_ns: bool) -> list[str]:
    headers = ["NAME", "HOST/PORT", "PATH", "SERVICES", "PORT", "TERMINATION", "WILDCARD"]
    if all_ns:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers.append("ROUTERS")
    rows = []
    for manifest in items:
        route = Route.from_manifest(manifest)
        row = [
            route.meta.name,
            host_column(route),
            route.spec.path,
            services_column(route),
            route.spec.target_port or "<all>",
            termination_column(route),
            route.spec.wildcard_policy,
        ]
        if all_ns:
            row.insert(0, route.meta.namespace)
        if wide:
            verdicts = router_verdicts(route)
            row.append(",".join(f"{r}={v}" for r, v in verdicts) or "<none>")
        rows.append(row)
    return table(headers, rows)


def _service_rows(ctx: Context, items: list[dict[str, Any]], all_ns: bool) -> list[str]:
    headers = ["NAME", "TYPE", "PORT(S)", "ENDPOINTS", "AGE"]
    if all_ns:
        headers.insert(0, "NAMESPACE")
    rows = []
    for manifest in items:
        svc = Service.from_manifest(manifest)
        slices = ctx.store.list(
            KIND_ENDPOINTSLICE, svc.meta.namespace, f"{SERVICE_NAME_LABEL}={svc.meta.name}"
        )
        endpoints = _endpoint_texts([EndpointSlice.from_manifest(m) for m in slices.items])
        ports = ",".join(f"{p.port}/{p.protocol}" for p in svc.ports) or "<none>"
        row = [
            svc.meta.name,
            str((manifest.get("spec") or {}).get("type") or "ClusterIP"),
            ports,
            _abbreviate(endpoints),
            age(svc.meta.creation_timestamp),
        ]
        if all_ns:
            row.insert(0, svc.meta.namespace)
        rows.append(row)
    return table(headers, rows)


def _endpoint_texts(slices: list[EndpointSlice]) -> list[str]:
    out: list[str] = []
    for eps in slices:
        for endpoint in eps.endpoints:
            for address in endpoint.addresses:
                host = f"[{address}]" if ":" in address else address
                mark = "" if endpoint.ready else " (not ready)"
                out.extend(f"{host}:{p.port}{mark}" for p in eps.ports)
    return out


def _abbreviate(values: list[str], limit: int = 3) -> str:
    if not values:
        return "<none>"
    shown = ",".join(values[:limit])
    return shown + (f" + {len(values) - limit} more..." if len(values) > limit else "")


def _slice_rows(items: list[dict[str, Any]], all_ns: bool) -> list[str]:
    headers = ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    if all_ns:
        headers.insert(0, "NAMESPACE")
    rows = []
    for manifest in items:
        eps = EndpointSlice.from_manifest(manifest)
        addresses = [a for e in eps.endpoints for a in e.addresses]
        row = [
            eps.meta.name,
            str(manifest.get("addressType") or "IPv4"),
            ",".join(str(p.port) for p in eps.ports) or "<unset>",
            _abbreviate(addresses),
            age(eps.meta.creation_timestamp),
        ]
        if all_ns:
            row.insert(0, eps.meta.namespace)
        rows.append(row)
    return table(headers, rows)


def _router_rows(items: list[dict[str, Any]]) -> list[str]:
    headers = ["NAME", "STATUS", "HTTP", "HTTPS", "ADMIN", "DOMAIN", "VERSION", "LAST SEEN", "AGE"]
    rows = [[*router_row(m), age(str((m.get("metadata") or {}).get("creationTimestamp", "")))] for m in items]
    return table(headers, rows)


@click.command("get")
@click.argument("resource")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(OUTPUTS), help="wide, yaml, json or name.")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@store_options
@pass_context
@handle_errors
def get(
    ctx: Context,
    resource: str,
    name: str | None,
    output: str | None,
    all_namespaces: bool,
    selector: str | None,
) -> None:
    """Show routes, services, endpointslices or routers.

    \b
    shiftroute get routes                 NAME HOST/PORT PATH SERVICES PORT TERMINATION WILDCARD
    shiftroute get route web -o yaml      the stored object; `apply -f` takes it back
    shiftroute get routes -o wide         adds each router's verdict
    """
    kind = resource_kind(resource, (KIND_ROUTE, KIND_SERVICE, KIND_ENDPOINTSLICE, KIND_ROUTER))
    namespace = None if all_namespaces or kind == KIND_ROUTER else ctx.ns
    if name:
        items = [ctx.store.get(kind, "" if kind == KIND_ROUTER else ctx.ns, name)]
    else:
        items = ctx.store.list(kind, namespace, selector).items
    if output in ("yaml", "json"):
        dump = dump_yaml if output == "yaml" else dump_json
        click.echo(dump(items, as_list=name is None), nl=False)
        return
    if output == "name":
        echo_lines([f"{kind_label(kind)}/{m['metadata']['name']}" for m in items])
        return
    if not items:
        where = "" if namespace is None else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    if kind == KIND_ROUTE:
        echo_lines(_route_rows(items, output == "wide", all_namespaces))
        for manifest in items:
            for warning in cert_warnings(Route.from_manifest(manifest)):
                click.echo(f"Warning: {warning}", err=True)
    elif kind == KIND_SERVICE:
        echo_lines(_service_rows(ctx, items, all_namespaces))
    elif kind == KIND_ENDPOINTSLICE:
        echo_lines(_slice_rows(items, all_namespaces))
    else:
        echo_lines(_router_rows(items))


def _field(label: str, value: str, width: int = 24) -> str:
    return f"{label + ':':<{width}}{value}"


def _map_text(values: Mapping[str, str]) -> list[str]:
    if not values:
        return ["<none>"]
    return [f"{k}={v}" for k, v in sorted(values.items())]


def describe_route_lines(ctx: Context, route: Route) -> list[str]:
    spec = route.spec
    lines = [
        _field("Name", route.meta.name),
        _field("Namespace", route.meta.namespace),
        _field("Created", f"{age(route.meta.creation_timestamp)} ago ({route.meta.creation_timestamp})"),
    ]
    for label, values in (("Labels", route.meta.labels), ("Annotations", route.meta.annotations)):
        texts = _map_text(values)
        lines.append(_field(label, texts[0]))
        lines.extend(" " * 24 + t for t in texts[1:])
    lines.append(
        _field(
            "Requested Host",
            spec.host
            or (f"{spec.subdomain}.<router domain>" if spec.subdomain else "<generated by the router>"),
        )
    )
    verdict_lines = router_verdict_lines(route)
    lines.extend(" " * 26 + v for v in verdict_lines or ["not yet seen by any router"])
    lines += [
        _field("Path", spec.path or "<none>"),
        _field("TLS Termination", spec.termination or "<none>"),
        _field("Insecure Policy", spec.tls.insecure_policy if spec.tls else "<none>"),
        _field("Endpoint Port", spec.target_port or "<all endpoint ports>"),
        "",
    ]
    total = sum(b.effective_weight for b in spec.backends) or 1
    for backend in spec.backends:
        lines.append(_field("Service", backend.name))
        share = 100 * backend.effective_weight / total
        lines.append(_field("Weight", f"{backend.effective_weight} ({share:.0f}%)"))
        lines.append(_field("Endpoints", _abbreviate(_service_endpoints(ctx, route, backend.name), 10)))
        lines.append("")
    cert_lines = describe_certificates(route)
    if cert_lines:
        lines.append("Certificates:")
        lines.extend("  " + c for c in cert_lines)
    return lines


def router_verdict_lines(route: Route) -> list[str]:
    out = []
    for ingress in route.ingress:
        condition = ingress.admitted
        if condition is None:
            continue
        since = f" {age(condition.last_transition_time)} ago" if condition.last_transition_time else ""
        if condition.status == "True":
            out.append(f"exposed on router {ingress.router_name} as {ingress.host}{since}")
        else:
            out.append(
                f"rejected by router {ingress.router_name}: {condition.reason}{since}: {condition.message}"
            )
    return out


def _service_endpoints(ctx: Context, route: Route, service: str) -> list[str]:
    slices = ctx.store.list(KIND_ENDPOINTSLICE, route.meta.namespace, f"{SERVICE_NAME_LABEL}={service}").items
    texts = _endpoint_texts([EndpointSlice.from_manifest(m) for m in slices])
    return texts


def describe_service_lines(ctx: Context, svc: Service) -> list[str]:
    lines = [_field("Name", svc.meta.name, 20), _field("Namespace", svc.meta.namespace, 20)]
    for label, values in (("Labels", svc.meta.labels), ("Annotations", svc.meta.annotations)):
        texts = _map_text(values)
        lines.append(_field(label, texts[0], 20))
        lines.extend(" " * 20 + t for t in texts[1:])
    for port in svc.ports:
        lines.append(_field("Port", f"{port.name or '<unset>'}  {port.port}/{port.protocol}", 20))
        lines.append(_field("TargetPort", port.target_port, 20))
    slices = ctx.store.list(
        KIND_ENDPOINTSLICE, svc.meta.namespace, f"{SERVICE_NAME_LABEL}={svc.meta.name}"
    ).items
    lines.append(
        _field(
            "Endpoints",
            _abbreviate(_endpoint_texts([EndpointSlice.from_manifest(m) for m in slices]), 20),
            20,
        )
    )
    routes = [Route.from_manifest(m) for m in ctx.store.list(KIND_ROUTE, svc.meta.namespace).items]
    users = [r.meta.name for r in routes if any(b.name == svc.meta.name for b in r.spec.backends)]
    lines.append(_field("Routes", ", ".join(users) or "<none>", 20))
    return lines


@click.command("describe")
@click.argument("resource")
@click.argument("name")
@store_options
@pass_context
@handle_errors
def describe(ctx: Context, resource: str, name: str) -> None:
    """Show a route (spec, endpoints, each router's verdict, certificates) or a service in detail."""
    kind = resource_kind(resource, (KIND_ROUTE, KIND_SERVICE))
    manifest = ctx.store.get(kind, ctx.ns, name)
    if kind == KIND_ROUTE:
        echo_lines(describe_route_lines(ctx, Route.from_manifest(manifest)))
    else:
        echo_lines(describe_service_lines(ctx, Service.from_manifest(manifest)))


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2)
