"""Decisions made from the routing table and the client's address alone: which route answers a request
(routes.md §4, hardening.md rule 4), and whether a client may use a route (allowlists and rate limits by
TCP peer address, routes.md §6 and hardening.md rule 18)."""

from __future__ import annotations

import ipaddress

from shiftroute.engine.context import RouterContext
from shiftroute.protocol.http1 import RequestHead
from shiftroute.routing.table import Backend, RoutingTable

REDIRECT = 302
MISDIRECTED = 421
UNAVAILABLE = 503


def http_backend(table: RoutingTable, head: RequestHead, secure: bool, sni: str | None) -> Backend | int:
    """The route for a request, or the status the router answers itself (302, 421 or 503)."""
    path = head.path.decode("latin-1")
    backend: Backend | None = table.match_http(head.host, path)  # typed: struct reads, compiled
    if secure:
        # hardening.md rule 4: SNI chose one route (and its certificate), Host asks for another.
        if sni and sni != head.host and table.match_http(sni, path) is not backend:
            return MISDIRECTED
        # Plain-HTTP routes are served on the HTTP listener only.
        return backend if backend is not None and backend.is_tls else UNAVAILABLE
    if backend is None:
        # A passthrough route with insecure policy Redirect sends plain-HTTP clients to https too.
        passthrough = table.match_passthrough(head.host)
        return (
            REDIRECT if passthrough is not None and passthrough.insecure_policy == "Redirect" else UNAVAILABLE
        )
    if backend.is_tls:
        if backend.insecure_policy == "Redirect":
            return REDIRECT
        if backend.insecure_policy != "Allow":
            return UNAVAILABLE  # insecure policy None: not served over HTTP
    return backend


def admit_connection(ctx: RouterContext, backend: Backend, ip: str) -> bool:
    """First use of a route by a client connection: allowlist, concurrent-tcp and rate-tcp (per 3 s).
    True means the connection was counted; `release_connection` must follow when it ends."""
    if backend.allowlist is not None:
        address = ipaddress.ip_address(ip)
        # A loop, not any(...): compiled, this function is cpdef (decide.pxd), which cannot hold a closure.
        for net in backend.allowlist:
            if address in net:
                break
        else:
            ctx.counters.connections_refused += 1
            return False
    limits = backend.rate_limits
    if not limits.any:
        return True
    rates = ctx.rates
    key = (backend.label, ip)
    if limits.concurrent_tcp and rates.concurrent[key] >= limits.concurrent_tcp:
        ctx.counters.connections_refused += 1
        return False
    if limits.rate_tcp and not rates.allow(backend.label, ip, "tcp", limits.rate_tcp, 3.0):
        ctx.counters.connections_refused += 1
        return False
    rates.concurrent[key] += 1
    return True


def release_connection(ctx: RouterContext, label: str, ip: str) -> None:
    rates = ctx.rates
    key = (label, ip)
    if key in rates.concurrent:
        rates.concurrent[key] -= 1
        if rates.concurrent[key] <= 0:
            del rates.concurrent[key]


def admit_request(ctx: RouterContext, backend: Backend, ip: str) -> bool:
    """Every HTTP request: rate-http (per 10 s)."""
    limit = backend.rate_limits.rate_http
    return not limit or ctx.rates.allow(backend.label, ip, "http", limit, 10.0)
