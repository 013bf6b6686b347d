"""What diagnose reads from the store, read once: the route, the registered routers, services, slices."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shiftroute.api.objects import (
    KIND_ENDPOINTSLICE,
    KIND_ROUTE,
    KIND_ROUTER,
    KIND_SERVICE,
    EndpointSlice,
    Route,
    Service,
)
from shiftroute.cli.routeinfo import router_is_live
from shiftroute.errors import NotFoundError, UsageError
from shiftroute.routing.compile import slices_by_service
from shiftroute.store import Store


@dataclass(frozen=True, slots=True)
class RouterInfo:
    """A router's registration (engine/status.py): where it listens and whether it is alive."""

    name: str
    live: bool
    phase: str
    http: str
    https: str
    heartbeat: str

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> RouterInfo:
        spec = manifest.get("spec") or {}
        status = manifest.get("status") or {}
        return cls(
            name=str((manifest.get("metadata") or {}).get("name", "")),
            live=router_is_live(manifest),
            phase=str(status.get("phase") or "Unknown"),
            http=str(spec.get("http") or ""),
            https=str(spec.get("https") or ""),
            heartbeat=_ago(str(status.get("heartbeat") or "")),
        )


def _ago(stamp: str) -> str:
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago ({stamp})"


@dataclass(frozen=True, slots=True)
class RouterURL:
    """`--router http://HOST:PORT` (the HTTP listener) or `https://HOST:PORT` (the HTTPS listener)."""

    scheme: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


def parse_router_url(text: str) -> RouterURL:
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise UsageError(
            f"--router {text}: expected http://HOST:PORT (the router's HTTP listener) or "
            "https://HOST:PORT (its HTTPS listener), e.g. https://127.0.0.1:8443"
        )
    if parts.path not in ("", "/") or parts.query:
        raise UsageError(f"--router {text}: give only scheme, host and port (the route decides the path)")
    return RouterURL(parts.scheme, parts.hostname, port)


@dataclass(slots=True)
class Facts:
    namespace: str
    name: str
    route: Route | None
    store_url: str
    elsewhere: list[str] = field(default_factory=list)  # namespaces holding a route of that name
    routers: list[RouterInfo] = field(default_factory=list)
    services: dict[tuple[str, str], Service] = field(default_factory=dict)
    slices: dict[tuple[str, str], list[EndpointSlice]] = field(default_factory=dict)


def load_facts(store: Store, namespace: str, name: str) -> Facts:
    try:
        route: Route | None = Route.from_manifest(store.get(KIND_ROUTE, namespace, name))
    except NotFoundError:
        route = None
    facts = Facts(namespace, name, route, store.url)
    if route is None:
        facts.elsewhere = sorted(
            str(m["metadata"].get("namespace", ""))
            for m in store.list(KIND_ROUTE).items
            if m["metadata"].get("name") == name
        )
        return facts
    facts.routers = sorted(
        (RouterInfo.from_manifest(m) for m in store.list(KIND_ROUTER).items), key=lambda r: r.name
    )
    for manifest in store.list(KIND_SERVICE, namespace).items:
        svc = Service.from_manifest(manifest)
        facts.services[(namespace, svc.meta.name)] = svc
    slices = [EndpointSlice.from_manifest(m) for m in store.list(KIND_ENDPOINTSLICE, namespace).items]
    facts.slices = slices_by_service(slices)
    return facts
