"""TLS on both sides: profiles, the service CA mode of reencrypt, the default certificate kept across
restarts, the ClientHello deadline, the connection limit, and passthrough half-close and bulk transfer."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from shiftroute import accel
from tests.conftest import wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend
from tests.e2e.support.client import Connection, get, insecure_client_context
from tests.e2e.support.router import RouterProcess


def _pki(cli: Cli, directory: Path, name: str, san: str) -> tuple[Path, Path, Path]:
    if not (directory / "service-ca.crt").exists():
        cli("pki", "ca", "service-ca", "--dir", str(directory), check=True)
    cli(
        "pki",
        "cert",
        name,
        "--ca",
        str(directory / "service-ca"),
        "--san",
        san,
        "--dir",
        str(directory),
        check=True,
    )
    return directory / "service-ca.crt", directory / f"{name}.crt", directory / f"{name}.key"


def _route(cli: Cli, kind: str, name: str, host: str) -> None:
    """A route `name` of kind `kind` to the service of the same name."""
    cli("create", "route", kind, name, "--service", name, "--hostname", host, check=True)


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_reencrypt_with_the_service_ca_checks_the_service_name(
    cli: Cli, start_router, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    certs = tmp_path / "pki"
    ca, good_crt, good_key = _pki(cli, certs, "good", "DNS:web.default.svc")
    _, bad_crt, bad_key = _pki(cli, certs, "bad", "DNS:other.default.svc")
    router = start_router("--service-ca", str(ca))
    with (
        Backend(tls=_server_context(good_crt, good_key)) as good,
        Backend(tls=_server_context(bad_crt, bad_key)) as bad,
    ):
        service(cli, "web", 443, good.address)
        service(cli, "imposter", 443, bad.address)
        _route(cli, "reencrypt", "web", "web.example.com")
        _route(cli, "reencrypt", "imposter", "imp.example.com")
        assert wait_serving(router.https, "web.example.com", tls=True).body == b"Hello"
        # hardening.md rule 2: SNI <service>.<namespace>.svc is sent when verifying a service name.
        assert good.received[-1].sni == "web.default.svc"
        wait_serving(router.https, "imp.example.com", tls=True, status=503)
        assert bad.received == []
        wait_until(
            lambda: "certificate verify failed" in router.log(), 5, "the verification failure in the log"
        )


@pytest.mark.parametrize("pure", [False, True], ids=["installed-build", "python-sources"])
def test_request_path_builds_serve_reencrypt_and_edge(
    pure: bool, cli: Cli, start_router, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The compiled request path (when installed) and its Python sources (SHIFTROUTE_PURE_PYTHON=1) serve the
    same traffic; the router's log says which one runs."""
    certs = tmp_path / "pki"
    ca, crt, key = _pki(cli, certs, "web", "DNS:web.default.svc")
    router = start_router("--service-ca", str(ca), env={"SHIFTROUTE_PURE_PYTHON": "1"} if pure else None)
    if pure:
        expected = "request path: Python sources (SHIFTROUTE_PURE_PYTHON is set)"
    elif accel.compiled_present():
        expected = "request path: compiled (Cython,"
    else:
        expected = "request path: Python sources (no compiled modules installed)"
    assert expected in router.log()
    if pure:
        assert "TLS records: through Python's ssl module (Python sources)" in router.log()
    elif accel.compiled_present():
        assert "TLS records: OpenSSL called directly" in router.log()  # engine/tls_direct.pxd
    # Both builds replace uvloop's transport dictionary (engine/transports.py).
    assert "transport map: a weak dict in C (uvloop's WeakValueDictionary replaced)" in router.log()
    # Both builds serve HTTPS on the router's own sockets (engine/client_link.py).
    assert "https connections: the router's own sockets" in router.log()
    assert "garbage collector thresholds (20000, 20, 20)" in router.log()
    with Backend(tls=_server_context(crt, key)) as secure, Backend() as plain:
        service(cli, "web", 443, secure.address)
        service(cli, "plain", 8080, plain.address)
        _route(cli, "reencrypt", "web", "re.example.com")
        _route(cli, "edge", "plain", "edge.example.com")
        for _ in range(3):  # keep-alive and pooled backend connections on the way
            assert wait_serving(router.https, "re.example.com", tls=True).body == b"Hello"
            assert wait_serving(router.https, "edge.example.com", tls=True).body == b"Hello"
        for backend in (secure, plain):
            seen = backend.received[-1]
            assert seen.header("X-Forwarded-For") == "127.0.0.1"
            assert seen.header("X-Forwarded-Proto") == "https"
        assert secure.received[-1].tls and secure.received[-1].sni == "web.default.svc"
        assert not plain.received[-1].tls


def test_https_on_the_loop_s_own_server_serves_every_termination(
    cli: Cli, start_router, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """SHIFTROUTE_HTTPS_SOCKETS=loop (serve --help): HTTPS on uvloop's server and transports instead of the
    router's own sockets, with the same behaviour for reencrypt, edge and passthrough; the log says so."""
    certs = tmp_path / "pki"
    ca, crt, key = _pki(cli, certs, "web", "DNS:web.default.svc")
    router = start_router("--service-ca", str(ca), env={"SHIFTROUTE_HTTPS_SOCKETS": "loop"})
    assert "https connections: the event loop's server and transports (SHIFTROUTE_HTTPS_SOCKETS=loop)" in (
        router.log()
    )
    relayed = _CountUntilEof()
    with Backend(tls=_server_context(crt, key)) as secure, Backend() as plain:
        service(cli, "web", 443, secure.address)
        service(cli, "plain", 8080, plain.address)
        _route(cli, "reencrypt", "web", "re.example.com")
        _route(cli, "edge", "plain", "edge.example.com")
        hello = _passthrough_route(cli, relayed.port)
        assert wait_serving(router.https, "re.example.com", tls=True).body == b"Hello"
        assert wait_serving(router.https, "edge.example.com", tls=True).body == b"Hello"
        assert secure.received[-1].header("X-Forwarded-For") == "127.0.0.1"
        assert plain.received[-1].header("X-Forwarded-Proto") == "https"
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(hello + b"after the hello")
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"got %d bytes" % (len(hello) + len(b"after the hello"))
    assert relayed.got == hello + b"after the hello"


def test_reencrypt_without_any_way_to_verify_is_not_admitted(cli: Cli, router: RouterProcess) -> None:
    with Backend() as backend:
        service(cli, "web", 443, backend.address)
        _route(cli, "reencrypt", "web", "web.example.com")

        def reason() -> str | None:
            described = cli("describe", "route", "web", check=True).stdout
            return described if "ExtendedValidationFailed" in described else None

        described = wait_until(reason, 10, "the route to be rejected")
        assert "--dest-ca-cert" in str(described) and "--service-ca" in str(described)


@pytest.mark.parametrize(
    ("profile", "client_max", "accepted"),
    [
        pytest.param("intermediate", ssl.TLSVersion.TLSv1_1, False, id="intermediate-refuses-tls1.1"),
        pytest.param("intermediate", ssl.TLSVersion.TLSv1_2, True, id="intermediate-accepts-tls1.2"),
        pytest.param("modern", ssl.TLSVersion.TLSv1_2, False, id="modern-refuses-tls1.2"),
        pytest.param("modern", ssl.TLSVersion.TLSv1_3, True, id="modern-accepts-tls1.3"),
    ],
)
def test_tls_profiles(profile: str, client_max: ssl.TLSVersion, accepted: bool, start_router) -> None:  # type: ignore[no-untyped-def]
    router = start_router("--tls-profile", profile)
    ctx = insecure_client_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = client_max
    if client_max < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with Connection(router.https, tls=True, sni="x.apps.localhost", context=ctx) as conn:
            version = conn.sock.version()  # type: ignore[union-attr]
        assert accepted, f"handshake with {version} should have been refused"
    except (ssl.SSLError, ConnectionResetError):
        assert not accepted


def test_default_certificate_is_generated_once_and_reused(start_router) -> None:  # type: ignore[no-untyped-def]
    first = start_router()
    with Connection(first.https, tls=True, sni="a.apps.localhost") as conn:
        assert conn.peer_cert is not None
        fingerprint = conn.peer_cert.fingerprint(conn.peer_cert.signature_hash_algorithm)  # type: ignore[arg-type]
        names = conn.peer_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert names[0].value == "*.apps.localhost"
    first.stop()
    second = start_router()
    with Connection(second.https, tls=True, sni="a.apps.localhost") as conn:
        assert conn.peer_cert is not None
        assert conn.peer_cert.fingerprint(conn.peer_cert.signature_hash_algorithm) == fingerprint  # type: ignore[arg-type]


def test_silent_client_is_cut_at_the_client_hello_deadline(router: RouterProcess) -> None:
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a TLS record, then nothing
        sock.settimeout(15)
        assert sock.recv(100) == b""  # closed (routes.md §7: ClientHello within 5 s)


def test_connection_limit_refuses_new_connections_only(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    router = start_router("--max-connections", "2")
    with Backend() as backend:
        service(cli, "web", 80, backend.address)
        cli("expose", "service", "web", "--hostname", "web.example.com", check=True)
        wait_until(lambda: "routing table ready" in router.log(), 10, "the router to be ready")
        with Connection(router.http) as one, Connection(router.http) as two:
            wait_until(lambda: one.request("GET", "/", "web.example.com").status == 200, 10, "the route")
            with Connection(router.http) as three:
                assert three.read_until_closed(5) == b""
            assert two.request("GET", "/", "web.example.com").status == 200
            assert one.request("GET", "/", "web.example.com").status == 200


class _CountUntilEof:
    """A raw TCP backend: reads until the client half-closes, then answers and closes; `connections` of
    them one after another (`got`: what the latest one sent)."""

    def __init__(self, connections: int = 1) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got = b""
        threading.Thread(target=self._serve, args=(connections,), daemon=True).start()

    def _serve(self, connections: int) -> None:
        self.sock.settimeout(20)
        for _ in range(connections):
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                return
            with conn:
                conn.settimeout(20)
                self.got = b""
                while data := conn.recv(65536):
                    self.got += data
                conn.sendall(b"got %d bytes" % len(self.got))


class _NeverAccepts:
    """An endpoint that never completes a TCP handshake: a listening socket whose accept queue is full
    (backlog 0: one connection made and never accepted fills it). Linux drops further SYNs to a full
    queue, so a connect to it waits until the connector gives up: a black hole on loopback."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self) -> None:
        self.filler.close()
        self.sock.close()


def _relayed_answer(port: int, hello: bytes, extra: bytes) -> bytes:
    """Send a ClientHello and more through the router, half-close, and read the answer until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(hello + extra)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _closed_after(port: int, hello: bytes) -> bool:
    """Send a ClientHello and nothing more; True when the router then closes the connection (EOF or a
    reset) before the client's own 15 s timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(hello)
        try:
            return sock.recv(100) == b""
        except ConnectionResetError:
            return True


def _client_hello(sni: str) -> bytes:
    """A real ClientHello from Python's ssl module, for the router to read the SNI from."""
    client = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=sni
    )
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def _passthrough_route(cli: Cli, *ports: int) -> bytes:
    """Route pt.example.com (passthrough) to endpoints on these local ports; once it is admitted (the status
    is written after the table is published, so from then on the route relays), a ClientHello for it."""
    service(cli, "pt", 443, *(f"127.0.0.1:{port}" for port in ports))
    _route(cli, "passthrough", "pt", "pt.example.com")
    wait_until(lambda: "Admitted" in cli("get", "routes", "-o", "wide", check=True).stdout, 10, "admission")
    return _client_hello("pt.example.com")


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(100_000, id="asyncio-relay"),
        pytest.param(3_000_000, id="spliced-after-256k"),
    ],
)
def test_passthrough_passes_half_close_on(size: int, cli: Cli, router: RouterProcess) -> None:
    """After the ClientHello the relay is byte-for-byte: a half-close (FIN) from the client reaches the
    endpoint, and the endpoint's answer still comes back (also once the relay runs on splice(2))."""
    backend = _CountUntilEof()
    hello = _passthrough_route(cli, backend.port)
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(hello + b"x" * size)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"got %d bytes" % (len(hello) + size)
    assert backend.got == hello + b"x" * size


def test_passthrough_bulk_transfer_is_intact(cli: Cli, router: RouterProcess, tmp_path: Path) -> None:
    payload = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)  # 20 MiB

    def big(request: object) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload

    _ca, crt, key = _pki(cli, tmp_path / "pki", "bulk", "DNS:bulk.example.com")
    with Backend(respond=big, tls=_server_context(crt, key)) as backend:  # type: ignore[arg-type]
        service(cli, "bulk", 443, backend.address)
        cli(
            "create",
            "route",
            "passthrough",
            "bulk",
            "--service",
            "bulk",
            "--hostname",
            "bulk.example.com",
            check=True,
        )
        response = wait_serving(router.https, "bulk.example.com", tls=True, timeout=30)
        assert hashlib.sha256(response.body).digest() == hashlib.sha256(payload).digest()
        assert get(router.https, "bulk.example.com", tls=True).status == 200


def test_passthrough_access_line_when_the_connection_ends(cli: Cli, router: RouterProcess) -> None:
    backend = _CountUntilEof()
    hello = _passthrough_route(cli, backend.port)
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(hello + b"y" * 1000)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    sent = len(hello) + 1000
    answer = len(b"got %d bytes" % sent)
    line = f"default/pt 127.0.0.1:{backend.port} TLS sni=pt.example.com up={sent} down={answer}"
    wait_until(lambda: line in router.log(), 5, "the passthrough access-log line")
    metrics = get(router.admin, "x", "/metrics").text
    assert 'shiftroute_passthrough_connections_total{route="default/pt"} 1' in metrics


def test_passthrough_connect_timeout_moves_on_to_the_next_endpoint(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    """An endpoint that does not accept within the connect timeout is logged and the next one is tried,
    with the ClientHello held back and then relayed intact."""
    router = start_router("--timeout", "connect=300ms")
    silent, backend = _NeverAccepts(), _CountUntilEof(connections=20)
    try:
        hello = _passthrough_route(cli, silent.port, backend.port)
        # Round robin, so that some connection goes to the silent endpoint first (passthrough's default,
        # source, may send every connection from 127.0.0.1 to the good one; the loop below waits for it).
        cli("annotate", "route", "pt", "haproxy.router.openshift.io/balance=roundrobin", check=True)
        for _ in range(20):
            assert _relayed_answer(router.https, hello, b"z" * 10) == b"got %d bytes" % (len(hello) + 10)
            if "connect timed out" in router.log():
                break
        assert f"127.0.0.1:{silent.port}" in router.log().split("connect timed out")[0].splitlines()[-1]
    finally:
        silent.close()


def test_passthrough_without_an_accepting_endpoint_closes_the_client(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    router = start_router("--timeout", "connect=300ms")
    silent = _NeverAccepts()
    try:
        hello = _passthrough_route(cli, silent.port)
        assert _closed_after(router.https, hello)  # aborted, as HAProxy does when no server accepts
        assert "connect timed out" in router.log()
    finally:
        silent.close()


def test_passthrough_idle_tunnel_is_closed_at_the_tunnel_timeout(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    router = start_router("--timeout", "tunnel=1s")
    backend = _CountUntilEof()
    hello = _passthrough_route(cli, backend.port)
    # Nothing moves either way after the ClientHello: the router ends the tunnel.
    assert _closed_after(router.https, hello)
    wait_until(lambda: backend.got == hello, 5, "the endpoint to have the ClientHello")


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="asyncio-relay"),
        pytest.param(300_000, id="spliced-after-256k"),
    ],
)
def test_passthrough_tunnel_stays_open_while_bytes_move_and_idles_out_after(  # type: ignore[no-untyped-def]
    size: int, cli: Cli, start_router
) -> None:
    """The tunnel timeout is idle time: a byte every 0.4 s keeps a tunnel with a 1 s timeout open for well
    over 1 s (on the asyncio relay and on splice(2)), and once nothing moves the router ends it."""
    router = start_router("--timeout", "tunnel=1s")
    backend = _CountUntilEof()
    hello = _passthrough_route(cli, backend.port)
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(hello + b"x" * size)
        for _ in range(6):  # 2.4 s of traffic: more than twice the timeout
            time.sleep(0.4)
            sock.sendall(b"y")
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(100)  # still open: nothing to read, no EOF, no reset
        sock.setblocking(True)
        try:
            assert sock.recv(100) == b""  # then idle: closed before the client's own 15 s timeout
        except ConnectionResetError:
            pass
    wait_until(lambda: backend.got == hello + b"x" * size + b"y" * 6, 5, "every byte at the endpoint")


def test_passthrough_connection_is_released_once_both_sides_are_done(cli: Cli, start_router) -> None:  # type: ignore[no-untyped-def]
    """Both sides half-closed: nothing more can arrive, so the router closes the client socket at once,
    as HAProxy does, instead of holding it for the fin timeout (here 60 s)."""
    router = start_router("--timeout", "fin=60s")
    backend = _CountUntilEof()
    hello = _passthrough_route(cli, backend.port)
    assert _relayed_answer(router.https, hello, b"") == b"got %d bytes" % len(hello)

    def open_connections() -> str:
        metrics = get(router.admin, "x", "/metrics").text
        return next(line for line in metrics.splitlines() if line.startswith("shiftroute_connections "))

    # (The admin port's own connections are not client connections.)
    wait_until(
        lambda: open_connections() == "shiftroute_connections 0", 10, "the relayed connection to close"
    )


class _AnswerFirst:
    """A raw TCP backend that answers and half-closes at once, then, a moment later, reads what the
    client still sends until the client half-closes too."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got = 0
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(20)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(20)
            conn.sendall(b"ready")
            conn.shutdown(socket.SHUT_WR)
            time.sleep(1)  # not reading for a while: the router has to hold the client's bytes
            while data := conn.recv(65536):
                self.got += len(data)
        self.done.set()


def test_passthrough_endpoint_that_closes_first_still_gets_everything(
    cli: Cli, router: RouterProcess
) -> None:
    """The endpoint answers and half-closes first; the client then sends 8 MiB and half-closes. The relay
    keeps the client-to-endpoint direction open until the client is done, and every byte arrives."""
    backend = _AnswerFirst()
    hello = _passthrough_route(cli, backend.port)
    payload = b"p" * (8 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", router.https), timeout=15) as sock:
        sock.sendall(hello)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer == b"ready"
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    wait_until(backend.done.is_set, 15, "the endpoint to read to the end")
    assert backend.got == len(hello) + len(payload)
