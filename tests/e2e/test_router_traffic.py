"""The router with real backends: edge, reencrypt (the seed's openssl certificates), passthrough,
insecure policies, path routing, 421 and the 503 page. Real sockets on 127.0.0.1, real TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from tests.conftest import wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend
from tests.e2e.support.certs import seed_certs
from tests.e2e.support.client import Connection, get
from tests.e2e.support.router import RouterProcess


def cn(response_cert: object) -> str:
    attrs = response_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)  # type: ignore[attr-defined]
    return str(attrs[0].value)


def test_edge_route_terminates_tls_and_sends_plain_http(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 8080, backend.address)
        cli(
            "create",
            "route",
            "edge",
            "web",
            "--service",
            "web",
            "--hostname",
            "web.apps.localhost",
            check=True,
        )
        response = wait_serving(router.https, "web.apps.localhost", tls=True)
        assert response.body == b"Hello"
        assert cn(response.peer_cert) == "*.apps.localhost"  # the router's generated default certificate
        seen = backend.received[-1]
        assert seen.tls is False
        assert seen.header("X-Forwarded-Proto") == "https"
        assert seen.header("X-Forwarded-For") == "127.0.0.1"
        assert seen.header("Host") == "web.apps.localhost"
        assert seen.header("Forwarded") == "for=127.0.0.1;host=web.apps.localhost;proto=https"
        cookie = response.header("Set-Cookie")
        assert cookie is not None and cookie.endswith("; path=/; HttpOnly; Secure; SameSite=None")
        assert response.header("Cache-control") == "private"
        # One access-log line per request: route, endpoint, method, path, status, bytes, duration, client.
        line = f"INFO    shiftroute.access: default/web {backend.address} GET / 200 "
        wait_until(lambda: line in router.log(), 5, "the access-log line")
        assert " client=127.0.0.1" in next(x for x in router.log().splitlines() if line in x)


def test_reencrypt_with_seed_certificates(cli: Cli, router: RouterProcess, tmp_path: Path) -> None:
    certs = seed_certs(tmp_path / "seed")
    with Backend(tls=certs.server_context()) as backend:
        service(cli, "httpd", 443, backend.address)
        cli(
            "create",
            "route",
            "reencrypt",
            "httpd",
            "--service=httpd",
            "--hostname=httpd-rencrypt.ayush.com",
            f"--dest-ca-cert={certs.ca_crt}",
            check=True,
        )
        response = wait_serving(router.https, "httpd-rencrypt.ayush.com", tls=True)
        assert response.body == b"Hello"
        # The client sees the router's certificate, the application saw TLS from the router.
        assert cn(response.peer_cert) == "*.apps.localhost"
        assert backend.received[-1].tls is True
        assert backend.received[-1].sni is None  # destinationCACertificate: chain only, no service name
        assert "Secure" in (response.header("Set-Cookie") or "")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("wrong-ca", id="reencrypt-wrong-ca-503"),
        pytest.param("plain-backend", id="reencrypt-to-plain-http-503"),
        pytest.param("closed-port", id="reencrypt-closed-port-503"),
    ],
)
def test_reencrypt_failures_give_503_and_a_log_line(
    case: str, cli: Cli, router: RouterProcess, tmp_path: Path
) -> None:
    certs = seed_certs(tmp_path / "seed")
    other = seed_certs(tmp_path / "other", ca_cn="otherCA", prefix="other")
    dest_ca = other.ca_crt if case == "wrong-ca" else certs.ca_crt
    backend = Backend(tls=certs.server_context() if case != "plain-backend" else None)
    with backend:
        endpoint = backend.address
        if case == "closed-port":
            backend.stop()
        service(cli, "httpd", 443, endpoint)
        cli(
            "create",
            "route",
            "reencrypt",
            "httpd",
            "--service=httpd",
            "--hostname=app.example.com",
            f"--dest-ca-cert={dest_ca}",
            check=True,
        )
        response = wait_serving(router.https, "app.example.com", tls=True, status=503)
        assert b"Application is not available" in response.body
        assert response.header("Cache-Control") == "private, max-age=0, no-cache, no-store"
        assert backend.received == []
        expected = {
            "wrong-ca": "certificate verify failed",
            "plain-backend": "does not speak TLS",
            "closed-port": "connection refused",
        }[case]
        wait_until(lambda: expected in router.log(), 5, f"log line with {expected!r}")
        assert f"reencrypt default/httpd endpoint {endpoint}: " in router.log()
        assert "PRIVATE KEY" not in router.log()


def test_passthrough_relays_the_backends_tls(cli: Cli, router: RouterProcess, tmp_path: Path) -> None:
    certs = seed_certs(tmp_path / "seed")
    with Backend(tls=certs.server_context()) as backend:
        service(cli, "secure", 443, backend.address)
        cli(
            "create",
            "route",
            "passthrough",
            "secure",
            "--service=secure",
            "--hostname=secure.example.com",
            check=True,
        )
        response = wait_serving(router.https, "secure.example.com", tls=True)
        assert cn(response.peer_cert) == "httpd-rencrypt.ayush.com"  # the backend's own certificate
        assert backend.received[-1].sni == "secure.example.com"
        assert backend.received[-1].header("X-Forwarded-For") is None  # untouched bytes
        assert response.header("Set-Cookie") is None  # never cookies on passthrough
        # Without SNI the passthrough route is not reachable: TLS ends at the router, no route: 503.
        no_sni = get(router.https, "secure.example.com", tls=True, sni=None)
        assert no_sni.status == 503
        assert cn(no_sni.peer_cert) == "*.apps.localhost"


def test_insecure_policies_on_the_http_listener(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 8080, backend.address)
        for name, policy in (("none", "None"), ("allow", "Allow"), ("redirect", "Redirect")):
            cli(
                "create",
                "route",
                "edge",
                name,
                "--service",
                "web",
                "--hostname",
                f"{name}.example.com",
                "--insecure-policy",
                policy,
                check=True,
            )
        wait_serving(router.https, "redirect.example.com", tls=True)
        assert get(router.http, "none.example.com").status == 503
        allowed = get(router.http, "allow.example.com")
        assert allowed.status == 200 and allowed.body == b"Hello"
        # Insecure policy Allow: the cookie is not Secure (routes.md §5).
        assert allowed.header(
            "Set-Cookie",
        ).endswith("; path=/; HttpOnly")  # type: ignore[union-attr]
        assert backend.received[-1].header("X-Forwarded-Proto") == "http"
        before = len(backend.received)
        redirect = get(router.http, "redirect.example.com:8080", path="/a/b?c=d")
        assert redirect.status == 302
        assert redirect.header("Location") == "https://redirect.example.com/a/b?c=d"
        assert len(backend.received) == before  # a redirect never reaches the backend


def test_path_routing_most_specific_prefix(cli: Cli, router: RouterProcess) -> None:
    with Backend(name="root") as root, Backend(name="api") as api, Backend(name="v2") as v2:
        service(cli, "root", 80, root.address)
        service(cli, "api", 80, api.address)
        service(cli, "v2", 80, v2.address)
        cli("expose", "service", "root", "--hostname", "shop.example.com", check=True)
        cli("expose", "service", "api", "--hostname", "shop.example.com", "--path", "/api", check=True)
        cli("expose", "service", "v2", "--hostname", "shop.example.com", "--path", "/api/v2", check=True)
        wait_serving(router.http, "shop.example.com", path="/api/v2/x")
        cases = {
            "/": root,
            "/apix": root,
            "/api": api,
            "/api/": api,
            "/api/users?q=1": api,
            "/api/v2": v2,
            "/api/v2/x": v2,
            "/api/v22": api,
        }
        for path, expected in cases.items():
            count = len(expected.received)
            assert get(router.http, "SHOP.example.com.", path=path).status == 200, path
            assert len(expected.received) == count + 1, f"{path} should reach {expected.name}"
            assert expected.received[-1].path == path


def test_sni_host_mismatch_is_421_without_contacting_a_backend(cli: Cli, router: RouterProcess) -> None:
    with Backend(name="a") as a, Backend(name="b") as b:
        service(cli, "a", 80, a.address)
        service(cli, "b", 80, b.address)
        cli("create", "route", "edge", "a", "--service", "a", "--hostname", "a.example.com", check=True)
        cli("create", "route", "edge", "b", "--service", "b", "--hostname", "b.example.com", check=True)
        wait_serving(router.https, "b.example.com", tls=True)
        count_a, count_b = len(a.received), len(b.received)
        response = get(router.https, "b.example.com", tls=True, sni="a.example.com")
        assert response.status == 421
        assert (len(a.received), len(b.received)) == (count_a, count_b)
        # Same host with a port and different case is not a mismatch.
        assert get(router.https, "A.example.com:443", tls=True, sni="a.example.com").status == 200


def test_no_route_gives_the_openshift_503_page(router: RouterProcess) -> None:
    for port, tls in ((router.http, False), (router.https, True)):
        response = get(port, "nothing.apps.localhost", tls=tls)
        assert response.status == 503
        assert b"<h1>Application is not available</h1>" in response.body
        assert response.header("Connection") == "close"
        assert response.header("Cache-Control") == "private, max-age=0, no-cache, no-store"


def test_plain_http_on_the_https_port_is_told_to_use_tls(router: RouterProcess) -> None:
    with Connection(router.https) as conn:
        response = conn.request("GET", "/", "web.apps.localhost")
        assert response.status == 400
        assert b"TLS" in response.body


def test_keep_alive_reuses_one_backend_connection(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 8080, backend.address)
        cli("expose", "service", "web", "--hostname", "web.example.com", check=True)
        wait_serving(router.http, "web.example.com")
        connections_before = backend.connections
        with Connection(router.http) as conn:
            for _ in range(20):
                response = conn.request("GET", "/", "web.example.com")
                assert response.status == 200 and not response.closed
        assert backend.connections - connections_before <= 1
        assert ssl.OPENSSL_VERSION  # keep the import used by type checkers


def test_reencrypt_resumes_tls_sessions_to_the_backend(
    cli: Cli, router: RouterProcess, tmp_path: Path
) -> None:
    """A new connection to an endpoint resumes the last TLS session (an abbreviated handshake)."""
    certs = seed_certs(tmp_path / "seed")

    def close_each(request: object) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nHello"

    with Backend(respond=close_each, tls=certs.server_context()) as backend:  # type: ignore[arg-type]
        service(cli, "httpd", 443, backend.address)
        cli(
            "create",
            "route",
            "reencrypt",
            "httpd",
            "--service=httpd",
            "--hostname=resume.example.com",
            f"--dest-ca-cert={certs.ca_crt}",
            check=True,
        )
        wait_serving(router.https, "resume.example.com", tls=True)
        for _ in range(3):
            assert get(router.https, "resume.example.com", tls=True).status == 200
        assert backend.connections >= 4
        assert [r.tls_resumed for r in backend.received[-3:]] == [True, True, True]
