"""compile(): servers, endpoint IDs, sticky cookie names and values (routes.md §5), routing lookups."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from shiftroute.admission import RouterOptions, admit
from shiftroute.api.objects import EndpointSlice, Route, Service
from shiftroute.routing.compile import CompileOptions, Compiler, slices_by_service


def route(name: str, **spec: Any) -> Route:
    spec.setdefault("to", {"kind": "Service", "name": "web", "weight": 100})
    return Route.from_manifest(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "uid": f"uid-{name}",
                "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": spec.pop("annotations", {}),
            },
            "spec": spec,
        }
    )


SERVICE = Service.from_manifest(
    {
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
        "spec": {"ports": [{"name": "8080-tcp", "port": 8080, "targetPort": 9000}]},
    }
)


def slice_(name: str, addresses: list[str], mirrored: bool = False, pod: str = "") -> EndpointSlice:
    labels = {"kubernetes.io/service-name": "web"}
    if mirrored:
        labels["endpointslice.kubernetes.io/managed-by"] = "endpointslicemirroring-controller.k8s.io"
    endpoint: dict[str, Any] = {"addresses": addresses, "conditions": {"ready": True}}
    if pod:
        endpoint["targetRef"] = {"kind": "Pod", "name": pod}
    return EndpointSlice.from_manifest(
        {
            "metadata": {"name": name, "namespace": "shop", "labels": labels, "resourceVersion": "1"},
            "endpoints": [endpoint],
            "ports": [{"name": "8080-tcp", "port": 9000}],
        }
    )


def compile_(routes: list[Route], slices: list[EndpointSlice]) -> Any:
    verdicts = admit(routes, RouterOptions(insecure_skip_backend_verify=True))
    return Compiler(CompileOptions()).compile(
        verdicts, {("shop", "web"): SERVICE}, slices_by_service(slices), 7
    )


def test_cookie_name_and_value_are_the_openshift_hashes() -> None:
    result = compile_([route("web", host="web.example.com")], [slice_("web-abc", ["10.0.0.1"], pod="web-1")])
    backend = result.table.backends[0]
    assert backend.cookie_name == hashlib.md5(b" shop:web").hexdigest()
    server = backend.servers[0]
    assert server.id == "pod:web-1:web:8080-tcp:10.0.0.1:9000"
    assert server.cookie_value == hashlib.md5(server.id.encode()).hexdigest()
    assert backend.cookie_suffix == b"; path=/; HttpOnly"  # plain HTTP route: no Secure


@pytest.mark.parametrize(
    ("target", "found"),
    [
        pytest.param(None, 1, id="no-port-every-endpoint-port"),
        pytest.param("8080-tcp", 1, id="port-name"),
        pytest.param("9000", 1, id="endpoint-port-number"),
        pytest.param("8080", 1, id="service-port-number"),
        pytest.param("7777", 0, id="no-such-port"),
    ],
)
def test_target_port_matching(target: str | None, found: int) -> None:
    spec: dict[str, Any] = {"host": "web.example.com"}
    if target:
        spec["port"] = {"targetPort": target}
    result = compile_([route("web", **spec)], [slice_("web-abc", ["10.0.0.1"])])
    assert len(result.table.backends[0].servers) == found


def test_mirrored_endpoints_are_dropped_when_native_slices_exist() -> None:
    result = compile_(
        [route("web", host="web.example.com")],
        [slice_("web-abc", ["10.0.0.1"]), slice_("web", ["10.0.0.1"], mirrored=True)],
    )
    assert [s.address for s in result.table.backends[0].servers] == ["10.0.0.1"]


def test_weight_is_shared_among_a_services_endpoints() -> None:
    result = compile_(
        [route("web", host="web.example.com", to={"kind": "Service", "name": "web", "weight": 60})],
        [slice_("web-abc", ["10.0.0.1"]), slice_("web-def", ["10.0.0.2"])],
    )
    assert [s.weight for s in result.table.backends[0].servers] == [30.0, 30.0]


def test_lookups_exact_before_wildcard_and_most_specific_path() -> None:
    routes = [
        route("root", host="shop.example.com"),
        route("api", host="shop.example.com", path="/api"),
        route("wild", host="any.example.com", wildcardPolicy="Subdomain"),
    ]
    verdicts = admit(routes, RouterOptions(allow_wildcard_routes=True))
    table = Compiler(CompileOptions()).compile(verdicts, {}, {}, 1).table
    assert table.match_http("shop.example.com", "/api/x").name == "api"  # type: ignore[union-attr]
    assert table.match_http("shop.example.com", "/apix").name == "root"  # type: ignore[union-attr]
    assert table.match_http("other.example.com", "/").name == "wild"  # type: ignore[union-attr]
    assert table.match_http("a.b.example.com", "/") is None  # a wildcard covers one label only
    assert table.revision == 1


def test_bad_annotation_values_are_warnings_and_the_route_compiles() -> None:
    result = compile_(
        [
            route(
                "web", host="web.example.com", annotations={"haproxy.router.openshift.io/timeout": "2 weeks"}
            )
        ],
        [],
    )
    assert len(result.table.backends) == 1
    assert result.table.backends[0].timeouts.server == 30.0
    assert any("timeout" in w for w in result.warnings)


def test_unchanged_routes_are_not_rebuilt() -> None:
    routes = [route(f"r{i}", host=f"r{i}.example.com") for i in range(3)]
    compiler = Compiler(CompileOptions())
    verdicts = admit(routes, RouterOptions())
    first = compiler.compile(verdicts, {}, {}, 1).table.backends
    second = compiler.compile(verdicts, {}, {}, 2).table.backends
    assert all(a is b for a, b in zip(first, second, strict=True))


def test_patched_tables_equal_full_builds() -> None:
    """Route by route changes through one Compiler give the tables a fresh build would give."""
    from shiftroute.live_admission import LiveAdmitter

    options = RouterOptions(allow_wildcard_routes=True)
    live, compiler = LiveAdmitter(options), Compiler(CompileOptions())
    compiler.FULL_BUILD_SHARE = 1000.0  # always patch: the path under test
    routes: dict[str, Route] = {}
    steps: list[tuple[str, dict[str, Any] | None]] = [
        ("a", {"host": "a.example.com"}),
        ("b", {"host": "a.example.com", "path": "/b"}),
        ("c", {"host": "c.example.com", "tls": {"termination": "passthrough"}}),
        ("d", {"host": "w.example.com", "wildcardPolicy": "Subdomain"}),
        ("b", None),
        ("a", {"host": "moved.example.com"}),
        ("c", None),
        ("e", {"host": "a.example.com", "path": "/e"}),
    ]
    for generation, (name, spec) in enumerate(steps, start=2):
        if spec is None:
            routes.pop(name)
        else:
            routes[name] = Route.from_manifest(
                {  # a new version of the route
                    "metadata": {
                        "name": name,
                        "namespace": "shop",
                        "uid": f"uid-{name}",
                        "generation": generation,
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                    },
                    "spec": {"to": {"kind": "Service", "name": "web"}, **spec},
                }
            )
        patched = compiler.compile(live.admit(routes.values()), {}, {}, generation).table
        fresh = Compiler(CompileOptions()).compile(admit(routes.values(), options), {}, {}, generation).table
        view = lambda t: (  # noqa: E731
            {h: [b.name for b in bs] for h, bs in t.http_exact.items()},
            {h: [b.name for b in bs] for h, bs in t.http_wildcard.items()},
            {h: b.name for h, b in t.passthrough_exact.items()},
            sorted(b.name for b in t.backends),
        )
        assert view(patched) == view(fresh), (name, spec)
