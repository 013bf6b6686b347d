"""Manifests as clusters export them: `oc get route,svc,endpointslice,endpoints -o yaml` (tests/data), multi-
document streams and JSON. Everything loads, validates, applies, and round-trips with unknown fields kept."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shiftroute.admission import RouterOptions, admit
from shiftroute.api.manifest import dump_json, dump_yaml, load_text, parse_documents
from shiftroute.api.objects import EndpointSlice, Route, Service
from shiftroute.api.validation import validate
from shiftroute.errors import ManifestError
from shiftroute.store.sqlite import SqliteStore

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORT = DATA / "oc-export.yaml"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


def typed_items() -> list[dict[str, Any]]:
    """The export's items exactly as written (a `kind: List` flattened, nothing converted)."""
    return [d.manifest for d in parse_documents(EXPORT.read_text(), "export")]


def without_server_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """What apply keeps of an exported object: all of it but status, resourceVersion and generation."""
    out = copy.deepcopy(manifest)
    out.pop("status", None)
    for field in ("resourceVersion", "generation"):
        out["metadata"].pop(field, None)
    return out


# -- load --------------------------------------------------------------------------------------------------


def test_export_loads_every_object() -> None:
    docs = load_text(EXPORT.read_text(), "oc-export.yaml")
    assert [(d.manifest["kind"], d.manifest["metadata"]["name"]) for d in docs] == [
        ("Route", "frontend"),
        ("Route", "frontend-canary"),
        ("Route", "payments"),
        ("Route", "mqtt"),
        ("Service", "frontend"),
        ("Service", "payments"),
        ("EndpointSlice", "frontend-x7k2p"),
        ("EndpointSlice", "payments"),  # the Endpoints object, mirrored as Kubernetes does
    ]
    assert docs[0].where == "oc-export.yaml: document 1, items[0] (Route shop/frontend)"
    assert docs[7].where.startswith("oc-export.yaml: document 1, items[7] (Endpoints shop/payments)")
    for doc in docs:
        assert validate(doc.manifest) == [], doc.where


def test_timestamps_stay_text() -> None:
    [route, *_] = typed_items()
    assert route["metadata"]["creationTimestamp"] == "2024-05-14T09:21:07Z"
    assert route["metadata"]["managedFields"][0]["time"] == "2024-05-14T09:21:07Z"
    assert route["status"]["ingress"][0]["conditions"][0]["lastTransitionTime"] == "2024-05-14T09:21:08Z"
    # Quoted numbers stay strings, as the API server wrote them.
    assert route["metadata"]["resourceVersion"] == "4471823"


def test_typed_views_read_the_export() -> None:
    docs = {
        (d.manifest["kind"], d.manifest["metadata"]["name"]): d.manifest
        for d in load_text(EXPORT.read_text())
    }
    frontend = Route.from_manifest(docs[("Route", "frontend")])
    assert frontend.spec.host == "frontend-shop.apps.ocp4.example.com"
    assert frontend.spec.termination == "edge"
    assert frontend.spec.tls is not None and frontend.spec.tls.insecure_policy == "Redirect"
    assert frontend.spec.target_port == "8080-tcp"
    assert frontend.ingress[0].router_name == "default"
    assert frontend.ingress[0].admitted is not None and frontend.ingress[0].admitted.status == "True"
    assert frontend.meta.annotations["haproxy.router.openshift.io/timeout"] == "60s"

    canary = Route.from_manifest(docs[("Route", "frontend-canary")])
    assert [(b.name, b.weight) for b in canary.spec.backends] == [("frontend", 90), ("frontend-v2", 10)]
    assert canary.spec.path == "/api"

    payments = Route.from_manifest(docs[("Route", "payments")])
    assert payments.spec.termination == "reencrypt"
    assert (
        payments.spec.tls is not None and "BEGIN CERTIFICATE" in payments.spec.tls.destination_ca_certificate
    )
    assert "BEGIN" not in repr(payments.spec.tls)  # key material never reaches a log line through repr

    svc = Service.from_manifest(docs[("Service", "payments")])
    assert [(p.name, p.port, p.target_port) for p in svc.ports] == [
        ("https", 443, "8443"),
        ("metrics", 9090, "metrics"),
    ]

    native = EndpointSlice.from_manifest(docs[("EndpointSlice", "frontend-x7k2p")])
    assert native.service_name == "frontend" and not native.mirrored
    assert [(e.addresses, e.ready, e.pod_name) for e in native.endpoints] == [
        (("10.128.2.41",), True, "frontend-7d9c8b6f5-2xk9q"),
        (("10.131.0.17",), False, "frontend-7d9c8b6f5-h4lwz"),
    ]
    mirrored = EndpointSlice.from_manifest(docs[("EndpointSlice", "payments")])
    assert mirrored.service_name == "payments" and mirrored.mirrored
    assert [(e.addresses, e.ready, e.pod_name) for e in mirrored.endpoints] == [
        (("10.129.2.8",), True, "payments-5b7f9c4d8-qq2mx"),
        (("10.130.0.55",), False, "payments-5b7f9c4d8-zt8rb"),
    ]
    assert [(p.name, p.port) for p in mirrored.ports] == [("https", 8443), ("metrics", 9090)]


def test_export_routes_are_admitted() -> None:
    routes = [
        Route.from_manifest(d.manifest)
        for d in load_text(EXPORT.read_text())
        if d.manifest["kind"] == "Route"
    ]
    verdicts = admit(routes, RouterOptions(domain="apps.ocp4.example.com"))
    assert {k.name: (v.admitted, v.reason) for k, v in verdicts.items()} == {
        "frontend": (True, ""),
        "frontend-canary": (True, ""),
        "payments": (True, ""),
        "mqtt": (True, ""),
    }


# -- store and round trip ----------------------------------------------------------------------------------


def test_apply_keeps_unknown_fields_and_the_objects_age(store: SqliteStore) -> None:
    docs = load_text(EXPORT.read_text())
    results = store.apply([d.manifest for d in docs])
    assert [r.action for r in results] == ["created"] * 8
    originals = {(m["kind"], m["metadata"]["name"]): m for m in typed_items()}
    for kind, name in [
        ("Route", "frontend"),
        ("Route", "payments"),
        ("Service", "payments"),
        ("EndpointSlice", "frontend-x7k2p"),
    ]:
        stored = store.get(kind, "shop", name)
        original = originals[(kind, name)]
        assert without_server_fields(stored) == without_server_fields(original)
        assert stored["metadata"]["uid"] == original["metadata"]["uid"]
        assert stored["metadata"]["creationTimestamp"] == original["metadata"]["creationTimestamp"]
    payments = store.get("Route", "shop", "payments")
    assert payments["spec"]["tls"]["externalCertificate"] == {"name": "payments-serving-cert"}
    assert store.get("Route", "shop", "frontend")["metadata"]["managedFields"][1]["subresource"] == "status"
    # Applying the same export again changes nothing.
    assert [r.action for r in store.apply([d.manifest for d in load_text(EXPORT.read_text())])] == [
        "unchanged"
    ] * 8


def test_status_is_not_taken_from_an_export(store: SqliteStore) -> None:
    # Status is a subresource: each router writes its own verdict; an export's status would be stale.
    store.apply([d.manifest for d in load_text(EXPORT.read_text())])
    assert "status" not in store.get("Route", "shop", "frontend")
    assert "status" not in store.get("Service", "shop", "frontend")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_and_load_round_trip(store: SqliteStore, fmt: str) -> None:
    store.apply([d.manifest for d in load_text(EXPORT.read_text())])
    items = store.list("Route").items + store.list("Service").items + store.list("EndpointSlice").items
    dump = dump_yaml if fmt == "yaml" else dump_json
    text = dump(items, as_list=True)
    again = [d.manifest for d in load_text(text, f"dump.{fmt}")]
    assert again == items
    single = dump([items[0]], as_list=False)
    assert [d.manifest for d in load_text(single)] == [items[0]]


def test_yaml_dump_shows_pem_as_literal_blocks(store: SqliteStore) -> None:
    store.apply([d.manifest for d in load_text(EXPORT.read_text())])
    text = dump_yaml([store.get("Route", "shop", "payments")], as_list=False)
    assert "destinationCACertificate: |\n      -----BEGIN CERTIFICATE-----\n" in text
    assert "creationTimestamp: '2024-05-20T11:45:02Z'" in text  # quoted: stays a string on the way back


def test_cli_applies_the_export_and_get_returns_it(cli: Run, tmp_path: Path) -> None:
    out = cli("apply", "-f", str(EXPORT), check=True).stdout
    assert out.splitlines()[0] == "route.route.openshift.io/frontend created"
    assert len(out.splitlines()) == 8
    exported = yaml.safe_load(cli("get", "routes", "-n", "shop", "-o", "yaml", check=True).stdout)
    originals = {m["metadata"]["name"]: m for m in typed_items() if m["kind"] == "Route"}
    assert {m["metadata"]["name"] for m in exported["items"]} == set(originals)
    for item in exported["items"]:
        assert without_server_fields(item) == without_server_fields(originals[item["metadata"]["name"]])
    table = cli("get", "routes", "-n", "shop", check=True).stdout.splitlines()
    assert table[2].split() == [
        "frontend-canary",
        "shop.apps.ocp4.example.com",
        "/api",
        "frontend(90%),frontend-v2(10%)",
        "8080-tcp",
        "None",
    ]
    # -n that contradicts the file is refused, naming the document.
    err = cli("apply", "-f", str(EXPORT), "-n", "other").stderr
    assert "items[0]" in err and "does not match -n 'other'" in err


# -- streams, JSON and mistakes ----------------------------------------------------------------------------

STREAM = """\
# a hand-written stream, with comments and empty documents
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - {name: 8080-tcp, port: 8080}
---
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: web
  labels: {app: web}
spec:
  to: {kind: Service, name: web}
  futureField: {keep: me}
...
"""


def test_multi_document_stream() -> None:
    docs = load_text(STREAM, "stream.yaml")
    assert [(d.where, d.manifest["kind"]) for d in docs] == [
        ("stream.yaml: document 1 (Service web)", "Service"),
        ("stream.yaml: document 3 (Route web)", "Route"),
    ]
    assert docs[1].manifest["spec"]["futureField"] == {"keep": "me"}


def test_json_single_object_and_list() -> None:
    route = {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "web"},
        "spec": {"to": {"kind": "Service", "name": "web"}, "x-unknown": [1, 2]},
    }
    [doc] = load_text(json.dumps(route), "route.json")
    assert doc.manifest == route
    listed = {"apiVersion": "v1", "kind": "RouteList", "items": [route, route | {"metadata": {"name": "b"}}]}
    docs = load_text(json.dumps(listed, indent=2), "list.json")
    assert [d.manifest["metadata"]["name"] for d in docs] == ["web", "b"]
    assert docs[1].where.startswith("list.json: document 1, items[1]")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("kind: Route\nmetadata: [unclosed\n", "bad.yaml at line 3", id="yaml-syntax-error"),
        pytest.param(
            "- a\n- b\n", "document 1: expected an object with apiVersion and kind, got list", id="list"
        ),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "kind 'Pod' is not supported", id="pod"
        ),
        pytest.param(
            "apiVersion: route.openshift.io/v2\nkind: Route\nmetadata: {name: r}\n",
            "apiVersion: expected 'route.openshift.io/v1' for kind Route, got 'route.openshift.io/v2'",
            id="wrong-api-version",
        ),
        pytest.param("kind: List\nitems: {a: 1}\n", "items: expected a list", id="list-items-not-a-list"),
        pytest.param(
            "kind: List\nitems: [1]\n", "items[0]: expected an object", id="list-item-not-an-object"
        ),
    ],
)
def test_unreadable_manifests(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_text(text, "bad.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("bad.yaml")
