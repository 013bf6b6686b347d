"""`shiftroute diagnose route`: one real setup per failure it must explain (a real router, real backends,
real TLS), each asserting the failing check, its reason and its fix, and exit status 1; plus the all-PASS
case (exit 0) and the JSON shape."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shiftroute.pki.issue import make_ca, make_leaf, write_pair
from tests.conftest import free_port, wait_until
from tests.e2e.helpers import Cli, service
from tests.e2e.support.backend import Backend
from tests.e2e.support.certs import SeedCerts, seed_certs
from tests.e2e.support.router import RouterProcess

HOST = "httpd-rencrypt.ayush.com"


@dataclass
class Setup:
    cli: Cli
    tmp: Path
    stack: ExitStack

    def seed(self) -> SeedCerts:
        return seed_certs(self.tmp / "seed")

    def backend(self, tls: ssl.SSLContext | None = None) -> Backend:
        return self.stack.enter_context(Backend(tls=tls))

    def reencrypt(self, name: str, ca: Path, host: str = HOST) -> None:
        self.cli(
            "create",
            "route",
            "reencrypt",
            name,
            f"--service={name}",
            f"--hostname={host}",
            f"--dest-ca-cert={ca}",
            check=True,
        )


def wait_verdict(cli: Cli, name: str, namespace: str = "default") -> None:
    """Until the router wrote its status.ingress entry for the route (bounded)."""

    def written() -> bool:
        out = cli("get", "route", name, "-n", namespace, "-o", "json", check=True).stdout
        return bool((json.loads(out).get("status") or {}).get("ingress"))

    wait_until(written, 10, f"a verdict on route {namespace}/{name}")


def diagnose(cli: Cli, name: str, *args: str) -> tuple[int, str]:
    proc = cli("diagnose", "route", name, *args, timeout=60)
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


# -- the setups: each makes one broken link and returns (route, namespace, extra diagnose args) ----------


def wrong_ca(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    certs = s.seed()
    other = seed_certs(s.tmp / "other", ca_cn="otherCA", prefix="other")
    backend = s.backend(certs.server_context())
    service(s.cli, "httpd", 443, backend.address)
    s.reencrypt("httpd", other.ca_crt)
    return "httpd", "default", ()


def plain_backend_on_reencrypt(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    certs = s.seed()
    backend = s.backend()
    service(s.cli, "httpd", 443, backend.address)
    s.reencrypt("httpd", certs.ca_crt)
    return "httpd", "default", ()


def tls_backend_on_edge(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    backend = s.backend(s.seed().server_context())
    service(s.cli, "web", 8443, backend.address)
    s.cli("create", "route", "edge", "web", "--service=web", "--hostname=web.example.com", check=True)
    return "web", "default", ()


def no_endpoints(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    s.cli("create", "service", "web", "--port", "8080", check=True)
    s.cli("expose", "service", "web", "--hostname=web.example.com", check=True)
    return "web", "default", ()


def endpoint_not_ready(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    backend = s.backend()
    manifest = f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 8080, protocol: TCP, targetPort: {backend.port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x7k2p
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {{ready: false}}
ports: [{{name: http, port: {backend.port}, protocol: TCP}}]
"""
    s.cli("apply", "-f", "-", input=manifest, check=True)
    s.cli("expose", "service", "web", "--hostname=web.example.com", check=True)
    return "web", "default", ()


def connection_refused(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    service(s.cli, "web", 8080, f"127.0.0.1:{free_port()}")
    s.cli("expose", "service", "web", "--hostname=web.example.com", check=True)
    return "web", "default", ()


def expired_backend_certificate(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    ca = make_ca("expiredCA")
    leaf = make_leaf(ca, "app.example.com", [], days=30, not_before=datetime.now(UTC) - timedelta(days=60))
    ca_crt, _ = write_pair(ca, s.tmp / "expired", "ca")
    crt, key = write_pair(leaf, s.tmp / "expired", "app")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    backend = s.backend(ctx)
    service(s.cli, "app", 443, backend.address)
    s.reencrypt("app", ca_crt, host="app.example.com")
    return "app", "default", ()


def host_claimed_by_older_route(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    backend = s.backend()
    for namespace in ("team-a", "team-b"):
        service(s.cli, "web", 8080, backend.address, namespace=namespace)
        s.cli("expose", "service", "web", "--hostname=shop.example.com", "-n", namespace, check=True)
    return "web", "team-b", ()


def passthrough_without_sni(s: Setup) -> tuple[str, str, tuple[str, ...]]:
    backend = s.backend(s.seed().server_context())
    service(s.cli, "secure", 443, backend.address)
    s.cli(
        "create",
        "route",
        "passthrough",
        "secure",
        "--service=secure",
        "--hostname=secure.example.com",
        check=True,
    )
    return "secure", "default", ("--no-sni",)


CASES = [
    pytest.param(
        wrong_ca,
        "backend",
        "certificate verify failed: unable to get local issuer certificate",
        "the backend's certificate is issued by CN=customCA; --dest-ca-cert holds CN=otherCA: create the "
        "route with the CA that signed the backend certificate",
        id="wrong-destination-ca",
    ),
    pytest.param(
        plain_backend_on_reencrypt,
        "backend",
        "speaks plain HTTP, not TLS (it answered 'HTTP/1.1 200 OK'",
        "a reencrypt route needs a backend that serves TLS",
        id="plain-http-backend-on-reencrypt",
    ),
    pytest.param(
        tls_backend_on_edge,
        "backend",
        "speaks TLS (TLSv1.3), but an edge route sends it plain HTTP",
        "use a reencrypt route with the CA that signed the backend's certificate",
        id="tls-backend-on-edge",
    ),
    pytest.param(
        no_endpoints,
        "endpoints",
        "service web has no endpoints",
        "shiftroute create service web --port PORT --endpoint IP:PORT",
        id="no-endpoints",
    ),
    pytest.param(
        endpoint_not_ready,
        "endpoints",
        "is not ready (conditions.ready: false)",
        "the router sends traffic only to ready endpoints",
        id="endpoint-not-ready",
    ),
    pytest.param(
        connection_refused,
        "connect",
        "connection refused",
        "nothing listens on 127.0.0.1:",
        id="connection-refused",
    ),
    pytest.param(
        expired_backend_certificate,
        "backend",
        "certificate has expired: the backend's certificate (CN=app.example.com) expired on",
        "renew the backend's certificate",
        id="expired-backend-certificate",
    ),
    pytest.param(
        host_claimed_by_older_route,
        "admitted",
        "rejected by router default: HostAlreadyClaimed: host shop.example.com is owned by namespace team-a",
        "the older route team-a/web holds this host: give route web another --hostname",
        id="host-claimed",
    ),
    pytest.param(
        passthrough_without_sni,
        "request",
        "without SNI: the router answered 503 Application is not available",
        "passthrough routes are matched by SNI only",
        id="passthrough-without-sni",
    ),
]


@pytest.mark.parametrize(("setup", "check", "reason", "fix"), CASES)
def test_diagnose_names_the_broken_link(
    setup: Callable[[Setup], tuple[str, str, tuple[str, ...]]],
    check: str,
    reason: str,
    fix: str,
    cli: Cli,
    router: RouterProcess,
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        name, namespace, extra = setup(Setup(cli, tmp_path, stack))
        wait_verdict(cli, name, namespace)
        code, text = diagnose(cli, name, "-n", namespace, *extra)
        assert code == 1, text
        fail_lines = [line for line in text.splitlines() if line.startswith("FAIL")]
        assert len(fail_lines) == 1, text
        assert reason in fail_lines[0], text
        fix_lines = [line.strip() for line in text.splitlines() if line.strip().startswith("fix: ")]
        assert len(fix_lines) == 1 and fix in fix_lines[0], text
        code, out = diagnose(cli, name, "-n", namespace, *extra, "-o", "json")
        report = json.loads(out)
        assert code == 1 and report["ok"] is False and report["failed"] == check
        failed = report["checks"][-1]
        assert failed["status"] == "FAIL" and reason in failed["reason"] and fix in failed["fix"]
        assert all(c["status"] == "PASS" for c in report["checks"][:-1])


def test_all_checks_pass_for_the_seed_reencrypt_route(
    cli: Cli, router: RouterProcess, tmp_path: Path
) -> None:
    certs = seed_certs(tmp_path / "seed")
    with Backend(tls=certs.server_context()) as backend:
        service(cli, "httpd", 443, backend.address)
        cli(
            "create",
            "route",
            "reencrypt",
            "httpd",
            "--service=httpd",
            f"--hostname={HOST}",
            f"--dest-ca-cert={certs.ca_crt}",
            check=True,
        )
        wait_verdict(cli, "httpd")
        code, text = diagnose(cli, "httpd")
        assert code == 0, text
        assert text.count("PASS") == 8 and "FAIL" not in text
        assert "certificate verifies against spec.tls.destinationCACertificate (CN=customCA)" in text
        assert "presented: subject CN=httpd-rencrypt.ayush.com" in text
        assert f"https://{HOST}/ via 127.0.0.1:{router.https}: HTTP/1.1 200 OK" in text
        # The same through an explicit --router URL.
        code, out = diagnose(cli, "httpd", "--router", f"https://127.0.0.1:{router.https}", "-o", "json")
        report = json.loads(out)
        assert code == 0, out
        assert set(report) == {"route", "ok", "failed", "checks", "notRun"}
        assert report["route"] == {"namespace": "default", "name": "httpd"}
        assert report["ok"] is True and report["failed"] is None and report["notRun"] == []
        assert [c["id"] for c in report["checks"]] == [
            "route",
            "admitted",
            "router",
            "service",
            "endpoints",
            "connect",
            "backend",
            "request",
        ]
        for check in report["checks"]:
            assert set(check) == {"id", "title", "status", "reason", "fix", "details"}
            assert check["status"] == "PASS" and check["fix"] is None


def test_missing_route_and_no_router(cli: Cli) -> None:
    code, text = diagnose(cli, "nothing")
    assert code == 1
    assert "FAIL  route exists" in text and "route nothing not found in namespace default" in text
    cli("create", "service", "web", "--port", "8080", "--endpoint", "127.0.0.1:9", check=True)
    cli("expose", "service", "web", check=True)
    code, text = diagnose(cli, "web")
    assert code == 1
    assert "no router has seen this route" in text and "fix: start a router on this store" in text
    code, _ = diagnose(cli, "web", "--router", "ftp://x")
    assert code == 1  # a usage error, one line
