"""The routes both routers serve: one reencrypt, one edge, one passthrough route to the nginx backend,
plus generated filler routes for the route-change workloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends import Backend
from bench.certs import DOMAIN

TERMINATIONS = ("reencrypt", "edge", "passthrough")
NAMESPACE = "bench"
# The service each termination uses: reencrypt and passthrough reach nginx's TLS port, edge its plain port.
SERVICE_OF = {"reencrypt": "be-https", "passthrough": "be-https", "edge": "be-http"}


@dataclass(frozen=True, slots=True)
class BenchRoute:
    name: str
    termination: str
    host: str
    endpoint_port: int  # nginx's port on 127.0.0.1

    @property
    def key(self) -> str:
        return f"{NAMESPACE}:{self.name}"


def endpoint_port(backend: Backend, termination: str) -> int:
    return backend.http_port if termination == "edge" else backend.https_port


def bench_route(backend: Backend, termination: str, name: str | None = None) -> BenchRoute:
    name = name or termination
    return BenchRoute(name, termination, f"{name}.{DOMAIN}", endpoint_port(backend, termination))


def standard_routes(backend: Backend) -> list[BenchRoute]:
    return [bench_route(backend, t) for t in TERMINATIONS]


def filler_routes(backend: Backend, count: int) -> list[BenchRoute]:
    """`count` routes, the three terminations in turn (r00000-edge.bench.test, ...)."""
    out = []
    for i in range(count):
        termination = TERMINATIONS[i % 3]
        out.append(bench_route(backend, termination, f"r{i:05d}-{termination}"))
    return out


# -- shiftroute manifests --------------------------------------------------------------------------------


def service_manifests(backend: Backend) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, port, target in (("be-https", 443, backend.https_port), ("be-http", 80, backend.http_port)):
        meta = {"name": name, "namespace": NAMESPACE}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "ports": [{"name": f"{port}-tcp", "port": port, "targetPort": port, "protocol": "TCP"}]
                },
            }
        )
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {**meta, "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": f"{port}-tcp", "port": target, "protocol": "TCP"}],
            }
        )
    return out


def route_manifest(route: BenchRoute, ca_pem: str) -> dict[str, Any]:
    service = SERVICE_OF[route.termination]
    tls: dict[str, Any] = {"termination": route.termination}
    if route.termination == "reencrypt":
        tls["destinationCACertificate"] = ca_pem
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": route.name, "namespace": NAMESPACE},
        "spec": {
            "host": route.host,
            "to": {"kind": "Service", "name": service, "weight": 100},
            "port": {"targetPort": "80-tcp" if service == "be-http" else "443-tcp"},
            "tls": tls,
            "wildcardPolicy": "None",
        },
    }


def list_manifest(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def read_ca(path: Path) -> str:
    return path.read_text()
