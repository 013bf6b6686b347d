"""Prometheus text exposition of one router process's counters."""

from __future__ import annotations

from datetime import UTC, datetime

from shiftroute.engine.context import RouterContext


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(ctx: RouterContext, ready: bool, cert_expiry: dict[str, datetime], table_revision: int) -> bytes:
    c = ctx.counters
    lines = [
        "# HELP shiftroute_up 1 while the router runs.",
        "# TYPE shiftroute_up gauge",
        "shiftroute_up 1",
        "# HELP shiftroute_ready 1 when the router has synced its routes and serves.",
        "# TYPE shiftroute_ready gauge",
        f"shiftroute_ready {1 if ready else 0}",
        "# HELP shiftroute_routes Routes in the published routing table.",
        "# TYPE shiftroute_routes gauge",
        f"shiftroute_routes {len(ctx.holder.current.backends)}",
        "# HELP shiftroute_table_revision Store revision of the published routing table.",
        "# TYPE shiftroute_table_revision gauge",
        f"shiftroute_table_revision {table_revision}",
        "# HELP shiftroute_connections Client connections open now.",
        "# TYPE shiftroute_connections gauge",
        f"shiftroute_connections {c.connections_current}",
        "# HELP shiftroute_connections_total Client connections accepted.",
        "# TYPE shiftroute_connections_total counter",
        f"shiftroute_connections_total {c.connections_total}",
        "# HELP shiftroute_connections_refused_total Connections refused (limits, allowlists).",
        "# TYPE shiftroute_connections_refused_total counter",
        f"shiftroute_connections_refused_total {c.connections_refused}",
        "# HELP shiftroute_requests_total HTTP requests answered, by route and status.",
        "# TYPE shiftroute_requests_total counter",
    ]
    for (route, status), count in sorted(c.requests.items()):
        lines.append(f'shiftroute_requests_total{{route="{_escape(route)}",code="{status}"}} {count}')
    lines += [
        "# HELP shiftroute_passthrough_connections_total Passthrough connections relayed, by route.",
        "# TYPE shiftroute_passthrough_connections_total counter",
    ]
    for route, count in sorted(c.tunnels.items()):
        lines.append(f'shiftroute_passthrough_connections_total{{route="{_escape(route)}"}} {count}')
    lines += [
        "# HELP shiftroute_backend_failures_total Failed routing decisions (connect, TLS, no endpoints).",
        "# TYPE shiftroute_backend_failures_total counter",
    ]
    for route, count in sorted(c.backend_failures.items()):
        lines.append(f'shiftroute_backend_failures_total{{route="{_escape(route)}"}} {count}')
    lines += [
        "# HELP shiftroute_certificate_expiry_seconds Seconds until a served certificate expires "
        "(negative: expired).",
        "# TYPE shiftroute_certificate_expiry_seconds gauge",
    ]
    now = datetime.now(UTC)
    expiries = dict(cert_expiry)
    for backend in ctx.holder.current.backends:
        if backend.certificate_expiry is not None:
            expiries[f"route:{backend.label}"] = backend.certificate_expiry
    for name, expiry in sorted(expiries.items()):
        seconds = (expiry - now).total_seconds()
        lines.append(f'shiftroute_certificate_expiry_seconds{{certificate="{_escape(name)}"}} {seconds:.0f}')
    return ("\n".join(lines) + "\n").encode()
