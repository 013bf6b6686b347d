"""Typed, frozen views of Route, Service and EndpointSlice manifests (routes.md §1-2).

A manifest is the plain dict a user wrote or a cluster exported; the store keeps it whole, unknown fields
included. The views below read only what shiftroute needs and are built from manifests that passed
validation, so they assume well-formed input but never crash on a missing optional field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

Manifest = dict[str, Any]

KIND_ROUTE = "Route"
KIND_SERVICE = "Service"
KIND_ENDPOINTSLICE = "EndpointSlice"
KIND_ROUTER = "Router"  # a router's registration: where it listens, its heartbeat (shiftroute's own kind)

API_VERSIONS: Mapping[str, str] = {
    KIND_ROUTE: "route.openshift.io/v1",
    KIND_SERVICE: "v1",
    KIND_ENDPOINTSLICE: "discovery.k8s.io/v1",
    KIND_ROUTER: "shiftroute.io/v1",
}

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
# Kubernetes mirrors hand-made Endpoints into EndpointSlices with this manager; shiftroute does the same
# when it reads an Endpoints object, and prefers native slices when a service has both.
MIRRORED_BY = "endpointslicemirroring-controller.k8s.io"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=65536)
def _instant(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


class ObjectKey(NamedTuple):
    """(kind, namespace, name). A tuple, so hashing and comparing it costs what a tuple's does (it is a
    dict key everywhere the controller and admission index 10 000 routes)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str
    namespace: str
    uid: str = ""
    creation_timestamp: str = ""
    resource_version: str = ""
    generation: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ObjectMeta:
        meta = _dict(manifest.get("metadata"))
        generation = meta.get("generation")
        return cls(
            name=_str(meta.get("name")),
            namespace=_str(meta.get("namespace")),
            uid=_str(meta.get("uid")),
            creation_timestamp=_str(meta.get("creationTimestamp")),
            resource_version=str(meta.get("resourceVersion") or ""),
            generation=generation if isinstance(generation, int) else 0,
            labels={str(k): str(v) for k, v in _dict(meta.get("labels")).items()},
            annotations={str(k): str(v) for k, v in _dict(meta.get("annotations")).items()},
        )


@dataclass(frozen=True, slots=True)
class TargetRef:
    """`spec.to` or one of `spec.alternateBackends`. A missing weight counts as 1 inside the router."""

    name: str
    weight: int | None
    kind: str = "Service"

    @property
    def effective_weight(self) -> int:
        return 1 if self.weight is None else self.weight

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetRef:
        weight = data.get("weight")
        return cls(
            name=_str(data.get("name")),
            weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else None,
            kind=_str(data.get("kind")) or "Service",
        )


@dataclass(frozen=True, slots=True)
class RouteTLS:
    termination: str
    certificate: str = ""
    key: str = ""
    ca_certificate: str = ""
    destination_ca_certificate: str = ""
    insecure_policy: str = "None"

    def __repr__(self) -> str:
        # Never let key material reach a log line through a repr.
        return f"RouteTLS(termination={self.termination!r}, insecure_policy={self.insecure_policy!r})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteTLS:
        return cls(
            termination=_str(data.get("termination")).lower(),
            certificate=_str(data.get("certificate")),
            key=_str(data.get("key")),
            ca_certificate=_str(data.get("caCertificate")),
            destination_ca_certificate=_str(data.get("destinationCACertificate")),
            insecure_policy=_str(data.get("insecureEdgeTerminationPolicy")) or "None",
        )


@dataclass(frozen=True, slots=True)
class HeaderAction:
    name: str
    action: str  # "Set" | "Delete"
    value: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeaderAction:
        action = _dict(data.get("action"))
        kind = _str(action.get("type"))
        return cls(
            name=_str(data.get("name")),
            action=kind,
            value=_str(_dict(action.get("set")).get("value")),
        )


def _target_port(port: Any) -> str | None:
    """`spec.port.targetPort` is a name or a number; routes.md §2 compares it as a string."""
    target = _dict(port).get("targetPort")
    if target is None or target == "":
        return None
    return str(target)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    host: str
    subdomain: str
    path: str
    to: TargetRef
    alternate_backends: tuple[TargetRef, ...]
    target_port: str | None
    tls: RouteTLS | None
    wildcard_policy: str
    request_headers: tuple[HeaderAction, ...] = ()
    response_headers: tuple[HeaderAction, ...] = ()

    @property
    def backends(self) -> tuple[TargetRef, ...]:
        return (self.to, *self.alternate_backends)

    @property
    def termination(self) -> str:
        """`edge`, `passthrough`, `reencrypt`, or `` for a plain-HTTP route."""
        return self.tls.termination if self.tls else ""

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> RouteSpec:
        tls = spec.get("tls")
        actions = _dict(_dict(spec.get("httpHeaders")).get("actions"))
        return cls(
            host=_str(spec.get("host")),
            subdomain=_str(spec.get("subdomain")),
            path=_str(spec.get("path")),
            to=TargetRef.from_dict(_dict(spec.get("to"))),
            alternate_backends=tuple(
                TargetRef.from_dict(_dict(b)) for b in _list(spec.get("alternateBackends"))
            ),
            target_port=_target_port(spec.get("port")),
            tls=RouteTLS.from_dict(tls) if isinstance(tls, Mapping) and tls.get("termination") else None,
            wildcard_policy=_str(spec.get("wildcardPolicy")) or "None",
            request_headers=tuple(HeaderAction.from_dict(_dict(a)) for a in _list(actions.get("request"))),
            response_headers=tuple(HeaderAction.from_dict(_dict(a)) for a in _list(actions.get("response"))),
        )


@dataclass(frozen=True, slots=True)
class RouteCondition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"type": self.type, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        if self.last_transition_time:
            out["lastTransitionTime"] = self.last_transition_time
        return out


@dataclass(frozen=True, slots=True)
class RouteIngress:
    """One router's verdict on a route: `status.ingress[]`."""

    router_name: str
    host: str
    wildcard_policy: str
    router_canonical_hostname: str
    conditions: tuple[RouteCondition, ...]

    @property
    def admitted(self) -> RouteCondition | None:
        return next((c for c in self.conditions if c.type == "Admitted"), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "routerName": self.router_name,
            "wildcardPolicy": self.wildcard_policy,
            "routerCanonicalHostname": self.router_canonical_hostname,
            "conditions": [c.to_dict() for c in self.conditions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteIngress:
        return cls(
            router_name=_str(data.get("routerName")),
            host=_str(data.get("host")),
            wildcard_policy=_str(data.get("wildcardPolicy")) or "None",
            router_canonical_hostname=_str(data.get("routerCanonicalHostname")),
            conditions=tuple(
                RouteCondition(
                    type=_str(c.get("type")),
                    status=_str(c.get("status")),
                    reason=_str(c.get("reason")),
                    message=_str(c.get("message")),
                    last_transition_time=_str(c.get("lastTransitionTime")),
                )
                for c in (_dict(x) for x in _list(data.get("conditions")))
            ),
        )


@dataclass(frozen=True, slots=True)
class Route:
    meta: ObjectMeta
    spec: RouteSpec
    ingress: tuple[RouteIngress, ...] = ()
    key: ObjectKey = field(default=ObjectKey(KIND_ROUTE, "", ""), compare=False)
    # routes.md §3 order, oldest first: creationTimestamp, then uid; namespace and name make it total.
    age_order: tuple[float, str, str, str] = field(default=(0.0, "", "", ""), compare=False)

    def __post_init__(self) -> None:
        # Made once: admission sorts and looks routes up by key on every change, 10 000 at a time.
        meta = self.meta
        object.__setattr__(self, "key", ObjectKey(KIND_ROUTE, meta.namespace, meta.name))
        object.__setattr__(
            self, "age_order", (_instant(meta.creation_timestamp), meta.uid, meta.namespace, meta.name)
        )

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Route:
        status = _dict(manifest.get("status"))
        return cls(
            meta=ObjectMeta.from_manifest(manifest),
            spec=RouteSpec.from_dict(_dict(manifest.get("spec"))),
            ingress=tuple(RouteIngress.from_dict(_dict(i)) for i in _list(status.get("ingress"))),
        )


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: str
    protocol: str = "TCP"
    app_protocol: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    meta: ObjectMeta
    ports: tuple[ServicePort, ...]

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(KIND_SERVICE, self.meta.namespace, self.meta.name)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Service:
        spec = _dict(manifest.get("spec"))
        ports = []
        for raw in (_dict(p) for p in _list(spec.get("ports"))):
            port = raw.get("port")
            port_number = port if isinstance(port, int) else 0
            target = raw.get("targetPort")
            ports.append(
                ServicePort(
                    name=_str(raw.get("name")),
                    port=port_number,
                    target_port=str(target) if target not in (None, "") else str(port_number),
                    protocol=_str(raw.get("protocol")) or "TCP",
                    app_protocol=_str(raw.get("appProtocol")),
                )
            )
        return cls(meta=ObjectMeta.from_manifest(manifest), ports=tuple(ports))


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int
    protocol: str = "TCP"
    app_protocol: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool
    target_kind: str = ""
    target_name: str = ""

    @property
    def pod_name(self) -> str:
        return self.target_name if self.target_kind == "Pod" else ""


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    meta: ObjectMeta
    service_name: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(KIND_ENDPOINTSLICE, self.meta.namespace, self.meta.name)

    @property
    def mirrored(self) -> bool:
        return self.meta.labels.get(MANAGED_BY_LABEL) == MIRRORED_BY

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> EndpointSlice:
        meta = ObjectMeta.from_manifest(manifest)
        endpoints = []
        for raw in (_dict(e) for e in _list(manifest.get("endpoints"))):
            ready = _dict(raw.get("conditions")).get("ready")
            ref = _dict(raw.get("targetRef"))
            endpoints.append(
                Endpoint(
                    addresses=tuple(str(a) for a in _list(raw.get("addresses"))),
                    # EndpointSlice API: a nil `ready` is interpreted as ready.
                    ready=ready is not False,
                    target_kind=_str(ref.get("kind")),
                    target_name=_str(ref.get("name")),
                )
            )
        ports = []
        for raw in (_dict(p) for p in _list(manifest.get("ports"))):
            port = raw.get("port")
            ports.append(
                EndpointPort(
                    name=_str(raw.get("name")),
                    port=port if isinstance(port, int) else 0,
                    protocol=_str(raw.get("protocol")) or "TCP",
                    app_protocol=_str(raw.get("appProtocol")),
                )
            )
        return cls(
            meta=meta,
            service_name=meta.labels.get(SERVICE_NAME_LABEL, ""),
            endpoints=tuple(endpoints),
            ports=tuple(ports),
        )
