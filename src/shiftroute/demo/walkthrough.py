"""`shiftroute demo`: the seed walkthrough of issue 4, end to end, in a fresh workspace.

    1. pki: RootCA and an application certificate for httpd-rencrypt.apps.localhost
    2. the application: `shiftroute demo-app` over HTTPS with that certificate, and one over plain HTTP
    3. services, a reencrypt route with --dest-ca-cert, an edge route and a passthrough route
    4. the router (`shiftroute serve`) on an embedded SQLite store in the workspace
    5. one request per route: the certificate the client saw, what the application saw, status, body
    6. the curl commands to try, until Ctrl-C (--once: stop after step 5)

Every command it runs is printed as typed; a failure names the step and why, and the processes it started
are always stopped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shiftroute.api.objects import KIND_ROUTE, Route
from shiftroute.demo import traffic
from shiftroute.demo.procs import DemoFailed, Processes
from shiftroute.demo.traffic import DemoRoute, Outcome
from shiftroute.store import open_store

APP_HOST = "httpd-rencrypt.apps.localhost"
ROUTES = (
    DemoRoute(
        "httpd-rencrypt",
        "reencrypt",
        APP_HOST,
        "httpd",
        expect_tls_at_app=True,
        client_sees_app_cert=False,
        explain="TLS ends at the router; a new TLS connection, verified against RootCA, goes to the app",
    ),
    DemoRoute(
        "hello-edge",
        "edge",
        "hello-edge.apps.localhost",
        "hello",
        expect_tls_at_app=False,
        client_sees_app_cert=False,
        explain="TLS ends at the router; plain HTTP goes to the app",
    ),
    DemoRoute(
        "httpd-passthrough",
        "passthrough",
        "httpd-passthrough.apps.localhost",
        "httpd",
        expect_tls_at_app=True,
        client_sees_app_cert=True,
        explain="the router reads only the SNI and relays the client's TLS to the app untouched",
    ),
)
READY_TIMEOUT = 30.0
ADMIT_TIMEOUT = 15.0
APP_START_TIMEOUT = 15.0
_LISTENING = r"serving .* on https?://[^:]+:(\d+)/"


@dataclass
class Walkthrough:
    workdir: Path
    echo: Callable[[str], None]
    once: bool
    fail: Callable[[str], None] = print  # where the failure line goes (the CLI: stderr)
    procs: Processes = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    current: str = "start"  # the step running now, to name it when interrupted
    passed: bool = False  # every check of step 5 passed

    def __post_init__(self) -> None:
        self.store = self.workdir / "store.db"
        env = {
            **os.environ,
            "SHIFTROUTE_STORE": str(self.store),
            "XDG_STATE_HOME": str(self.workdir / "state"),
        }
        self.procs = Processes(self.workdir, env)

    def step(self, number: int, title: str) -> str:
        self.echo("")
        self.echo(f"==> step {number}/6: {title}")
        self.current = f"step {number} ({title})"
        return self.current

    def run(self, wait_forever: Callable[[Callable[[], None]], None]) -> bool:
        try:
            self.echo(f"workspace: {self.workdir}")
            self.echo(f"store:     {self.store} (every command below runs with SHIFTROUTE_STORE set to it)")
            self.certificates()
            self.applications()
            self.objects()
            self.router()
            outcomes = self.requests()
            ok = all(o.ok for o in outcomes)
            if not ok:
                failed = ", ".join(o.route.name for o in outcomes if not o.ok)
                raise DemoFailed("step 5 (requests through the router)", f"checks failed for {failed}")
            self.passed = True
            if not self.once:
                self.try_it(wait_forever)
            return True
        except DemoFailed as exc:
            # Said before the cleanup, so the reason is next to the step that failed.
            self.fail(f"\ndemo failed at {exc.step}: {exc.why}")
            raise
        finally:
            self.echo("")
            self.echo("stopping the router and the applications")
            # A second Ctrl-C must not cut the cleanup short and leave children running; it is bounded.
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.procs.stop_all(self.echo)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def certificates(self) -> None:
        step = self.step(1, "certificates: a CA and an application certificate signed by it")
        self.procs.run(step, "pki", "ca", "RootCA", "--dir", "pki", echo=self.echo)
        # The passthrough route's host is named too, so a client can verify the app's certificate there.
        sans = f"DNS:{APP_HOST},DNS:{ROUTES[2].host}"
        self.procs.run(
            step, "pki", "cert", "httpd-rencrypt", "--ca", "pki/RootCA", "--cn", APP_HOST, "--san", sans,
            "--dir", "pki", echo=self.echo,
        )  # fmt: skip
        self.procs.run(step, "pki", "inspect", "pki/httpd-rencrypt.crt", echo=self.echo)

    def applications(self) -> None:
        step = self.step(2, "the application: HTTPS with that certificate, and a plain-HTTP one")
        tls = self.procs.start(
            "demo-app-https", "demo-app", "--cert", "pki/httpd-rencrypt.crt",
            "--key", "pki/httpd-rencrypt.key", "--port", "0", "--text", "Hello", echo=self.echo,
        )  # fmt: skip
        plain = self.procs.start(
            "demo-app-plain", "demo-app", "--plain", "--port", "0", "--text", "Hello", echo=self.echo
        )
        for name, child in (("https_app", tls), ("plain_app", plain)):
            found = self.procs.wait_for_log(step, child, _LISTENING, APP_START_TIMEOUT)
            self.ports[name] = int(found.group(1))
            self.echo(f"  {found.group(0)}")

    def objects(self) -> None:
        step = self.step(3, "services and routes: reencrypt (--dest-ca-cert), edge, passthrough")
        run = self.procs.run
        run(step, "create", "service", "httpd", "--port", "443", "--endpoint",
            f"127.0.0.1:{self.ports['https_app']}", echo=self.echo)  # fmt: skip
        run(step, "create", "service", "hello", "--port", "8080", "--endpoint",
            f"127.0.0.1:{self.ports['plain_app']}", echo=self.echo)  # fmt: skip
        reencrypt, edge, passthrough = ROUTES
        run(step, "create", "route", "reencrypt", reencrypt.name, f"--service={reencrypt.service}",
            f"--hostname={reencrypt.host}", "--dest-ca-cert=pki/RootCA.crt", echo=self.echo)  # fmt: skip
        run(step, "create", "route", "edge", edge.name, f"--service={edge.service}",
            f"--hostname={edge.host}", echo=self.echo)  # fmt: skip
        run(step, "create", "route", "passthrough", passthrough.name, f"--service={passthrough.service}",
            f"--hostname={passthrough.host}", echo=self.echo)  # fmt: skip

    def router(self) -> None:
        step = self.step(4, "the router, on the embedded SQLite store")
        ready = self.workdir / "router" / "ready.json"
        child = self.procs.start(
            "router", "serve", "--bind", "127.0.0.1", "--http-port", "0", "--https-port", "0",
            "--admin-port", "0", "--workers", "1", "--state-dir", "router",
            "--ready-file", "router/ready.json", "--drain-grace", "0.1", "--drain-timeout", "3",
            echo=self.echo,
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            self.procs.ensure_running(step, child)
            if time.monotonic() > deadline:
                raise DemoFailed(
                    step, f"the router was not ready within {READY_TIMEOUT:.0f}s:\n{child.tail()}"
                )
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        self.ports.update(router_http=int(ports["http"]), router_https=int(ports["https"]))
        self.echo(f"  router ready: http 127.0.0.1:{ports['http']}, https 127.0.0.1:{ports['https']}, "
                  f"admin 127.0.0.1:{ports['admin']} (log: logs/router.log)")  # fmt: skip
        self.wait_admitted(step)

    def wait_admitted(self, step: str) -> None:
        store = open_store(str(self.store))
        try:
            deadline = time.monotonic() + ADMIT_TIMEOUT
            while True:
                routes = [Route.from_manifest(m) for m in store.list(KIND_ROUTE, "default").items]
                pending = [r.meta.name for r in routes if not _admitted(r)]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        step, f"routes not admitted within {ADMIT_TIMEOUT:.0f}s: {', '.join(pending)}"
                    )
                time.sleep(0.1)
        finally:
            store.close()
        self.echo(f"  admitted by router default: {', '.join(r.name for r in ROUTES)}")

    def requests(self) -> list[Outcome]:
        step = self.step(5, "one request through the router per route")
        https = self.ports["router_https"]
        ca_file = self.workdir / "pki" / "RootCA.crt"
        app_issuer = "CN=RootCA"
        outcomes = []
        for route in ROUTES:
            answer = traffic.request(route, https, ca_file)
            outcome = Outcome(route, answer, traffic.judge(route, answer, app_issuer))
            traffic.describe(outcome, https, self.echo)
            outcomes.append(outcome)
        self.echo("")
        self.procs.run(step, "get", "routes", echo=self.echo)
        return outcomes

    def curl_lines(self) -> list[str]:
        https = self.ports["router_https"]
        lines = [f"export SHIFTROUTE_STORE={self.store}"]
        for route in ROUTES:
            resolve = f"--resolve {route.host}:{https}:127.0.0.1 https://{route.host}:{https}/"
            if route.client_sees_app_cert:
                lines.append(f"curl -v --cacert {self.workdir / 'pki' / 'RootCA.crt'} {resolve}")
            else:
                lines.append(f"curl -kv {resolve}")
        lines += ["shiftroute get routes -o wide", f"shiftroute diagnose route {ROUTES[0].name}"]
        return lines

    def try_it(self, wait_forever: Callable[[Callable[[], None]], None]) -> None:
        self.step(6, "try it yourself (Ctrl-C stops everything)")
        for line in self.curl_lines():
            self.echo(f"  {line}")
        step = "step 6 (running)"

        def check_children() -> None:
            for child in self.procs.children:
                self.procs.ensure_running(step, child)

        wait_forever(check_children)


def _admitted(route: Route) -> bool:
    return any(i.admitted is not None and i.admitted.status == "True" for i in route.ingress)
