"""The ordered checks of `shiftroute diagnose route`, from the store to the wire.

Each check returns a Check: PASS or FAIL, a one-line reason and, on failure, a concrete fix. A Run carries
what earlier checks learned (the admitting router, the endpoints) to later ones; the first failure ends
the run, because every later link depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shiftroute.api.objects import EndpointSlice, Route, RouteIngress, Service
from shiftroute.diagnose.facts import Facts, RouterInfo, RouterURL
from shiftroute.diagnose.probes import hostport, tcp_connect
from shiftroute.routing.compile import servers_for
from shiftroute.routing.table import Server


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    title: str
    passed: bool
    reason: str
    fix: str = ""
    details: tuple[str, ...] = ()  # what was seen (e.g. the backend's certificate) and notes


@dataclass(frozen=True, slots=True)
class Options:
    router: RouterURL | None = None  # --router; default: the live router registered in the store
    service_ca_pem: str = ""  # --service-ca: what reencrypt routes without destinationCACertificate use
    sni: bool = True  # --no-sni: send the final request as a client connecting by IP address would


@dataclass(slots=True)
class Run:
    facts: Facts
    options: Options
    route: Route
    host: str = ""
    router: RouterInfo | None = None
    servers: list[Server] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.route.meta.namespace}/{self.route.meta.name}"

    @property
    def kind(self) -> str:
        return self.route.spec.termination or "plain HTTP"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    namespace: str
    name: str
    checks: tuple[Check, ...]
    not_run: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks) and not self.not_run


STEPS = ("route", "admitted", "router", "service", "endpoints", "connect", "backend", "request")
TITLES = {
    "route": "route exists",
    "admitted": "admitted",
    "router": "router serves it",
    "service": "service exists",
    "endpoints": "ready endpoints",
    "connect": "TCP connect",
    "backend": "backend protocol",
    "request": "request via router",
}


def passed(step: str, reason: str, details: tuple[str, ...] = ()) -> Check:
    return Check(step, TITLES[step], True, reason, "", details)


def failed(step: str, reason: str, fix: str, details: tuple[str, ...] = ()) -> Check:
    return Check(step, TITLES[step], False, reason, fix, details)


def diagnose_route(facts: Facts, options: Options) -> Diagnosis:
    from shiftroute.diagnose.backend import check_backend, check_request

    if facts.route is None:
        check = check_route_missing(facts)
        return Diagnosis(facts.namespace, facts.name, (check,), tuple(TITLES[s] for s in STEPS[1:]))
    run = Run(facts, options, facts.route)
    steps: list[Callable[[Run], Check]] = [
        check_route,
        check_admitted,
        check_router,
        check_service,
        check_endpoints,
        check_connect,
        check_backend,
        check_request,
    ]
    checks: list[Check] = []
    for index, step in enumerate(steps):
        check = step(run)
        checks.append(check)
        if not check.passed:
            return Diagnosis(
                facts.namespace, facts.name, tuple(checks), tuple(TITLES[s] for s in STEPS[index + 1 :])
            )
    return Diagnosis(facts.namespace, facts.name, tuple(checks), ())


# -- the store ------------------------------------------------------------------------------------------


def check_route_missing(facts: Facts) -> Check:
    where = f"route {facts.name} not found in namespace {facts.namespace}"
    if facts.elsewhere:
        ns = facts.elsewhere[0]
        return failed(
            "route",
            f"{where} (namespaces with a route of that name: {', '.join(facts.elsewhere)})",
            f"give the namespace: shiftroute diagnose route {facts.name} -n {ns}",
        )
    return failed(
        "route",
        where,
        f"list the routes with `shiftroute get routes -n {facts.namespace}` (or -A for every namespace); "
        "create one with `shiftroute create route edge|passthrough|reencrypt NAME --service SVC`",
    )


def check_route(run: Run) -> Check:
    spec = run.route.spec
    services = ", ".join(b.name for b in spec.backends)
    host = spec.host or (f"{spec.subdomain}.<router domain>" if spec.subdomain else "<generated>")
    return passed(
        "route",
        f"route {run.label}: {run.kind}, host {host}, service {services}, "
        f"targetPort {spec.target_port or '<all ports>'}",
    )


def _relevant_entries(run: Run) -> list[RouteIngress]:
    """The verdicts that matter: of the router given with --router, else of live routers, else all."""
    entries = [i for i in run.route.ingress if i.admitted is not None]
    wanted = {r.name for r in run.facts.routers if r.live}
    if run.options.router is not None:
        wanted = {r.name for r in _routers_at(run.facts.routers, run.options.router)}
    mine = [i for i in entries if i.router_name in wanted]
    return mine or entries


def _routers_at(routers: list[RouterInfo], url: RouterURL) -> list[RouterInfo]:
    return [r for r in routers if url.address in (r.http, r.https)]


_HOLDER = re.compile(r"route (\S+)/(\S+)")


def _rejection_fix(run: Run, reason: str, message: str) -> str:
    name = run.route.meta.name
    if reason == "HostAlreadyClaimed":
        match = _HOLDER.search(message)
        holder = f"{match.group(1)}/{match.group(2)}" if match else "the older route named above"
        ns = match.group(1) if match else "<namespace>"
        holder_name = match.group(2) if match else "<name>"
        return (
            f"the older route {holder} holds this host: give route {name} another --hostname, or remove "
            f"the older one (shiftroute delete route {holder_name} -n {ns}); routes in different namespaces "
            "share a host only when the router runs with --disable-namespace-ownership-check (and the "
            "paths differ)"
        )
    if reason == "ExtendedValidationFailed":
        return (
            f"fix the field named in the message and recreate the route (shiftroute delete route {name}, "
            "then shiftroute create route ...); `shiftroute describe route` shows its certificates"
        )
    if reason == "InvalidHost":
        return "give a valid DNS name (lower-case letters, digits, '-' and '.', labels up to 63 characters)"
    if reason == "NoHostValue":
        return "give the route a --hostname, or start the router with --domain"
    return "change the route or the router option the message names (see `shiftroute serve --help`)"


def check_admitted(run: Run) -> Check:
    entries = _relevant_entries(run)
    if not entries:
        live = [r.name for r in run.facts.routers if r.live]
        if not live:
            return failed(
                "admitted",
                "no router has seen this route: status.ingress is empty and no live router is registered",
                f"start a router on this store: shiftroute serve --store {run.facts.store_url}",
            )
        return failed(
            "admitted",
            f"router {', '.join(live)} is live but has written no verdict for this route",
            "wait a few seconds and run diagnose again; if it stays empty, the router watches another "
            "store (compare its --store with this one) or cannot write status (see its log)",
        )
    for entry in entries:
        if entry.admitted is not None and entry.admitted.status == "True":
            run.host = entry.host
            others = [
                f"{e.router_name}: {e.admitted.reason}"
                for e in entries
                if e.admitted and e.admitted.status != "True"
            ]
            details = tuple(f"note: rejected by router {o}" for o in others)
            return passed("admitted", f"admitted by router {entry.router_name} as host {entry.host}", details)
    entry = entries[0]
    condition = entry.admitted
    assert condition is not None
    return failed(
        "admitted",
        f"rejected by router {entry.router_name}: {condition.reason}: {condition.message}",
        _rejection_fix(run, condition.reason, condition.message),
    )


def check_router(run: Run) -> Check:
    url = run.options.router
    admitted_by = {
        i.router_name for i in run.route.ingress if i.admitted is not None and i.admitted.status == "True"
    }
    if url is not None:
        result = tcp_connect(url.host, url.port)
        known = _routers_at(run.facts.routers, url)
        if not result.ok:
            return failed(
                "router",
                f"{url}: {result.error}",
                "start the router there, or give the address of a running one (`shiftroute get routers` "
                "lists the registered routers and their listeners)",
            )
        run.router = known[0] if known else None
        which = f"router {known[0].name}" if known else "a router not registered in this store"
        return passed("router", f"{url} accepts connections ({which})")
    live = [r for r in run.facts.routers if r.live]
    serving = [r for r in live if r.name in admitted_by]
    if not serving:
        stale = ", ".join(f"{r.name} ({r.phase}, heartbeat {r.heartbeat})" for r in run.facts.routers)
        why = f"registered but not live: {stale}" if stale else "no router is registered in this store"
        return failed(
            "router",
            f"no live router serves this route ({why})",
            f"start a router on this store: shiftroute serve --store {run.facts.store_url} "
            "(or name a running one with --router https://HOST:PORT)",
        )
    run.router = serving[0]
    router = serving[0]
    return passed(
        "router",
        f"router {router.name} is live (http {router.http}, https {router.https}, "
        f"heartbeat {router.heartbeat})",
    )


def check_service(run: Run) -> Check:
    ns = run.route.meta.namespace
    missing = [b.name for b in run.route.spec.backends if (ns, b.name) not in run.facts.services]
    if missing:
        name = missing[0]
        return failed(
            "service",
            f"service {ns}/{name} does not exist",
            f"create it: shiftroute create service {name} --port PORT --endpoint IP:PORT -n {ns} "
            "(or point the route at an existing service)",
        )
    texts = []
    for backend in run.route.spec.backends:
        svc = run.facts.services[(ns, backend.name)]
        ports = ",".join(f"{p.name or '<unnamed>'}={p.port}/{p.protocol}" for p in svc.ports) or "no ports"
        texts.append(f"{ns}/{backend.name} ({ports})")
    return passed("service", f"service {'; '.join(texts)} exists")


def _all_ready(slices: list[EndpointSlice]) -> list[EndpointSlice]:
    return [replace(s, endpoints=tuple(replace(e, ready=True) for e in s.endpoints)) for s in slices]


def _endpoint_ports(slices: list[EndpointSlice]) -> str:
    ports = sorted({f"{p.name}={p.port}" if p.name else str(p.port) for s in slices for p in s.ports})
    return ", ".join(ports) or "none"


def check_endpoints(run: Run) -> Check:
    ns = run.route.meta.namespace
    target = run.route.spec.target_port
    found: list[Server] = []
    for backend in run.route.spec.backends:
        svc: Service = run.facts.services[(ns, backend.name)]
        slices = run.facts.slices.get((ns, backend.name), [])
        servers = servers_for(backend, ns, target, svc, slices)
        if servers or backend.effective_weight == 0:
            found.extend(servers)
            continue
        if not any(e.addresses for s in slices for e in s.endpoints):
            return failed(
                "endpoints",
                f"service {backend.name} has no endpoints (no EndpointSlice labelled "
                f"kubernetes.io/service-name={backend.name} lists an address)",
                f"give the service its backend address: shiftroute delete service {backend.name}, then "
                f"shiftroute create service {backend.name} --port PORT --endpoint IP:PORT "
                "(or apply an EndpointSlice for it)",
            )
        waiting = servers_for(backend, ns, target, svc, _all_ready(slices))
        if waiting:
            addresses = ", ".join(hostport(s.address, s.port) for s in waiting)
            return failed(
                "endpoints",
                f"endpoint {addresses} of service {backend.name} is not ready (conditions.ready: false)",
                "the router sends traffic only to ready endpoints: set conditions.ready to true in the "
                "EndpointSlice once the application is up (shiftroute apply -f), or fix its readiness",
            )
        return failed(
            "endpoints",
            f"targetPort {target} matches no port of service {backend.name}'s endpoints "
            f"(endpoint ports: {_endpoint_ports(slices)})",
            "set the route's spec.port.targetPort to an endpoint port name or number listed above, or to "
            "a service port number (shiftroute create route ... --port NAME)",
        )
    run.servers = found
    addresses = ", ".join(hostport(s.address, s.port) for s in found)
    count = f"{len(found)} ready endpoint{'s' if len(found) != 1 else ''}"
    return passed("endpoints", f"{count} for targetPort {target or '<all ports>'}: {addresses}")


def check_connect(run: Run) -> Check:
    problems = []
    timings = []
    for server in run.servers:
        result = tcp_connect(server.address, server.port)
        where = hostport(server.address, server.port)
        if result.ok:
            timings.append(f"{where} ({result.millis:.1f} ms)")
        else:
            problems.append((where, result.error))
    if problems:
        where, error = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        if "refused" in error:
            fix = (
                f"nothing listens on {where}: start the application there, or correct the endpoint's "
                "address and port (shiftroute describe service shows them)"
            )
        else:
            fix = f"{where} cannot be reached from here: check the address, routing and firewalls"
        return failed("connect", f"{where}: {error}{more}", fix)
    return passed("connect", f"accepts TCP connections: {', '.join(timings)}")
