"""Manifests the store tests write: a Route and a Service with the fields the store and admission need."""

from __future__ import annotations

from typing import Any


def route(
    name: str, ns: str = "demo", host: str = "", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "host": host or f"{name}.example.com",
            "to": {"kind": "Service", "name": "web", "weight": 100},
        },
    }


def service(name: str, ns: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "443-tcp", "port": 443}]},
    }
