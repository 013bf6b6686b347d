"""The `shiftroute` command as a user types it: the real console script against a temporary store."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from shiftroute.pki.issue import make_ca, make_leaf, write_pair
from shiftroute.store.sqlite import SqliteStore

Run = Callable[..., subprocess.CompletedProcess[str]]


def ok(cli: Run, *args: str, input: str | None = None) -> str:
    return cli(*args, input=input, check=True).stdout


def fails(cli: Run, *args: str, input: str | None = None) -> str:
    """Run a command that must fail as a user mistake: exit 1, one `error:` line, no traceback."""
    proc = cli(*args, input=input)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    return proc.stderr


def one_line(stderr: str) -> str:
    lines = stderr.rstrip("\n").split("\n")
    assert len(lines) == 1, stderr
    return lines[0]


def get_json(cli: Run, *args: str) -> Any:
    return json.loads(ok(cli, "get", *args, "-o", "json"))


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "pki"
    ca = make_ca("Route CA")
    write_pair(ca, d, "ca")
    write_pair(make_leaf(ca, "www.example.com", []), d, "tls")
    start = datetime.now(UTC) - timedelta(days=400)
    write_pair(make_leaf(ca, "old.example.com", [], days=30, not_before=start), d, "expired")
    write_pair(make_leaf(ca, "soon.example.com", [], days=10), d, "soon")
    (d / "notes.txt").write_text("this is not a certificate\n")
    return {p.name: p for p in d.iterdir()}


@pytest.fixture
def web(cli: Run) -> None:
    ok(cli, "create", "service", "web", "--port", "443", "--endpoint", "127.0.0.1:9443")


# -- create service ----------------------------------------------------------------------------------------


def test_create_service_names_the_port_and_writes_an_endpoint_slice(cli: Run) -> None:
    out = ok(cli, "create", "service", "httpd", "--port", "443", "--endpoint", "127.0.0.1:9443")
    assert out.splitlines() == ["service/httpd created", "endpointslice.discovery.k8s.io/httpd created"]
    svc = get_json(cli, "service", "httpd")
    assert svc["spec"]["ports"] == [{"name": "443-tcp", "port": 443, "protocol": "TCP", "targetPort": 443}]
    [eps] = get_json(cli, "endpointslices")["items"]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "httpd"
    assert eps["ports"] == [{"name": "443-tcp", "port": 9443, "protocol": "TCP"}]
    assert eps["endpoints"] == [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    table = ok(cli, "get", "services").splitlines()
    assert table[0].split() == ["NAME", "TYPE", "PORT(S)", "ENDPOINTS", "AGE"]
    assert table[1].split()[:4] == ["httpd", "ClusterIP", "443/TCP", "127.0.0.1:9443"]


def test_create_service_mistakes(cli: Run, web: None) -> None:
    assert one_line(fails(cli, "create", "service", "x", "--port", "80", "--endpoint", "localhost:80")) == (
        "error: --endpoint localhost:80: 'localhost' is not an IP address (use 127.0.0.1)"
    )
    assert one_line(fails(cli, "create", "service", "web", "--port", "80")) == (
        'error: service "web" already exists in namespace "default"'
    )


# -- create route ------------------------------------------------------------------------------------------


def test_create_edge_route_targets_the_first_service_port_by_name(cli: Run, web: None) -> None:
    out = ok(cli, "create", "route", "edge", "web", "--service", "web", "--insecure-policy", "Redirect")
    assert out == "route.route.openshift.io/web created\n"
    route = get_json(cli, "route", "web")
    assert route["spec"]["port"] == {"targetPort": "443-tcp"}
    assert route["spec"]["to"] == {"kind": "Service", "name": "web", "weight": 100}
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert "host" not in route["spec"]  # the router generates it


def test_create_edge_route_embeds_certificate_files(cli: Run, web: None, pem_files: dict[str, Path]) -> None:
    ok(
        cli,
        "create",
        "route",
        "edge",
        "secure",
        "--service",
        "web",
        "--hostname",
        "www.example.com",
        "--path",
        "/app",
        "--port",
        "8443",
        "--cert",
        str(pem_files["tls.crt"]),
        "--key",
        str(pem_files["tls.key"]),
        "--ca-cert",
        str(pem_files["ca.crt"]),
    )
    spec = get_json(cli, "route", "secure")["spec"]
    assert spec["host"] == "www.example.com" and spec["path"] == "/app"
    assert spec["port"] == {"targetPort": 8443}
    assert spec["tls"]["certificate"] == pem_files["tls.crt"].read_text()
    assert spec["tls"]["key"] == pem_files["tls.key"].read_text()
    assert spec["tls"]["caCertificate"] == pem_files["ca.crt"].read_text()


def test_create_passthrough_route(cli: Run, web: None) -> None:
    ok(cli, "create", "route", "passthrough", "pt", "--service", "web", "--hostname", "pt.example.com")
    spec = get_json(cli, "route", "pt")["spec"]
    assert spec["tls"] == {"termination": "passthrough"}
    assert spec["port"] == {"targetPort": "443-tcp"}
    assert "passthrough" in one_line(
        fails(cli, "create", "route", "passthrough", "p2", "--service", "web", "--path", "/x")
    )
    assert "Allow" in one_line(
        fails(cli, "create", "route", "passthrough", "p3", "--service", "web", "--insecure-policy", "Allow")
    )
    assert "p2" not in ok(cli, "get", "routes")


def test_create_reencrypt_route(cli: Run, web: None, pem_files: dict[str, Path]) -> None:
    ok(
        cli,
        "create",
        "route",
        "reencrypt",
        "re",
        "--service",
        "web",
        "--dest-ca-cert",
        str(pem_files["ca.crt"]),
    )
    tls = get_json(cli, "route", "re")["spec"]["tls"]
    assert tls == {"termination": "reencrypt", "destinationCACertificate": pem_files["ca.crt"].read_text()}


@pytest.mark.parametrize(
    ("option", "file", "message"),
    [
        pytest.param(
            "--dest-ca-cert", "notes.txt", "--dest-ca-cert: not a PEM certificate", id="dest-ca-not-pem"
        ),
        pytest.param(
            "--dest-ca-cert", "tls.key", "--dest-ca-cert: not a PEM certificate", id="dest-ca-is-a-key"
        ),
        pytest.param("--cert", "notes.txt", "--cert: not a PEM certificate", id="cert-not-pem"),
        pytest.param("--key", "tls.crt", "--key: not a PEM private key", id="key-is-a-cert"),
        pytest.param("--dest-ca-cert", "missing.pem", "no such file", id="dest-ca-missing-file"),
    ],
)
def test_certificate_option_mistakes(
    cli: Run, web: None, pem_files: dict[str, Path], option: str, file: str, message: str
) -> None:
    path = pem_files["ca.crt"].parent / file
    line = one_line(fails(cli, "create", "route", "reencrypt", "re", "--service", "web", option, str(path)))
    assert message in line
    assert "BEGIN" not in line.split("(", 1)[0]  # names the option, never quotes the file
    assert fails(cli, "get", "route", "re")  # nothing was created


def test_create_route_for_a_missing_service_without_port(cli: Run) -> None:
    line = one_line(fails(cli, "create", "route", "edge", "web", "--service", "nope"))
    assert 'service "nope" not found in namespace "default"' in line


def test_invalid_route_is_refused_with_the_field(cli: Run, web: None) -> None:
    line = one_line(
        fails(cli, "create", "route", "edge", "web", "--service", "web", "--hostname", "Bad_Host")
    )
    assert "spec.host" in line


def test_expose_service(cli: Run, web: None) -> None:
    assert ok(cli, "expose", "service", "web") == "route.route.openshift.io/web created\n"
    ok(cli, "expose", "service", "web", "--name", "api", "--hostname", "api.example.com", "--path", "/api")
    web_route = get_json(cli, "route", "web")["spec"]
    assert "tls" not in web_route
    assert web_route["port"] == {"targetPort": "443-tcp"}
    api = get_json(cli, "route", "api")["spec"]
    assert (api["host"], api["path"], api["to"]["name"]) == ("api.example.com", "/api", "web")


# -- get ---------------------------------------------------------------------------------------------------


def _route_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {"to": {"kind": "Service", "name": "web", "weight": 100}, **spec},
    }


def test_get_routes_prints_the_columns_of_oc_get_route(cli: Run, store_path: Path, tmp_path: Path) -> None:
    docs = [
        _route_manifest(
            "canary",
            host="shop.example.com",
            to={"kind": "Service", "name": "shop-a", "weight": 60},
            alternateBackends=[{"kind": "Service", "name": "shop-b", "weight": 40}],
            port={"targetPort": "8080-tcp"},
        ),
        _route_manifest(
            "secure",
            host="www.example.com",
            path="/app",
            tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
        ),
        _route_manifest("pt", host="pt.example.com", tls={"termination": "passthrough"}),
        _route_manifest(
            "thirds",
            host="t.example.com",
            to={"name": "a", "weight": 1},
            alternateBackends=[{"name": "b", "weight": 2}],
        ),
        _route_manifest("taken", host="www.example.com"),
    ]
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump_all(docs))
    ok(cli, "apply", "-f", "routes.yaml")
    store = SqliteStore(store_path)
    try:
        condition = {
            "type": "Admitted",
            "status": "False",
            "reason": "HostAlreadyClaimed",
            "message": "older route",
        }
        ingress = {"host": "www.example.com", "routerName": "default", "conditions": [condition]}
        store.update_status("Route", "default", "taken", {"ingress": [ingress]})
        admitted = {**ingress, "conditions": [{"type": "Admitted", "status": "True"}]}
        store.update_status("Route", "default", "secure", {"ingress": [admitted]})
    finally:
        store.close()
    assert ok(cli, "get", "routes").splitlines() == [
        "NAME     HOST/PORT            PATH   SERVICES                  PORT       TERMINATION     WILDCARD",
        "canary   shop.example.com            shop-a(60%),shop-b(40%)   8080-tcp                   None",
        "pt       pt.example.com              web                       <all>      passthrough     None",
        "secure   www.example.com      /app   web                       <all>      edge/Redirect   None",
        "taken    HostAlreadyClaimed          web                       <all>                      None",
        "thirds   t.example.com               a(33%),b(66%)             <all>                      None",
    ]
    wide = ok(cli, "get", "routes", "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "ROUTERS"
    assert wide[-2].split()[-1] == "default=HostAlreadyClaimed"
    assert ok(cli, "get", "routes", "-o", "name").splitlines()[0] == "route.route.openshift.io/canary"


def test_get_all_namespaces_and_namespace_option(cli: Run, web: None) -> None:
    ok(cli, "expose", "service", "web", "--hostname", "a.example.com")
    ok(cli, "-n", "team-b", "create", "service", "web", "--port", "80")
    ok(cli, "expose", "service", "web", "--hostname", "b.example.com", "-n", "team-b")
    assert [ln.split()[0] for ln in ok(cli, "get", "routes", "-n", "team-b").splitlines()] == ["NAME", "web"]
    rows = [ln.split()[:3] for ln in ok(cli, "get", "routes", "-A").splitlines()]
    assert rows == [
        ["NAMESPACE", "NAME", "HOST/PORT"],
        ["default", "web", "a.example.com"],
        ["team-b", "web", "b.example.com"],
    ]
    empty = cli("get", "routes", "-n", "nobody")
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        0,
        "",
        "No resources found in nobody namespace.\n",
    )


def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects without what the store assigns anew on create (resourceVersion, generation)."""
    server = ("resourceVersion", "generation")
    return [{**m, "metadata": {k: v for k, v in m["metadata"].items() if k not in server}} for m in items]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_round_trips_through_apply(
    cli: Run, web: None, pem_files: dict[str, Path], fmt: str
) -> None:
    ok(
        cli,
        "create",
        "route",
        "edge",
        "web",
        "--service",
        "web",
        "--hostname",
        "www.example.com",
        "--cert",
        str(pem_files["tls.crt"]),
        "--key",
        str(pem_files["tls.key"]),
    )
    ok(cli, "annotate", "route", "web", "haproxy.router.openshift.io/timeout=5s")
    ok(cli, "expose", "service", "web", "--name", "plain", "--hostname", "plain.example.com")
    before = {
        "route": get_json(cli, "routes"),
        "svc": get_json(cli, "services"),
        "eps": get_json(cli, "endpointslices"),
    }
    files = {kind: ok(cli, "get", kind, "-o", fmt) for kind in ("routes", "services", "endpointslices")}
    # Applying the export unchanged changes nothing.
    for text in files.values():
        out = ok(cli, "apply", "-f", "-", input=text)
        assert out.split("\n")[0].endswith(" unchanged"), out
    assert get_json(cli, "routes") == before["route"]
    assert get_json(cli, "services") == before["svc"]
    # Delete everything and apply the exports: the same objects come back, PEM blocks intact.
    ok(cli, "delete", "route", "web", "plain")
    ok(cli, "delete", "service", "web")
    for text in files.values():
        assert "created" in ok(cli, "apply", "-f", "-", input=text)
    after = get_json(cli, "routes")
    assert strip(after["items"]) == strip(before["route"]["items"])
    assert [m["metadata"]["name"] for m in after["items"]] == ["plain", "web"]
    assert after["items"][1]["spec"]["tls"]["key"] == pem_files["tls.key"].read_text()
    assert strip(get_json(cli, "endpointslices")["items"]) == strip(before["eps"]["items"])


def test_apply_of_a_bad_document_changes_nothing_and_names_it(cli: Run, web: None, tmp_path: Path) -> None:
    ok(cli, "expose", "service", "web", "--hostname", "keep.example.com")
    revision_before = get_json(cli, "route", "web")["metadata"]["resourceVersion"]
    good = _route_manifest("new-one", host="new.example.com")
    changed = _route_manifest("web", host="changed.example.com")
    bad = _route_manifest("broken", host="broken.example.com", path="no-slash")
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump_all([good, changed, bad]))
    err = fails(cli, "apply", "-f", "multi.yaml")
    assert "nothing was applied" in err
    assert "multi.yaml: document 3" in err
    assert "Route default/broken" in err or "Route broken" in err
    assert "spec.path: must start with '/'" in err
    assert err.count("Route") == 1, err  # the document is named once, not twice
    names = [ln.split()[0] for ln in ok(cli, "get", "routes").splitlines()[1:]]
    assert names == ["web"]
    route = get_json(cli, "route", "web")
    assert route["spec"]["host"] == "keep.example.com"
    assert route["metadata"]["resourceVersion"] == revision_before


def test_apply_lists_every_bad_document(cli: Run, tmp_path: Path) -> None:
    docs = [_route_manifest("a", path="x"), _route_manifest("b", host="Bad_Host"), _route_manifest("c")]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(docs))
    err = cli("apply", "-f", "bad.yaml").stderr
    assert "document 1" in err and "spec.path" in err
    assert "document 2" in err and "spec.host" in err
    assert "document 3" not in err


def test_hand_written_manifest_with_empty_maps(cli: Run, tmp_path: Path) -> None:
    # In YAML a bare `annotations:` or `metadata:` is null, not an empty map.
    (tmp_path / "empty.yaml").write_text(
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: web\n  annotations:\n  labels:\n"
        "spec:\n  to: {kind: Service, name: web}\n"
    )
    ok(cli, "apply", "-f", "empty.yaml")
    ok(cli, "annotate", "route", "web", "a=b")
    assert get_json(cli, "route", "web")["metadata"]["annotations"] == {"a": "b"}
    (tmp_path / "nometa.yaml").write_text(
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\nspec:\n  to: {kind: Service, name: web}\n"
    )
    assert "metadata.name: required" in one_line(fails(cli, "apply", "-f", "nometa.yaml"))


def test_apply_unreadable_input(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: Route\nmetadata: [unclosed\n")
    assert "broken.yaml" in one_line(fails(cli, "apply", "-f", "broken.yaml"))
    (tmp_path / "ingress.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\n"
    )
    assert "kind 'Ingress' is not supported" in one_line(fails(cli, "apply", "-f", "ingress.yaml"))


# -- describe ----------------------------------------------------------------------------------------------


def test_describe_route_shows_certificates_and_flags_expiry(
    cli: Run, web: None, pem_files: dict[str, Path], store_path: Path
) -> None:
    ok(
        cli,
        "create",
        "route",
        "reencrypt",
        "web",
        "--service",
        "web",
        "--hostname",
        "www.example.com",
        "--cert",
        str(pem_files["tls.crt"]),
        "--key",
        str(pem_files["tls.key"]),
        "--dest-ca-cert",
        str(pem_files["ca.crt"]),
    )
    ok(
        cli,
        "create",
        "route",
        "edge",
        "old",
        "--service",
        "web",
        "--hostname",
        "old.example.com",
        "--cert",
        str(pem_files["expired.crt"]),
        "--key",
        str(pem_files["expired.key"]),
    )
    store = SqliteStore(store_path)
    try:
        condition = {
            "type": "Admitted",
            "status": "False",
            "reason": "ExtendedValidationFailed",
            "message": "spec.tls.key: does not match",
        }
        store.update_status(
            "Route", "default", "web", {"ingress": [{"routerName": "r1", "conditions": [condition]}]}
        )
    finally:
        store.close()
    out = ok(cli, "describe", "route", "web")
    assert "spec.tls.certificate:" in out
    assert "subject:  CN=www.example.com" in out
    assert "issuer:   CN=Route CA" in out
    assert "spec.tls.destinationCACertificate:" in out
    assert "expires:" in out and "WARNING" not in out
    assert "Endpoints:" in out and "127.0.0.1:9443" in out
    assert "rejected by router r1: ExtendedValidationFailed" in out
    key_body = [ln for ln in pem_files["tls.key"].read_text().splitlines() if not ln.startswith("-----")]
    assert not any(line in out for line in key_body)
    old = ok(cli, "describe", "route", "old")
    assert "subject:  CN=old.example.com" in old
    assert "WARNING: expired on" in old
    ok(
        cli,
        "create",
        "route",
        "edge",
        "soon",
        "--service",
        "web",
        "--hostname",
        "soon.example.com",
        "--cert",
        str(pem_files["soon.crt"]),
        "--key",
        str(pem_files["soon.key"]),
    )
    assert "WARNING: expires in 10 days" in ok(cli, "describe", "route", "soon")
    listing = cli("get", "routes")
    assert (
        "Warning: route default/old: spec.tls.certificate (CN=old.example.com) expired on" in listing.stderr
    )


def test_describe_service(cli: Run, web: None) -> None:
    ok(cli, "expose", "service", "web")
    out = ok(cli, "describe", "service", "web")
    assert "443-tcp  443/TCP" in out
    assert "127.0.0.1:9443" in out
    assert "Routes:" in out and out.rstrip().endswith("web")


# -- delete, annotate, errors ------------------------------------------------------------------------------


def test_delete(cli: Run, web: None) -> None:
    ok(cli, "expose", "service", "web")
    assert ok(cli, "delete", "route", "web") == 'route.route.openshift.io "web" deleted\n'
    assert (
        one_line(fails(cli, "get", "route", "web")) == 'error: route "web" not found in namespace "default"'
    )
    ok(cli, "delete", "service", "web")
    assert get_json(cli, "endpointslices")["items"] == []  # the service took its endpoints with it
    assert one_line(fails(cli, "delete", "route", "web", "-n", "shop")) == (
        'error: route "web" not found in namespace "shop"'
    )


def test_annotate(cli: Run, web: None) -> None:
    ok(cli, "expose", "service", "web")
    key = "haproxy.router.openshift.io/balance"

    def annotations() -> dict[str, str]:
        return get_json(cli, "route", "web")["metadata"].get("annotations", {})  # type: ignore[no-any-return]

    assert (
        ok(cli, "annotate", "route", "web", f"{key}=roundrobin", "a=1")
        == "route.route.openshift.io/web annotated\n"
    )
    assert annotations() == {key: "roundrobin", "a": "1"}
    line = one_line(fails(cli, "annotate", "route", "web", f"{key}=source"))
    assert "--overwrite" in line and key in line
    assert annotations()[key] == "roundrobin"
    ok(cli, "annotate", "route", "web", f"{key}=source", "--overwrite")
    assert annotations()[key] == "source"
    ok(cli, "annotate", "route", "web", f"{key}-")
    assert annotations() == {"a": "1"}
    assert get_json(cli, "route", "web")["metadata"]["generation"] == 4
    assert "KEY=VALUE" in one_line(fails(cli, "annotate", "route", "web", "novalue"))
    assert 'route "nope" not found' in one_line(fails(cli, "annotate", "route", "nope", "a=b"))


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("describe", "route", "x", "-n", "y"), id="describe"),
        pytest.param(("get", "route", "x", "-n", "y"), id="get"),
        pytest.param(("delete", "route", "x", "-n", "y"), id="delete"),
        pytest.param(("-n", "y", "annotate", "route", "x", "a=b"), id="annotate"),
    ],
)
def test_not_found_message(cli: Run, args: tuple[str, ...]) -> None:
    assert one_line(fails(cli, *args)) == 'error: route "x" not found in namespace "y"'


def test_unknown_resource_type(cli: Run) -> None:
    assert 'unknown resource type "ingress"' in one_line(fails(cli, "get", "ingress"))


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("create",),
        ("create", "service"),
        ("create", "route"),
        ("create", "route", "edge"),
        ("create", "route", "passthrough"),
        ("create", "route", "reencrypt"),
        ("expose", "service"),
        ("apply",),
        ("get",),
        ("describe",),
        ("delete",),
        ("annotate",),
        ("pki",),
        ("pki", "ca"),
        ("pki", "cert"),
        ("pki", "inspect"),
    ],
    ids=lambda c: "-".join(c) or "shiftroute",
)
def test_help_on_every_command(cli: Run, command: tuple[str, ...]) -> None:
    proc = cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: shiftroute")
