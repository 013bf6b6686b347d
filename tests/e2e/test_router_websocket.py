"""WebSocket upgrades through the router (hardening.md rule 17, issue 3): bad upgrade requests get 400, a
backend that does not switch correctly gets the client a 502 and no tunnel, a correct 101 opens a tunnel
that carries bytes both ways, over edge (plain backend) and reencrypt (the seed's openssl certificates)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import make_cli, wait_until
from tests.e2e.helpers import Cli, service, wait_serving
from tests.e2e.support.backend import Backend, Received, hello_response
from tests.e2e.support.certs import seed_certs
from tests.e2e.support.client import Connection, build_request, get
from tests.e2e.support.router import RouterProcess

EDGE = "ws.example.com"
REENCRYPT = "ws-reencrypt.example.com"
PLAIN = "ws-plain.example.com"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def switching(received: Received) -> bytes:
    """A WebSocket server's 101 (RFC 6455 §4.2.2); then the backend echoes every byte."""
    key = received.header("Sec-WebSocket-Key") or ""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %b\r\n\r\n" % accept_for(key).encode()
    )


def upgrade_request(
    host: str, *, key: str | None = KEY, version: str | None = "13", method: str = "GET"
) -> bytes:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    return build_request(method, "/chat", host, headers)


@dataclass
class Env:
    router: RouterProcess
    plain: Backend
    tls: Backend


def module_cli(tmp: Path) -> Cli:
    """The console script against this module's store; failures raise unless check=False."""
    run = make_cli(tmp / "store.db", tmp)
    return lambda *args, check=True, **kw: run(*args, check=check, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("websocket")
    cli = module_cli(tmp)
    certs = seed_certs(tmp / "seed")
    with (
        Backend(switching, name="plain") as plain,
        Backend(switching, tls=certs.server_context(), name="tls") as tls,
    ):
        router = RouterProcess(tmp / "store.db", tmp / "routers").start()
        try:
            service(cli, "echo", 8080, plain.address)
            service(cli, "echo-tls", 8443, tls.address)
            cli("create", "route", "edge", "edge", "--service", "echo", "--hostname", EDGE)
            cli("expose", "service", "echo", "--hostname", PLAIN, "--name", "plain")
            cli(
                "create", "route", "reencrypt", "reencrypt", "--service", "echo-tls", "--hostname", REENCRYPT,
                f"--dest-ca-cert={certs.ca_crt}",
            )  # fmt: skip
            plain.respond = tls.respond = hello_response
            wait_serving(router.https, EDGE, tls=True)
            wait_serving(router.https, REENCRYPT, tls=True)
            wait_serving(router.http, PLAIN)
            yield Env(router, plain, tls)
        finally:
            try:
                router.stop()
            except AssertionError:
                router.kill()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    for backend in (env.plain, env.tls):
        backend.respond = switching
        backend.received.clear()
    yield


def connect(env: Env, host: str) -> Connection:
    if host == PLAIN:
        return Connection(env.router.http)
    return Connection(env.router.https, tls=True, sni=host)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(upgrade_request(EDGE, key=None), id="no-key"),
        pytest.param(upgrade_request(EDGE, key=""), id="empty-key"),
        pytest.param(upgrade_request(EDGE, version=None), id="no-version"),
        pytest.param(upgrade_request(EDGE, version="8"), id="version-8"),
        pytest.param(upgrade_request(EDGE, method="POST"), id="post"),
    ],
)
def test_bad_upgrade_request_is_400_and_never_reaches_the_backend(env: Env, raw: bytes) -> None:
    before = env.plain.bytes_received
    with connect(env, EDGE) as conn:
        conn.send(raw)
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (400, "close")
        assert conn.is_closed()
    assert env.plain.received == []
    assert env.plain.bytes_received == before


def wrong_accept(received: Received) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %b\r\nX-Leak: 1\r\n\r\nSECRET" % accept_for("another key").encode()
    )


def no_accept(received: Received) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"X-Leak: 1\r\n\r\nSECRET"
    )


def other_protocol(received: Received) -> bytes:
    return switching(received).replace(b"Upgrade: websocket", b"Upgrade: h2c") + b"SECRET"


def declined(received: Received) -> bytes:
    return b"HTTP/1.1 200 OK\r\nX-Leak: 1\r\nContent-Length: 6\r\n\r\nSECRET"


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(wrong_accept, id="wrong-accept"),
        pytest.param(no_accept, id="no-accept"),
        pytest.param(other_protocol, id="101-to-another-protocol"),
        pytest.param(declined, id="200-instead-of-101"),
    ],
)
def test_backend_that_does_not_switch_correctly_gives_502_and_no_tunnel(env: Env, respond: object) -> None:
    env.plain.respond = respond  # type: ignore[assignment]
    closed_before = env.plain.closed_connections
    with connect(env, EDGE) as conn:
        conn.send(upgrade_request(EDGE))
        response = conn.read_response()
        assert (response.status, response.header("Connection")) == (502, "close")
        assert response.header("X-Leak") is None and b"SECRET" not in response.body
        assert conn.is_closed()
    assert len(env.plain.received) == 1
    # The backend connection that was asked to switch is closed, never reused.
    wait_until(lambda: env.plain.closed_connections > closed_before, 5, "the backend connection to close")


@pytest.mark.parametrize("host", [EDGE, REENCRYPT, PLAIN])
def test_websocket_tunnel_echoes_both_ways(env: Env, host: str) -> None:
    backend = env.tls if host == REENCRYPT else env.plain
    with connect(env, host) as conn:
        # Bytes right behind the upgrade request must reach the backend once the tunnel is up.
        conn.send(upgrade_request(host) + b"early")
        response = conn.read_response()
        assert response.status == 101
        assert response.header("Sec-WebSocket-Accept") == accept_for(KEY)
        assert (response.header("Upgrade") or "").lower() == "websocket"
        assert conn.read_exactly(5) == b"early"
        for message in (b"ping", b"\x00\x01binary\xff", b"x" * 100_000):
            conn.send(message)
            assert conn.read_exactly(len(message)) == message
    seen = backend.received[0]
    assert seen.header("Upgrade") == "websocket"
    assert seen.header("Sec-WebSocket-Key") == KEY
    assert seen.header("Sec-WebSocket-Version") == "13"
    assert seen.tls is (host == REENCRYPT)


def test_large_transfer_through_a_tunnel_keeps_flowing(env: Env) -> None:
    """4 MiB each way through an edge tunnel while the client reads only after writing in steps: the
    router's back-pressure must not deadlock or drop bytes (rule 16)."""
    payload = os.urandom(256 * 1024)
    with connect(env, EDGE) as conn:
        conn.send(upgrade_request(EDGE))
        assert conn.read_response().status == 101
        for _ in range(16):
            conn.send(payload)
            assert conn.read_exactly(len(payload), limit=20) == payload


def test_backend_bytes_right_after_the_101_reach_the_client(env: Env) -> None:
    env.plain.respond = lambda received: switching(received) + b"hello from the server"
    with connect(env, EDGE) as conn:
        conn.send(upgrade_request(EDGE))
        assert conn.read_response().status == 101
        assert conn.read_exactly(len(b"hello from the server")) == b"hello from the server"


def test_non_websocket_upgrade_is_served_as_a_plain_request(env: Env) -> None:
    env.plain.respond = hello_response
    with connect(env, EDGE) as conn:
        response = conn.request(
            "GET", "/", EDGE, [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings")]
        )
        assert response.status == 200 and response.body == b"Hello"
        assert conn.request("GET", "/again", EDGE).status == 200  # the connection stays usable
    seen = env.plain.received[0]
    assert seen.header("Upgrade") is None and seen.header("HTTP2-Settings") is None
    assert get(env.router.https, EDGE, tls=True).status == 200
