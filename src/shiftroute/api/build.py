"""Manifests the CLI makes (`create service`, `create route`, `expose service`), shaped like the objects
`oc new-app` and `oc create route` make, so they export and re-apply like cluster objects."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from shiftroute.api.objects import (
    API_VERSIONS,
    KIND_ENDPOINTSLICE,
    KIND_ROUTE,
    KIND_SERVICE,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    Manifest,
)
from shiftroute.errors import UsageError

MANAGED_BY_SHIFTROUTE = "shiftroute.io/cli"
DEFAULT_ROUTE_WEIGHT = 100  # what the API server defaults `spec.to.weight` to


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> HostPort:
    """`127.0.0.1:9443` or `[::1]:9443`. EndpointSlice addresses are IPs, so names are refused."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--endpoint {text}: expected IP:PORT, e.g. 127.0.0.1:9443")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        hint = " (use 127.0.0.1)" if host == "localhost" else ""
        raise UsageError(f"--endpoint {text}: {host!r} is not an IP address{hint}") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"--endpoint {text}: port must be a number from 1 to 65535")
    return HostPort(host, int(port_text))


def port_name(port: int, protocol: str = "TCP") -> str:
    """`oc new-app` names a service port `<port>-<protocol>`, e.g. `443-tcp`."""
    return f"{port}-{protocol.lower()}"


def service_manifest(name: str, namespace: str, port: int, target_port: int | None = None) -> Manifest:
    return {
        "apiVersion": API_VERSIONS[KIND_SERVICE],
        "kind": KIND_SERVICE,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "ports": [
                {"name": port_name(port), "port": port, "protocol": "TCP", "targetPort": target_port or port}
            ],
            "type": "ClusterIP",
        },
    }


def endpoint_slice_manifests(
    service: str, namespace: str, service_port: int, endpoints: list[HostPort]
) -> list[Manifest]:
    """One EndpointSlice per endpoint port (a slice has one port list for all its endpoints), the port
    named after the service port so `targetPort: 443-tcp` finds it."""
    by_port: dict[int, list[HostPort]] = {}
    for endpoint in endpoints:
        by_port.setdefault(endpoint.port, []).append(endpoint)
    slices = []
    for index, (port, members) in enumerate(sorted(by_port.items())):
        v6 = any(":" in m.host for m in members)
        slices.append(
            {
                "apiVersion": API_VERSIONS[KIND_ENDPOINTSLICE],
                "kind": KIND_ENDPOINTSLICE,
                "metadata": {
                    "name": service if index == 0 else f"{service}-{index + 1}",
                    "namespace": namespace,
                    "labels": {SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: MANAGED_BY_SHIFTROUTE},
                },
                "addressType": "IPv6" if v6 else "IPv4",
                "endpoints": [{"addresses": [m.host], "conditions": {"ready": True}} for m in members],
                "ports": [{"name": port_name(service_port), "port": port, "protocol": "TCP"}],
            }
        )
    return slices


def route_manifest(
    name: str,
    namespace: str,
    service: str,
    *,
    termination: str = "",
    hostname: str = "",
    path: str = "",
    target_port: str | None = None,
    certificate: str = "",
    key: str = "",
    ca_certificate: str = "",
    destination_ca_certificate: str = "",
    insecure_policy: str = "",
    wildcard_policy: str = "None",
) -> Manifest:
    spec: dict[str, Any] = {}
    if hostname:
        spec["host"] = hostname
    if path:
        spec["path"] = path
    spec["to"] = {"kind": "Service", "name": service, "weight": DEFAULT_ROUTE_WEIGHT}
    if target_port:
        spec["port"] = {"targetPort": int(target_port) if target_port.isdigit() else target_port}
    if termination:
        tls: dict[str, Any] = {"termination": termination}
        for field, value in (
            ("certificate", certificate),
            ("key", key),
            ("caCertificate", ca_certificate),
            ("destinationCACertificate", destination_ca_certificate),
            ("insecureEdgeTerminationPolicy", insecure_policy),
        ):
            if value:
                tls[field] = value
        spec["tls"] = tls
    spec["wildcardPolicy"] = wildcard_policy or "None"
    return {
        "apiVersion": API_VERSIONS[KIND_ROUTE],
        "kind": KIND_ROUTE,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": service}},
        "spec": spec,
    }
