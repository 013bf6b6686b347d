"""Structural validation of manifests (routes.md §2 and the termination table): every rule, its exact field
path, every error at once, and never a byte of key material in a message (hardening.md rule 24)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest

from shiftroute.api.validation import validate
from shiftroute.errors import FieldError, ValidationError
from shiftroute.pki.issue import make_ca, make_leaf


@functools.cache
def pem() -> dict[str, str]:
    """Real PEM material: a CA, a leaf signed by it, and the leaf's key."""
    ca = make_ca("validation-ca")
    leaf = make_leaf(ca, "www.example.com", [])
    return {"ca": ca.cert_pem(), "cert": leaf.cert_pem(), "key": leaf.key_pem()}


def secret_lines() -> list[str]:
    """Body lines of every PEM block: none of them may ever be quoted in a message."""
    lines = []
    for text in pem().values():
        lines += [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    return lines


def assert_no_key_material(texts: list[str]) -> None:
    for text in texts:
        assert "-----BEGIN" not in text, text
        for line in secret_lines():
            assert line not in text, f"key material leaked into: {text}"


def route(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    base_spec: dict[str, Any] = {
        "host": "www.example.com",
        "to": {"kind": "Service", "name": "web", "weight": 100},
    }
    base_spec.update(spec or {})
    metadata = {"name": "web", "namespace": "demo", **meta}
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": metadata, "spec": base_spec}


def tls(termination: str, **fields: str) -> dict[str, Any]:
    """A tls block; field values naming PEM material (cert, key, ca) are replaced by the real PEM."""
    out: dict[str, Any] = {"termination": termination}
    for name, value in fields.items():
        out[name] = pem().get(value, value)
    return out


def paths(errors: list[FieldError]) -> list[str]:
    return sorted(e.path for e in errors)


def action(name: str, kind: str = "Set", value: str | None = "v") -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind}
    if kind == "Set" and value is not None:
        body["set"] = {"value": value}
    return {"name": name, "action": body}


VALID_ROUTES = [
    pytest.param({}, id="plain-http"),
    pytest.param({"host": ""}, id="empty-host-router-generates-one"),
    pytest.param({"host": "", "subdomain": "shop"}, id="subdomain-without-host"),
    pytest.param({"path": "/api"}, id="path"),
    pytest.param({"path": "/"}, id="root-path"),
    pytest.param({"tls": tls("edge")}, id="edge-default-certificate"),
    pytest.param({"tls": tls("edge", certificate="cert", key="key", caCertificate="ca")}, id="edge-own-cert"),
    pytest.param({"tls": tls("edge", insecureEdgeTerminationPolicy="Allow")}, id="edge-insecure-allow"),
    pytest.param({"tls": tls("edge", insecureEdgeTerminationPolicy="Redirect")}, id="edge-insecure-redirect"),
    pytest.param({"tls": tls("edge", insecureEdgeTerminationPolicy="None")}, id="edge-insecure-none"),
    pytest.param({"tls": tls("reencrypt")}, id="reencrypt-without-dest-ca-is-structurally-valid"),
    pytest.param(
        {"tls": tls("reencrypt", certificate="cert", key="key", destinationCACertificate="ca")},
        id="reencrypt-with-dest-ca",
    ),
    pytest.param(
        {"tls": tls("reencrypt", insecureEdgeTerminationPolicy="Allow")}, id="reencrypt-insecure-allow"
    ),
    pytest.param(
        {
            "path": "/api",
            "tls": tls("reencrypt", destinationCACertificate="ca"),
            "httpHeaders": {"actions": {"request": [action("X-Forwarded-Client", "Set", "router")]}},
        },
        id="reencrypt-with-path-and-headers",
    ),
    pytest.param({"tls": tls("passthrough")}, id="passthrough"),
    pytest.param(
        {"tls": tls("passthrough", insecureEdgeTerminationPolicy="Redirect")},
        id="passthrough-insecure-redirect",
    ),
    pytest.param(
        {"tls": tls("passthrough", insecureEdgeTerminationPolicy="None")}, id="passthrough-insecure-none"
    ),
    pytest.param({"port": {"targetPort": "443-tcp"}}, id="target-port-name"),
    pytest.param({"port": {"targetPort": 8443}}, id="target-port-number"),
    pytest.param({"to": {"kind": "Service", "name": "web"}}, id="missing-weight"),
    pytest.param({"to": {"kind": "Service", "name": "web", "weight": 0}}, id="weight-0"),
    pytest.param({"to": {"kind": "Service", "name": "web", "weight": 256}}, id="weight-256"),
    pytest.param(
        {"alternateBackends": [{"kind": "Service", "name": f"b{i}", "weight": 10} for i in range(3)]},
        id="three-alternate-backends",
    ),
    pytest.param({"wildcardPolicy": "Subdomain"}, id="wildcard-subdomain"),
    pytest.param({"wildcardPolicy": "None"}, id="wildcard-none"),
    pytest.param(
        {"httpHeaders": {"actions": {"request": [action(f"X-H{i}") for i in range(20)], "response": []}}},
        id="twenty-request-header-actions",
    ),
    pytest.param(
        {"tls": tls("edge"), "httpHeaders": {"actions": {"response": [action("X-Frame-Options", "Delete")]}}},
        id="edge-header-delete",
    ),
]


@pytest.mark.parametrize("spec", VALID_ROUTES)
def test_valid_routes_have_no_errors(spec: dict[str, Any]) -> None:
    assert validate(route(spec)) == []


INVALID_ROUTES = [
    # host and subdomain (routes.md §2: DNS-1123 subdomain, labels <= 63, total <= 253)
    pytest.param({"host": "WWW.example.com"}, ["spec.host"], id="host-uppercase-rejected"),
    pytest.param({"host": "www_1.example.com"}, ["spec.host"], id="host-underscore-rejected"),
    pytest.param({"host": "-www.example.com"}, ["spec.host"], id="host-leading-dash-rejected"),
    pytest.param({"host": "www..example.com"}, ["spec.host"], id="host-empty-label-rejected"),
    pytest.param({"host": "a" * 64 + ".example.com"}, ["spec.host"], id="host-label-64-chars-rejected"),
    pytest.param({"host": ".".join(["a" * 63] * 4) + ".b"}, ["spec.host"], id="host-254-chars-rejected"),
    pytest.param({"host": 42}, ["spec.host"], id="host-not-a-string-rejected"),
    pytest.param({"host": "", "subdomain": "Shop_1"}, ["spec.subdomain"], id="subdomain-invalid-rejected"),
    # path
    pytest.param({"path": "api"}, ["spec.path"], id="path-without-slash-rejected"),
    pytest.param({"path": "/a b"}, ["spec.path"], id="path-with-space-rejected"),
    pytest.param({"path": "/a\nb"}, ["spec.path"], id="path-with-newline-rejected"),
    pytest.param(
        {"path": "/api", "tls": tls("passthrough")}, ["spec.path"], id="passthrough-with-path-rejected"
    ),
    # to / alternateBackends / weights
    pytest.param({"to": None}, ["spec.to"], id="to-missing-rejected"),
    pytest.param({"to": {"kind": "Service"}}, ["spec.to.name"], id="to-name-missing-rejected"),
    pytest.param(
        {"to": {"kind": "Deployment", "name": "web"}}, ["spec.to.kind"], id="to-kind-not-service-rejected"
    ),
    pytest.param({"to": {"name": "web", "weight": 257}}, ["spec.to.weight"], id="weight-257-rejected"),
    pytest.param({"to": {"name": "web", "weight": -1}}, ["spec.to.weight"], id="weight-negative-rejected"),
    pytest.param({"to": {"name": "web", "weight": "50"}}, ["spec.to.weight"], id="weight-string-rejected"),
    pytest.param({"to": {"name": "web", "weight": True}}, ["spec.to.weight"], id="weight-bool-rejected"),
    pytest.param(
        {"alternateBackends": [{"name": f"b{i}"} for i in range(4)]},
        ["spec.alternateBackends"],
        id="four-alternate-backends-rejected",
    ),
    pytest.param(
        {"alternateBackends": [{"name": "b0"}, {"name": "b1", "weight": 300}]},
        ["spec.alternateBackends[1].weight"],
        id="alternate-weight-300-rejected",
    ),
    pytest.param(
        {"alternateBackends": [{"weight": 1}]},
        ["spec.alternateBackends[0].name"],
        id="alternate-without-name",
    ),
    pytest.param(
        {"alternateBackends": {"name": "b"}}, ["spec.alternateBackends"], id="alternates-not-a-list"
    ),
    # port
    pytest.param({"port": {"targetPort": 0}}, ["spec.port.targetPort"], id="target-port-0-rejected"),
    pytest.param({"port": {"targetPort": 65536}}, ["spec.port.targetPort"], id="target-port-65536-rejected"),
    pytest.param({"port": {}}, ["spec.port.targetPort"], id="port-without-target-port-rejected"),
    # tls: the termination table
    pytest.param({"tls": tls("Edge2")}, ["spec.tls.termination"], id="termination-unknown-rejected"),
    pytest.param({"tls": {"certificate": "x"}}, ["spec.tls.termination"], id="termination-missing-rejected"),
    pytest.param({"tls": "edge"}, ["spec.tls"], id="tls-not-an-object-rejected"),
    pytest.param(
        {"tls": tls("edge", destinationCACertificate="ca")},
        ["spec.tls.destinationCACertificate"],
        id="edge-with-dest-ca-rejected",
    ),
    pytest.param(
        {"tls": tls("passthrough", certificate="cert")},
        ["spec.tls.certificate"],
        id="passthrough-with-cert-rejected",
    ),
    pytest.param(
        {"tls": tls("passthrough", key="key")}, ["spec.tls.key"], id="passthrough-with-key-rejected"
    ),
    pytest.param(
        {"tls": tls("passthrough", caCertificate="ca")},
        ["spec.tls.caCertificate"],
        id="passthrough-with-ca-rejected",
    ),
    pytest.param(
        {"tls": tls("passthrough", destinationCACertificate="ca")},
        ["spec.tls.destinationCACertificate"],
        id="passthrough-with-dest-ca-rejected",
    ),
    pytest.param(
        {"tls": tls("passthrough", insecureEdgeTerminationPolicy="Allow")},
        ["spec.tls.insecureEdgeTerminationPolicy"],
        id="passthrough-insecure-allow-rejected",
    ),
    pytest.param(
        {"tls": tls("edge", insecureEdgeTerminationPolicy="redirect")},
        ["spec.tls.insecureEdgeTerminationPolicy"],
        id="insecure-policy-unknown-rejected",
    ),
    pytest.param(
        {"tls": {"termination": "edge", "certificate": 7}},
        ["spec.tls.certificate"],
        id="certificate-not-a-string",
    ),
    # wildcard policy
    pytest.param({"wildcardPolicy": "All"}, ["spec.wildcardPolicy"], id="wildcard-policy-unknown-rejected"),
    # httpHeaders
    pytest.param(
        {"tls": tls("passthrough"), "httpHeaders": {"actions": {"request": [action("X-A")]}}},
        ["spec.httpHeaders"],
        id="passthrough-with-http-headers-rejected",
    ),
    pytest.param(
        {"httpHeaders": {"actions": {"request": [action(f"X-H{i}") for i in range(21)]}}},
        ["spec.httpHeaders.actions.request"],
        id="twenty-one-request-actions-rejected",
    ),
    pytest.param(
        {"httpHeaders": {"actions": {"response": [action(f"X-H{i}") for i in range(21)]}}},
        ["spec.httpHeaders.actions.response"],
        id="twenty-one-response-actions-rejected",
    ),
    *[
        pytest.param(
            {"httpHeaders": {"actions": {side: [action("X-Ok"), action(name)]}}},
            [f"spec.httpHeaders.actions.{side}[1].name"],
            id=f"{side}-header-{name.lower()}-forbidden",
        )
        for side in ("request", "response")
        for name in ("Strict-Transport-Security", "Proxy", "Cookie", "set-cookie")
    ],
    pytest.param(
        {"httpHeaders": {"actions": {"request": [action("Bad Header")]}}},
        ["spec.httpHeaders.actions.request[0].name"],
        id="header-name-invalid-rejected",
    ),
    pytest.param(
        {"httpHeaders": {"actions": {"request": [action("X-A", "Append")]}}},
        ["spec.httpHeaders.actions.request[0].action.type"],
        id="header-action-type-unknown-rejected",
    ),
    pytest.param(
        {"httpHeaders": {"actions": {"request": [action("X-A", "Set", None)]}}},
        ["spec.httpHeaders.actions.request[0].action.set.value"],
        id="header-set-without-value-rejected",
    ),
    pytest.param(
        {"httpHeaders": {"actions": {"response": [action("X-A", "Set", "a\r\nInjected: 1")]}}},
        ["spec.httpHeaders.actions.response[0].action.set.value"],
        id="header-set-value-crlf-rejected",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), INVALID_ROUTES)
def test_invalid_routes_report_exact_field_paths(spec: dict[str, Any], expected: list[str]) -> None:
    errors = validate(route(spec))
    assert paths(errors) == sorted(expected)
    assert all(e.message for e in errors)
    assert_no_key_material([str(e) for e in errors])


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        pytest.param({"name": ""}, ["metadata.name"], id="name-missing-rejected"),
        pytest.param({"name": "Web_1"}, ["metadata.name"], id="name-invalid-rejected"),
        pytest.param({"namespace": "My-NS"}, ["metadata.namespace"], id="namespace-invalid-rejected"),
        pytest.param({"namespace": "a" * 64}, ["metadata.namespace"], id="namespace-64-chars-rejected"),
        pytest.param({"labels": {"app": 1}}, ["metadata.labels[app]"], id="label-value-not-string"),
        pytest.param({"annotations": ["a"]}, ["metadata.annotations"], id="annotations-not-a-map"),
    ],
)
def test_invalid_metadata(meta: dict[str, Any], expected: list[str]) -> None:
    assert paths(validate(route(**meta))) == expected


def test_route_without_spec() -> None:
    manifest = route()
    del manifest["spec"]
    assert paths(validate(manifest)) == ["spec"]


def test_every_error_is_reported_at_once() -> None:
    manifest = route(
        {
            "host": "Bad_Host",
            "path": "/x",
            "to": {"kind": "Service", "name": "web", "weight": 999},
            "alternateBackends": [{"name": f"b{i}"} for i in range(4)],
            "wildcardPolicy": "Everything",
            "tls": tls(
                "passthrough",
                certificate="cert",
                key="key",
                caCertificate="ca",
                destinationCACertificate="ca",
                insecureEdgeTerminationPolicy="Allow",
            ),
            "httpHeaders": {"actions": {"request": [action("Cookie")]}},
        },
        name="Bad_Name",
    )
    errors = validate(manifest)
    assert paths(errors) == sorted(
        [
            "metadata.name",
            "spec.host",
            "spec.path",
            "spec.to.weight",
            "spec.alternateBackends",
            "spec.wildcardPolicy",
            "spec.tls.certificate",
            "spec.tls.key",
            "spec.tls.caCertificate",
            "spec.tls.destinationCACertificate",
            "spec.tls.insecureEdgeTerminationPolicy",
            "spec.httpHeaders",
        ]
    )
    # The error a user sees joins them all, one field path each, without the PEM.
    text = str(ValidationError("route demo/Bad_Name", errors))
    assert "spec.tls.key: not allowed with termination passthrough" in text
    assert_no_key_material([text])


def test_edge_with_dest_ca_message() -> None:
    [error] = validate(route({"tls": tls("edge", destinationCACertificate="ca")}))
    assert str(error) == "spec.tls.destinationCACertificate: not allowed with termination edge"


def _stuff_everywhere(manifest: Any, value: str) -> Any:
    """Replace every scalar in a manifest with `value` (key material where it does not belong)."""
    if isinstance(manifest, dict):
        return {k: _stuff_everywhere(v, value) for k, v in manifest.items()}
    if isinstance(manifest, list):
        return [_stuff_everywhere(v, value) for v in manifest]
    return value


@pytest.mark.parametrize("material", ["key", "cert", "ca"])
def test_key_material_in_any_field_is_never_quoted(material: str) -> None:
    full = route(
        {
            "subdomain": "x",
            "path": "/x",
            "alternateBackends": [{"kind": "Service", "name": "b", "weight": 1}],
            "port": {"targetPort": 1},
            "wildcardPolicy": "None",
            "tls": tls("edge", certificate="cert", key="key", insecureEdgeTerminationPolicy="None"),
            "httpHeaders": {"actions": {"request": [action("X-A")], "response": [action("X-B")]}},
        },
        labels={"app": "web"},
        annotations={"a": "b"},
    )
    stuffed = _stuff_everywhere(full, pem()[material])
    stuffed["apiVersion"], stuffed["kind"] = full["apiVersion"], full["kind"]
    errors = validate(stuffed)
    assert errors  # host, path, name, weight, ... are all wrong now
    assert_no_key_material([str(e) for e in errors] + [str(ValidationError("route", errors))])


def service(ports: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"ports": ports},
    }


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        pytest.param(
            [{"name": "443-tcp", "port": 443, "targetPort": 8443, "protocol": "TCP"}], [], id="one-port"
        ),
        pytest.param([{"port": 80, "targetPort": "http"}], [], id="unnamed-single-port-named-target"),
        pytest.param(None, [], id="headless-no-ports"),
        pytest.param([{"port": 0}], ["spec.ports[0].port"], id="port-0-rejected"),
        pytest.param([{"port": 70000}], ["spec.ports[0].port"], id="port-70000-rejected"),
        pytest.param(
            [{"port": 80, "targetPort": 0}], ["spec.ports[0].targetPort"], id="target-port-0-rejected"
        ),
        pytest.param(
            [{"port": 80}, {"port": 443}],
            ["spec.ports[0].name", "spec.ports[1].name"],
            id="two-unnamed-ports-rejected",
        ),
        pytest.param(
            [{"name": "a", "port": 80}, {"name": "a", "port": 443}],
            ["spec.ports[1].name"],
            id="duplicate-name-rejected",
        ),
        pytest.param(
            [{"port": 80, "protocol": "HTTP"}], ["spec.ports[0].protocol"], id="protocol-http-rejected"
        ),
        pytest.param("80", ["spec.ports"], id="ports-not-a-list"),
    ],
)
def test_service_validation(ports: Any, expected: list[str]) -> None:
    assert paths(validate(service(ports))) == sorted(expected)


def endpoint_slice(**fields: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "443-tcp", "port": 8443, "protocol": "TCP"}],
    }
    manifest.update(fields)
    return manifest


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, [], id="valid-slice"),
        pytest.param(
            {"metadata": {"name": "web-abc", "namespace": "demo"}},
            ["metadata.labels[kubernetes.io/service-name]"],
            id="service-name-label-missing-rejected",
        ),
        pytest.param({"addressType": "IPv5"}, ["addressType"], id="address-type-rejected"),
        pytest.param(
            {"endpoints": [{"addresses": []}]}, ["endpoints[0].addresses"], id="no-addresses-rejected"
        ),
        pytest.param(
            {"ports": [{"name": "HTTPS", "port": 443}]}, ["ports[0].name"], id="port-name-uppercase"
        ),
        pytest.param({"ports": [{"name": "https", "port": 0}]}, ["ports[0].port"], id="port-0-rejected"),
    ],
)
def test_endpoint_slice_validation(fields: dict[str, Any], expected: list[str]) -> None:
    assert paths(validate(endpoint_slice(**fields))) == expected


def test_unknown_kind() -> None:
    manifest = copy.deepcopy(route())
    manifest["kind"] = "Ingress"
    assert paths(validate(manifest)) == ["kind"]
