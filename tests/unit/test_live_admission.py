"""LiveAdmitter decides exactly what admit() decides over all routes, whatever the order of changes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shiftroute.admission import RouterOptions, admit
from shiftroute.api.objects import Route
from shiftroute.live_admission import LiveAdmitter

HOSTS = ["a.example.com", "b.example.com", "x.other.com", "web-ns1.apps.localhost", ""]
NAMESPACES = ["ns1", "ns2"]
OPTIONS = [
    RouterOptions(allow_wildcard_routes=True),
    RouterOptions(allow_wildcard_routes=True, disable_namespace_ownership_check=True),
    RouterOptions(),
]


def make_route(
    i: int, host: str, ns: str, path: str, wildcard: bool, tls: str, second: int, generation: int
) -> Route:
    spec: dict[str, Any] = {"to": {"kind": "Service", "name": "web"}}
    if host:
        spec["host"] = host
    if path:
        spec["path"] = path
    if wildcard:
        spec["wildcardPolicy"] = "Subdomain"
    if tls:
        spec["tls"] = {"termination": tls}
        if tls == "reencrypt":
            spec["tls"]["termination"] = "edge"
    return Route.from_manifest(
        {
            "metadata": {
                "name": f"r{i}",
                "namespace": ns,
                "uid": f"uid-{i:03d}",
                "generation": generation,
                "creationTimestamp": f"2026-01-01T00:00:{second:02d}Z",
            },
            "spec": spec,
        }
    )


route_args = st.tuples(
    st.integers(0, 7),  # name: few, so changes hit the same routes
    st.sampled_from(HOSTS),
    st.sampled_from(NAMESPACES),
    st.sampled_from(["", "/", "/api"]),
    st.booleans(),
    st.sampled_from(["", "edge", "passthrough"]),
    st.integers(0, 5),
)
change = st.one_of(st.tuples(st.just("put"), route_args), st.tuples(st.just("delete"), st.integers(0, 7)))


@settings(max_examples=300, deadline=None)
@given(st.lists(change, min_size=1, max_size=25), st.sampled_from(OPTIONS))
def test_incremental_verdicts_equal_a_full_admission(changes: list[Any], options: RouterOptions) -> None:
    live = LiveAdmitter(options)
    routes: dict[Any, Route] = {}
    generation = 0
    for kind, payload in changes:
        if kind == "put":
            generation += 1
            i, host, ns, path, wildcard, tls, second = payload
            route = make_route(i, host, ns, path, wildcard, tls, second, generation)
            routes = {k: r for k, r in routes.items() if k.name != f"r{i}"}
            routes[route.key] = route
        else:
            routes = {k: r for k, r in routes.items() if k.name != f"r{payload}"}
        got = live.admit(routes.values())
        want = admit(routes.values(), options)
        summary = lambda vs: {k: (v.admitted, v.reason, v.host) for k, v in vs.items()}  # noqa: E731
        assert summary(got) == summary(want)


def test_unchanged_routes_keep_their_verdict_objects() -> None:
    routes = [make_route(i, f"h{i}.example.com", "ns1", "", False, "", 0, 1) for i in range(5)]
    live = LiveAdmitter(RouterOptions())
    first = live.admit(routes)
    second = live.admit([*routes, make_route(9, "new.example.com", "ns1", "", False, "", 1, 1)])
    assert all(second[r.key] is first[r.key] for r in routes)
