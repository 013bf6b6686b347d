"""Admission kept up to date from changes, for a router with 10 000 routes (routes.md §3, §7).

The verdicts are exactly those of `admission.admit()` over all routes; only the work differs:

- the per-route checks (host syntax, domains, certificates) depend on the route and the router options
  alone, so they run when a route changes, not on every change of any route;
- host claims only involve routes that can touch each other: the routes of one host, or, while a parent
  domain has admitted-so-far wildcard routes, every route under that parent (a wildcard route owns its
  subdomain). Each group is decided on its own, oldest first, as one pass over all routes would decide it,
  and only groups that a change touched are decided again.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping

from shiftroute.admission import (
    RouterOptions,
    Verdict,
    _claim,
    _Claims,
    _precheck,
    effective_host,
    is_wildcard,
    parent_domain,
)
from shiftroute.api.objects import ObjectKey, Route

_AGE_ORDER = operator.attrgetter("age_order")


def _version(route: Route) -> tuple[object, ...]:
    meta = route.meta
    return (meta.uid, meta.generation or meta.resource_version)


class LiveAdmitter:
    def __init__(self, options: RouterOptions) -> None:
        self.options = options
        self._routes: dict[ObjectKey, Route] = {}
        self._host: dict[ObjectKey, str] = {}  # effective host of every route that passed its checks
        self._checked: dict[ObjectKey, tuple[tuple[object, ...], str, Verdict | None]] = {}
        self._group_of: dict[ObjectKey, str] = {}
        self._members: dict[str, set[ObjectKey]] = {}
        self._wildcards: dict[str, int] = {}  # parent domain -> wildcard routes that passed their checks
        self._verdicts: dict[ObjectKey, Verdict] = {}

    def admit(self, routes: Iterable[Route]) -> dict[ObjectKey, Verdict]:
        """Verdicts for exactly these routes (what changed since the last call is worked out here)."""
        current = {route.key: route for route in routes}
        changed = [k for k, r in current.items() if self._routes.get(k) is not r]
        changed += [k for k in self._routes if k not in current]
        return self.update(changed, current)

    def update(
        self, changed: Iterable[ObjectKey], routes: Mapping[ObjectKey, Route]
    ) -> dict[ObjectKey, Verdict]:
        """Verdicts after the routes named in `changed` were added, modified or deleted (`routes` holds
        every route now). Only the groups these routes leave or join are decided again."""
        dirty: set[str] = set()
        regroup: set[str] = set()  # parents whose wildcard routes came or went: their grouping changes
        arrived: list[ObjectKey] = []
        for key in set(changed):
            self._forget(key, dirty, regroup)
            route = routes.get(key)
            if route is None:
                continue
            self._routes[key] = route
            host, rejected = self._check(key, route)
            if rejected is not None:
                self._verdicts[key] = rejected
                continue
            self._host[key] = host
            if is_wildcard(route):
                parent = parent_domain(host)
                self._wildcards[parent] = self._wildcards.get(parent, 0) + 1
                if self._wildcards[parent] == 1:
                    regroup.add(parent)
            arrived.append(key)
        for parent in regroup:
            self._regroup(parent, dirty)
        for key in arrived:
            self._join(key, dirty)
        for group in dirty:
            self._decide(group)
        return dict(self._verdicts)

    # -- bookkeeping --------------------------------------------------------------------------------

    def _check(self, key: ObjectKey, route: Route) -> tuple[str, Verdict | None]:
        version = _version(route)
        cached = self._checked.get(key)
        if cached is not None and cached[0] == version and (cached[2] is None or cached[2].route is route):
            return cached[1], cached[2]
        host = effective_host(route, self.options.domain)
        rejected = _precheck(route, host, self.options)
        self._checked[key] = (version, host, rejected)
        return host, rejected

    def _group_key(self, key: ObjectKey) -> str:
        host = self._host[key]
        parent = parent_domain(host)
        return f"*.{parent}" if self._wildcards.get(parent) else host

    def _forget(self, key: ObjectKey, dirty: set[str], regroup: set[str]) -> None:
        route = self._routes.pop(key, None)
        self._verdicts.pop(key, None)
        group = self._group_of.pop(key, None)
        if group is not None:
            members = self._members[group]
            members.discard(key)
            if members:
                dirty.add(group)
            else:
                del self._members[group]
        host = self._host.pop(key, None)
        if route is not None and host is not None and is_wildcard(route):
            parent = parent_domain(host)
            self._wildcards[parent] -= 1
            if not self._wildcards[parent]:
                del self._wildcards[parent]
                regroup.add(parent)
        if route is None:
            self._checked.pop(key, None)

    def _join(self, key: ObjectKey, dirty: set[str]) -> None:
        group = self._group_key(key)
        self._group_of[key] = group
        self._members.setdefault(group, set()).add(key)
        dirty.add(group)

    def _regroup(self, parent: str, dirty: set[str]) -> None:
        """A parent domain gained its first or lost its last wildcard route: its routes move between
        per-host groups and the one parent group."""
        suffix = "." + parent
        moving = [
            key
            for key, group in self._group_of.items()
            if group == f"*.{parent}"
            or (not group.startswith("*.") and group.endswith(suffix) and parent_domain(group) == parent)
        ]
        for key in moving:
            group = self._group_of.pop(key)
            members = self._members[group]
            members.discard(key)
            if not members:
                del self._members[group]
            dirty.discard(group)
        for key in moving:
            self._join(key, dirty)

    def _decide(self, group: str) -> None:
        members = self._members.get(group)
        if not members:
            return
        routes = sorted((self._routes[k] for k in members), key=_AGE_ORDER)
        if len(routes) == 1:
            route = routes[0]
            old = self._verdicts.get(route.key)
            host = self._host[route.key]
            if old is None or not old.admitted or old.route is not route or old.host != host:
                self._verdicts[route.key] = Verdict(route, host, admitted=True)
            return
        claims = _Claims()
        for route in routes:
            host = self._host[route.key]
            self._verdicts[route.key] = _claim(route, host, claims, self.options) or Verdict(
                route, host, admitted=True
            )
