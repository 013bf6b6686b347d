"""Step 5 of the demo: one request through the router per route, and what each side saw.

The client connects to 127.0.0.1 and sets SNI and Host itself (glibc does not resolve *.apps.localhost;
curl and browsers do). The demo-app reports what it received in X-Demo-App-* headers.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shiftroute.diagnose.probes import HttpResult, http_request, insecure_context

RETRY_FOR = 10.0  # the router applies a change in milliseconds; this only absorbs a slow first sync


@dataclass(frozen=True, slots=True)
class DemoRoute:
    name: str
    termination: str
    host: str
    service: str
    expect_tls_at_app: bool  # the application receives TLS (reencrypt, passthrough) or plain HTTP (edge)
    client_sees_app_cert: bool  # passthrough: the client sees the application's own certificate
    explain: str


@dataclass(frozen=True, slots=True)
class Outcome:
    route: DemoRoute
    response: HttpResult
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _client_context(route: DemoRoute, ca_file: Path) -> ssl.SSLContext:
    """Passthrough: verify the application's certificate against RootCA, as a careful client would. The
    others get the router's self-signed default certificate, which only `-k` accepts."""
    if not route.client_sees_app_cert:
        return insecure_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def request(route: DemoRoute, https_port: int, ca_file: Path) -> HttpResult:
    deadline = time.monotonic() + RETRY_FOR
    while True:
        answer = http_request(
            "127.0.0.1", https_port, route.host, "/", _client_context(route, ca_file), route.host
        )
        if (answer.ok and answer.status != 503) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def judge(route: DemoRoute, answer: HttpResult, app_issuer: str) -> tuple[str, ...]:
    if not answer.ok:
        return (f"no HTTP answer: {answer.error}",)
    problems = []
    if answer.status != 200:
        problems.append(f"status {answer.status}, expected 200")
    if answer.body.strip() != b"Hello":
        problems.append(f"body {answer.body[:60]!r}, expected 'Hello'")
    issued_by_app_ca = answer.cert is not None and answer.cert.issuer == app_issuer
    if route.client_sees_app_cert and not issued_by_app_ca:
        problems.append("the client should see the application's certificate (issued by RootCA)")
    if not route.client_sees_app_cert and issued_by_app_ca:
        problems.append("the client should see the router's certificate, not the application's")
    app_tls = answer.header("X-Demo-App-TLS") or "none"
    if route.expect_tls_at_app and app_tls == "none":
        problems.append("the application should have received TLS")
    if not route.expect_tls_at_app and app_tls != "none":
        problems.append("the application should have received plain HTTP")
    if route.termination == "passthrough" and answer.header("X-Demo-App-SNI") != route.host:
        problems.append(f"the application should have seen SNI {route.host}")
    return tuple(problems)


def describe(outcome: Outcome, https_port: int, echo: Callable[[str], None]) -> None:
    route, answer = outcome.route, outcome.response
    echo(f"  {route.termination} route {route.name}: https://{route.host}:{https_port}/")
    echo(f"    {route.explain}")
    if answer.cert is not None:
        whose = (
            "the application's own, verified against RootCA.crt"
            if route.client_sees_app_cert
            else "the router's default certificate"
        )
        echo(
            f"    client saw certificate:  subject {answer.cert.subject}, issuer {answer.cert.issuer}\n"
            f"                             ({whose})"
        )
    if answer.ok:
        saw = ", ".join(
            f"{label} {answer.header('X-Demo-App-' + name) or '?'}"
            for label, name in (
                ("TLS", "TLS"),
                ("cipher", "Cipher"),
                ("SNI", "SNI"),
                ("X-Forwarded-For", "Forwarded-For"),
                ("X-Forwarded-Proto", "Forwarded-Proto"),
            )
        )
        echo(f"    application saw:         {saw}")
        echo(f"    status:                  {answer.status_line}")
        echo(f"    body:                    {answer.body.decode('utf-8', 'replace').strip()}")
    for problem in outcome.problems:
        echo(f"    FAIL: {problem}")
    if outcome.ok:
        echo("    PASS")
