"""Route annotations shiftroute understands (routes.md §5-6) and their parsers.

Parsers return None for a bad value; the router then logs once and uses the default (OpenShift ignores bad
values the same way), except the IP allowlist, which admission refuses (fail closed).
"""

from __future__ import annotations

import ipaddress
import re

BALANCE = "haproxy.router.openshift.io/balance"
TIMEOUT = "haproxy.router.openshift.io/timeout"
TIMEOUT_TUNNEL = "haproxy.router.openshift.io/timeout-tunnel"
IP_ALLOWLIST = "haproxy.router.openshift.io/ip_allowlist"
IP_WHITELIST = "haproxy.router.openshift.io/ip_whitelist"  # legacy spelling, still honoured
RATE_LIMIT = "haproxy.router.openshift.io/rate-limit-connections"
RATE_LIMIT_CONCURRENT = "haproxy.router.openshift.io/rate-limit-connections.concurrent-tcp"
RATE_LIMIT_TCP = "haproxy.router.openshift.io/rate-limit-connections.rate-tcp"
RATE_LIMIT_HTTP = "haproxy.router.openshift.io/rate-limit-connections.rate-http"
HSTS = "haproxy.router.openshift.io/hsts_header"
FORWARDED = "haproxy.router.openshift.io/set-forwarded-headers"
REWRITE_TARGET = "haproxy.router.openshift.io/rewrite-target"
POD_CONCURRENT = "haproxy.router.openshift.io/pod-concurrent-connections"
DISABLE_COOKIES = "haproxy.router.openshift.io/disable_cookies"
COOKIE_NAME = "router.openshift.io/cookie_name"
COOKIE_SAME_SITE = "router.openshift.io/cookie-same-site"
HEALTH_INTERVAL = "router.openshift.io/haproxy.health.check.interval"

BALANCE_ALGORITHMS = ("roundrobin", "leastconn", "source", "random")
FORWARDED_POLICIES = ("append", "replace", "if-none", "never")
SAME_SITE_VALUES = ("None", "Lax", "Strict")

_DURATION = re.compile(r"^([1-9][0-9]*)(us|ms|s|m|h|d)?$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HSTS_MAX_AGE = re.compile(r"^max-age=\"?[0-9]+\"?$", re.IGNORECASE)


def parse_duration(value: str) -> float | None:
    """HAProxy time format `[1-9][0-9]*(us|ms|s|m|h|d)?`; no unit means milliseconds. Seconds, or None."""
    match = _DURATION.match(value.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2) or "ms"]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowlist(value: str) -> tuple[IPNetwork, ...] | str:
    """Space-separated IPs and CIDRs. The networks, or a message naming the first bad entry."""
    networks: list[IPNetwork] = []
    for entry in value.split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            return f"{entry!r} is not an IP address or CIDR"
    if not networks:
        return "is empty"
    return tuple(networks)


def allowlist_annotation(annotations: dict[str, str] | object) -> tuple[str, str] | None:
    """(annotation name, value) of the allowlist in force; the current spelling wins over the legacy one."""
    if not isinstance(annotations, dict):
        return None
    for name in (IP_ALLOWLIST, IP_WHITELIST):
        if name in annotations:
            return name, annotations[name]
    return None


def parse_hsts(value: str) -> str | None:
    """A Strict-Transport-Security value with `max-age=N` and only includeSubDomains/preload besides."""
    directives = [d.strip() for d in value.split(";") if d.strip()]
    if not any(_HSTS_MAX_AGE.match(d) for d in directives):
        return None
    for directive in directives:
        if not (_HSTS_MAX_AGE.match(directive) or directive.lower() in ("includesubdomains", "preload")):
            return None
    return "; ".join(directives)


def parse_positive_int(value: str) -> int | None:
    text = value.strip()
    if not text.isdigit():
        return None
    number = int(text)
    return number if number > 0 else None
