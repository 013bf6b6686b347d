"""Structural validation of manifests (routes.md §2). Every broken rule is reported at once, with its field
path; no message ever quotes a certificate or key (hardening.md rule 24).

Certificate contents (does the PEM parse, does the key match) are checked at admission, where OpenShift's
router checks them too (`ExtendedValidationFailed`); this module checks shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from shiftroute.api.objects import SERVICE_NAME_LABEL, Manifest
from shiftroute.errors import FieldError

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

TERMINATIONS = ("edge", "passthrough", "reencrypt")
INSECURE_POLICIES = ("None", "Allow", "Redirect")
WILDCARD_POLICIES = ("None", "Subdomain")
# OpenShift forbids these in spec.httpHeaders: the router owns them.
FORBIDDEN_HEADER_ACTIONS = ("strict-transport-security", "proxy", "cookie", "set-cookie")
MAX_ALTERNATE_BACKENDS = 3
MAX_HEADER_ACTIONS = 20
MAX_WEIGHT = 256


def shown(value: object) -> str:
    """A user's value as a message quotes it: only when short and on one line, else just its length, so a
    certificate or key pasted into the wrong field is never echoed back (hardening.md rule 24)."""
    text = str(value)
    if len(text) <= 253 and text.isprintable():
        return repr(value)
    return f"<{len(text)} characters, not shown>"


def dns1123_subdomain_problem(host: str) -> str | None:
    """Why `host` is not a DNS-1123 subdomain (labels <= 63, total <= 253), or None when it is."""
    if not host:
        return "must not be empty"
    if len(host) > 253:
        return f"must be at most 253 characters (has {len(host)})"
    for label in host.split("."):
        if len(label) > 63:
            return f"label {shown(label)} is longer than 63 characters"
        if not _DNS1123_LABEL.match(label):
            return (
                f"label {shown(label)} is not a DNS-1123 label (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit)"
            )
    return None


def validate(manifest: Manifest) -> list[FieldError]:
    kind = manifest.get("kind")
    errors = _validate_metadata(manifest, namespaced=True)
    check = _VALIDATORS.get(str(kind))
    if check is None:
        errors.append(FieldError("kind", f"unsupported kind {shown(kind)}"))
    else:
        check(manifest, errors)
    return errors


def _validate_metadata(manifest: Manifest, namespaced: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    meta = manifest.get("metadata")
    if not isinstance(meta, Mapping):
        return [FieldError("metadata", "required")]
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append(FieldError("metadata.name", "required"))
    elif problem := dns1123_subdomain_problem(name):
        errors.append(FieldError("metadata.name", problem))
    namespace = meta.get("namespace")
    if namespaced and namespace is not None:
        if not isinstance(namespace, str) or (namespace and not _DNS1123_LABEL.match(namespace)):
            errors.append(FieldError("metadata.namespace", "must be a DNS-1123 label"))
        elif len(namespace) > 63:
            errors.append(FieldError("metadata.namespace", "must be at most 63 characters"))
    for field_name in ("labels", "annotations"):
        value = meta.get(field_name)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            errors.append(FieldError(f"metadata.{field_name}", "must be a map of strings"))
            continue
        for key, item in value.items():
            if not isinstance(item, str):
                errors.append(FieldError(f"metadata.{field_name}[{key}]", "value must be a string"))
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_target(path: str, target: Any, errors: list[FieldError]) -> None:
    if not isinstance(target, Mapping):
        errors.append(FieldError(path, "required"))
        return
    kind = target.get("kind", "Service")
    if kind not in ("Service", "", None):
        errors.append(FieldError(f"{path}.kind", f"must be Service, got {shown(kind)}"))
    name = target.get("name")
    if not isinstance(name, str) or not name:
        errors.append(FieldError(f"{path}.name", "required"))
    weight = target.get("weight")
    if weight is not None and (not _is_int(weight) or not 0 <= weight <= MAX_WEIGHT):
        errors.append(
            FieldError(f"{path}.weight", f"must be an integer from 0 to {MAX_WEIGHT}, got {shown(weight)}")
        )


def _validate_route(manifest: Manifest, errors: list[FieldError]) -> None:
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        errors.append(FieldError("spec", "required"))
        return
    host = spec.get("host")
    if host not in (None, ""):
        if not isinstance(host, str):
            errors.append(FieldError("spec.host", "must be a string"))
        elif problem := dns1123_subdomain_problem(host):
            errors.append(FieldError("spec.host", problem))
    subdomain = spec.get("subdomain")
    if subdomain not in (None, "") and (
        not isinstance(subdomain, str) or dns1123_subdomain_problem(subdomain) is not None
    ):
        errors.append(FieldError("spec.subdomain", "must be a DNS-1123 subdomain"))
    path = spec.get("path")
    if path not in (None, "") and (not isinstance(path, str) or not path.startswith("/")):
        errors.append(FieldError("spec.path", "must start with '/'"))
    elif isinstance(path, str) and any(c.isspace() or ord(c) < 0x20 for c in path):
        errors.append(FieldError("spec.path", "must not contain whitespace or control characters"))
    _validate_target("spec.to", spec.get("to"), errors)
    alternates = spec.get("alternateBackends")
    if alternates is not None:
        if not isinstance(alternates, list):
            errors.append(FieldError("spec.alternateBackends", "must be a list"))
        else:
            if len(alternates) > MAX_ALTERNATE_BACKENDS:
                errors.append(
                    FieldError(
                        "spec.alternateBackends", f"at most {MAX_ALTERNATE_BACKENDS}, got {len(alternates)}"
                    )
                )
            for i, target in enumerate(alternates):
                _validate_target(f"spec.alternateBackends[{i}]", target, errors)
    port = spec.get("port")
    if port is not None:
        target_port = port.get("targetPort") if isinstance(port, Mapping) else None
        if target_port in (None, "") or isinstance(target_port, bool):
            errors.append(FieldError("spec.port.targetPort", "required when spec.port is set"))
        elif _is_int(target_port) and not 1 <= target_port <= 65535:
            errors.append(FieldError("spec.port.targetPort", "must be from 1 to 65535"))
    wildcard = spec.get("wildcardPolicy")
    if wildcard not in (None, "") and wildcard not in WILDCARD_POLICIES:
        errors.append(FieldError("spec.wildcardPolicy", f"must be one of {', '.join(WILDCARD_POLICIES)}"))
    termination = _validate_tls(spec, errors)
    _validate_header_actions(spec, termination, errors)
    if termination == "passthrough" and isinstance(path, str) and path:
        errors.append(FieldError("spec.path", "not allowed with termination passthrough"))


def _validate_tls(spec: Mapping[str, Any], errors: list[FieldError]) -> str:
    tls = spec.get("tls")
    if tls is None:
        return ""
    if not isinstance(tls, Mapping):
        errors.append(FieldError("spec.tls", "must be an object"))
        return ""
    termination = tls.get("termination")
    if termination not in TERMINATIONS:
        errors.append(FieldError("spec.tls.termination", f"must be one of {', '.join(TERMINATIONS)}"))
        return ""
    for field_name in ("certificate", "key", "caCertificate", "destinationCACertificate"):
        value = tls.get(field_name)
        if value is not None and not isinstance(value, str):
            errors.append(FieldError(f"spec.tls.{field_name}", "must be a PEM string"))
    if termination == "passthrough":
        for field_name in ("certificate", "key", "caCertificate", "destinationCACertificate"):
            if tls.get(field_name):
                errors.append(
                    FieldError(f"spec.tls.{field_name}", "not allowed with termination passthrough")
                )
    if termination == "edge" and tls.get("destinationCACertificate"):
        errors.append(FieldError("spec.tls.destinationCACertificate", "not allowed with termination edge"))
    policy = tls.get("insecureEdgeTerminationPolicy")
    if policy not in (None, ""):
        if policy not in INSECURE_POLICIES:
            errors.append(
                FieldError(
                    "spec.tls.insecureEdgeTerminationPolicy", f"must be one of {', '.join(INSECURE_POLICIES)}"
                )
            )
        elif termination == "passthrough" and policy == "Allow":
            errors.append(
                FieldError(
                    "spec.tls.insecureEdgeTerminationPolicy",
                    "Allow is not allowed with termination passthrough (use None or Redirect)",
                )
            )
    return str(termination)


def _validate_header_actions(spec: Mapping[str, Any], termination: str, errors: list[FieldError]) -> None:
    headers = spec.get("httpHeaders")
    if headers is None:
        return
    if termination == "passthrough":
        errors.append(FieldError("spec.httpHeaders", "not allowed with termination passthrough"))
        return
    actions = headers.get("actions") if isinstance(headers, Mapping) else None
    if actions is None:
        return
    if not isinstance(actions, Mapping):
        errors.append(FieldError("spec.httpHeaders.actions", "must be an object"))
        return
    for side in ("request", "response"):
        items = actions.get(side)
        if items is None:
            continue
        path = f"spec.httpHeaders.actions.{side}"
        if not isinstance(items, list):
            errors.append(FieldError(path, "must be a list"))
            continue
        if len(items) > MAX_HEADER_ACTIONS:
            errors.append(FieldError(path, f"at most {MAX_HEADER_ACTIONS} actions, got {len(items)}"))
        for i, item in enumerate(items):
            _validate_header_action(f"{path}[{i}]", item, errors)


def _validate_header_action(path: str, item: Any, errors: list[FieldError]) -> None:
    if not isinstance(item, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return
    name = item.get("name")
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        errors.append(FieldError(f"{path}.name", "must be a valid HTTP header name"))
    elif name.lower() in FORBIDDEN_HEADER_ACTIONS:
        errors.append(FieldError(f"{path}.name", f"{name} cannot be set or deleted by a route"))
    action = item.get("action")
    kind = action.get("type") if isinstance(action, Mapping) else None
    if kind not in ("Set", "Delete"):
        errors.append(FieldError(f"{path}.action.type", "must be Set or Delete"))
    elif kind == "Set":
        setter = action.get("set") if isinstance(action, Mapping) else None
        value = setter.get("value") if isinstance(setter, Mapping) else None
        if not isinstance(value, str) or not value:
            errors.append(FieldError(f"{path}.action.set.value", "required for Set"))
        elif any(c in value for c in "\r\n\0"):
            errors.append(FieldError(f"{path}.action.set.value", "must not contain CR, LF or NUL"))


def _validate_port_number(path: str, value: Any, errors: list[FieldError]) -> None:
    if not _is_int(value) or not 1 <= value <= 65535:
        errors.append(FieldError(path, f"must be a port number from 1 to 65535, got {shown(value)}"))


def _validate_service(manifest: Manifest, errors: list[FieldError]) -> None:
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        errors.append(FieldError("spec", "required"))
        return
    ports = spec.get("ports")
    if ports is None:
        return  # a headless or ExternalName service has no ports; routes to it find no endpoints
    if not isinstance(ports, list):
        errors.append(FieldError("spec.ports", "must be a list"))
        return
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, Mapping):
            errors.append(FieldError(path, "must be an object"))
            continue
        _validate_port_number(f"{path}.port", port.get("port"), errors)
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(FieldError(f"{path}.name", "required when a service has more than one port"))
        if isinstance(name, str) and name:
            if name in names:
                errors.append(FieldError(f"{path}.name", f"duplicate port name {shown(name)}"))
            names.add(name)
        target = port.get("targetPort")
        if _is_int(target):
            _validate_port_number(f"{path}.targetPort", target, errors)
        elif target is not None and (not isinstance(target, str) or not target):
            errors.append(FieldError(f"{path}.targetPort", "must be a port number or a port name"))
        protocol = port.get("protocol")
        if protocol not in (None, "TCP", "UDP", "SCTP"):
            errors.append(FieldError(f"{path}.protocol", "must be TCP, UDP or SCTP"))


def _validate_endpoint_slice(manifest: Manifest, errors: list[FieldError]) -> None:
    meta = manifest.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping) or not labels.get(SERVICE_NAME_LABEL):
        errors.append(
            FieldError(
                f"metadata.labels[{SERVICE_NAME_LABEL}]", "required: names the service this slice serves"
            )
        )
    address_type = manifest.get("addressType")
    if address_type not in (None, "IPv4", "IPv6", "FQDN"):
        errors.append(FieldError("addressType", "must be IPv4, IPv6 or FQDN"))
    endpoints = manifest.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        errors.append(FieldError("endpoints", "must be a list"))
    for i, endpoint in enumerate(endpoints or []):
        addresses = endpoint.get("addresses") if isinstance(endpoint, Mapping) else None
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            errors.append(FieldError(f"endpoints[{i}].addresses", "at least one address is required"))
    ports = manifest.get("ports")
    if ports is not None and not isinstance(ports, list):
        errors.append(FieldError("ports", "must be a list"))
    for i, port in enumerate(ports or []):
        if not isinstance(port, Mapping):
            errors.append(FieldError(f"ports[{i}]", "must be an object"))
            continue
        _validate_port_number(f"ports[{i}].port", port.get("port"), errors)
        name = port.get("name")
        if name not in (None, "") and (not isinstance(name, str) or not _PORT_NAME.match(name)):
            errors.append(FieldError(f"ports[{i}].name", "must be a DNS-1123 label"))


_VALIDATORS: Mapping[str, Callable[[Manifest, list[FieldError]], None]] = {
    "Route": _validate_route,
    "Service": _validate_service,
    "EndpointSlice": _validate_endpoint_slice,
    "Router": lambda _m, _e: None,
}
