"""TLS records after the handshake: compiled, TlsLayer calls OpenSSL from C on the `SSL` object of Python's
`ssl` (engine/tls_direct.pxd); with `tls.DIRECT = False`, or from the sources, it goes through `ssl`.

Both paths run here on real TLS 1.3 connections between two TlsLayers (a client and a server, bytes handed
across in memory) and must give the same plaintext, the same close_notify and the same kind of error."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from shiftroute import accel
from shiftroute.engine import tls, tls_direct
from shiftroute.engine.tls import TlsLayer
from shiftroute.pki.issue import make_ca, make_leaf, write_pair

HOST = "app.example"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    directory: Path = tmp_path_factory.mktemp("pki")
    ca = make_ca("test CA")
    ca_cert, _ = write_pair(ca, directory, "ca")
    cert, key = write_pair(make_leaf(ca, HOST, [x509.DNSName(HOST)]), directory, "app")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(ca_cert))
    return server, client


@pytest.fixture(params=[True, False], ids=["direct", "through-ssl"])
def direct(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    monkeypatch.setattr(tls, "DIRECT", request.param)
    yield request.param


def compiled() -> bool:
    return (tls.__file__ or "").endswith(accel._EXTENSION)


def connect(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[TlsLayer, TlsLayer]:
    """A client and a server layer, handshake done (bytes handed across until both say so)."""
    server_context, client_context = contexts
    client = TlsLayer(client_context, server_side=False, server_hostname=HOST)
    server = TlsLayer(server_context, server_side=True)
    to_server = client.start()
    for _ in range(10):  # a TLS 1.3 handshake takes two flights; the bound only stops a broken loop
        pieces, to_client, closed = server.feed(to_server)
        assert (pieces, closed) == ([], False)
        pieces, to_server, closed = client.feed(to_client) if to_client else ([], b"", False)
        assert (pieces, closed) == ([], False)
        if client.handshake_done and server.handshake_done and not to_server:
            return client, server
    raise AssertionError("the handshake did not finish")


def test_the_compiled_build_calls_openssl_directly(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], direct: bool
) -> None:
    client, server = connect(contexts)
    expected = direct and compiled()
    assert client.direct is expected and server.direct is expected
    if os.environ.get("CI") == "true":
        # CI builds the compiled modules (test_accel.py): there the C path must be the one taken.
        assert compiled() and (client.direct or not direct)


def test_both_paths_deliver_the_same_bytes(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], direct: bool
) -> None:
    client, server = connect(contexts)
    # Small, one record; then 200 KiB: 13 records, more than the C path's 64 KiB gathering buffer at once.
    request = b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"
    body = bytes(range(256)) * 800
    pieces, out, closed = server.feed(client.encrypt(request))
    assert (b"".join(pieces), closed) == (request, False)
    if out:  # TLS 1.3 servers send session tickets after the handshake: the client reads them quietly
        assert client.feed(out) == ([], b"", False)
    wire = server.encrypt(b"HTTP/1.1 200 OK\r\nContent-Length: 204800\r\n\r\n" + body)
    pieces, out, closed = client.feed(wire)
    assert b"".join(pieces).endswith(body) and (out, closed) == (b"", False)
    assert len(b"".join(pieces)) == len(body) + 43
    # Byte by byte: each record is delivered once it is whole, nothing before.
    delivered = b""
    wire = client.encrypt(b"ping")
    for byte in wire:
        pieces, _, closed = server.feed(bytes([byte]))
        delivered += b"".join(pieces)
        assert not closed and (delivered == b"" or delivered == b"ping")
    assert delivered == b"ping" and len(wire) > 20
    # Plaintext and close_notify in one read: the plaintext first, then `closed`.
    pieces, _, closed = server.feed(client.encrypt(b"last") + client.close_notify())
    assert (pieces, closed) == ([b"last"], True)


def test_a_damaged_record_is_an_ssl_error_on_both_paths(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], direct: bool
) -> None:
    client, server = connect(contexts)
    wire = bytearray(client.encrypt(b"GET / HTTP/1.1\r\n\r\n"))
    wire[-3] ^= 0x55  # inside the AEAD tag: authentication fails
    with pytest.raises(ssl.SSLError) as caught:
        server.feed(bytes(wire))
    assert "bad record mac" in str(caught.value).lower().replace("_", " ")
    # The error stays with that connection: OpenSSL's error queue holds nothing for the next one.
    client, server = connect(contexts)
    assert server.feed(client.encrypt(b"ok"))[0] == [b"ok"]


def test_the_python_twin_never_hands_out_a_handle() -> None:
    # The sources' version (what runs without the compiled build): no handle, and nothing to call with one.
    assert tls_direct.handle_of(object(), object(), object()) == 0
    with pytest.raises(ValueError, match="no OpenSSL handle"):
        tls_direct.feed(1, b"")
    with pytest.raises(ValueError, match="no OpenSSL handle"):
        tls_direct.encrypt(1, b"")


def test_none_is_refused_on_both_paths(contexts: tuple[ssl.SSLContext, ssl.SSLContext], direct: bool) -> None:
    # The C path reads a bytes object's buffer: None must be a TypeError there too, never a crash.
    client, server = connect(contexts)
    with pytest.raises(TypeError):
        server.feed(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.encrypt(None)  # type: ignore[arg-type]


def test_the_router_log_says_which_path_records_take(direct: bool) -> None:
    line = tls.describe_records()
    if not direct:
        assert line == "through Python's ssl module (tls.DIRECT is off)"
    elif compiled():
        assert line.startswith("OpenSSL called directly")
    else:
        assert line == "through Python's ssl module (Python sources)"
