"""ClientHello parsing: real hellos from Python's ssl and `openssl s_client`, then hand-built edge cases."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable

import pytest

from shiftroute.protocol.tls_hello import (
    MAX_CLIENT_HELLO,
    ClientHello,
    ClientHelloError,
    NotTLSError,
    parse_client_hello,
)

# ---------------------------------------------------------------------------------------------------------
# Builders. tests/unit/test_tls_hello_fuzz.py has its own copy: test modules do not import each other.


def u8(v: int) -> bytes:
    return v.to_bytes(1, "big")


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def vec1(data: bytes) -> bytes:
    return u8(len(data)) + data


def vec2(data: bytes) -> bytes:
    return u16(len(data)) + data


def ext(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vec2(data)


def server_names(*entries: tuple[int, bytes]) -> bytes:
    """A server_name extension with raw (name_type, name) entries."""
    return ext(0, vec2(b"".join(u8(t) + vec2(name) for t, name in entries)))


def sni_ext(name: bytes) -> bytes:
    return server_names((0, name))


def alpn_ext(*protocols: bytes) -> bytes:
    return ext(16, vec2(b"".join(vec1(p) for p in protocols)))


def versions_ext(*versions: int) -> bytes:
    return ext(43, vec1(b"".join(u16(v) for v in versions)))


def handshake(
    extensions: bytes | None = b"",
    *,
    legacy_version: int = 0x0303,
    session_id: bytes = bytes(32),
    suites: bytes = b"\x13\x01\x00\x2f",
    compression: bytes = b"\x00",
    msg_type: int = 1,
) -> bytes:
    """A ClientHello handshake message (RFC 8446 §4.1.2); extensions=None leaves the block out entirely."""
    body = u16(legacy_version) + bytes(range(32)) + vec1(session_id) + vec2(suites) + vec1(compression)
    if extensions is not None:
        body += vec2(extensions)
    return u8(msg_type) + len(body).to_bytes(3, "big") + body


def records(message: bytes, size: int = 1 << 14, version: int = 0x0301, content_type: int = 22) -> bytes:
    """`message` cut into TLS records of at most `size` bytes."""
    out = b""
    for start in range(0, len(message), size):
        chunk = message[start : start + size]
        out += u8(content_type) + u16(version) + vec2(chunk)
    return out


def record(payload: bytes, content_type: int = 22, version: int = 0x0301) -> bytes:
    return u8(content_type) + u16(version) + u16(len(payload)) + payload


# ---------------------------------------------------------------------------------------------------------
# Real hellos


def python_hello(
    server_hostname: str | None,
    alpn: list[str] | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight of a real Python/OpenSSL client, captured through memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_hostname is None:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def openssl_hello(*args: str) -> bytes:
    """The first flight `openssl s_client` sends to a local listener; every wait has a deadline."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: run `make system-deps` (as root) or `make test`")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]
        client = subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            conn, _ = server.accept()
            with conn:
                return _read_hello(conn, deadline=time.monotonic() + 5)
        finally:
            client.kill()
            client.wait(timeout=5)


def _read_hello(conn: socket.socket, deadline: float) -> bytes:
    data = b""
    while parse_client_hello(data) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete ClientHello before the deadline ({len(data)} bytes)"
        conn.settimeout(remaining)
        chunk = conn.recv(65536)
        assert chunk, f"client closed after {len(data)} bytes"
        data += chunk
    return data


def _real(
    sni: str | None, alpn: tuple[str, ...], tls13: bool, make: Callable[[], bytes], id_: str
) -> pytest.ParameterSet:
    return pytest.param(make, sni, alpn, tls13, id=id_)


REAL_HELLOS = [
    _real("example.com", (), True, lambda: python_hello("example.com"), "python-tls13-sni"),
    _real(None, (), True, lambda: python_hello(None), "python-tls13-no-sni"),
    _real(
        "app.example.com", (), True, lambda: python_hello("App.EXAMPLE.com"), "python-uppercase-sni-lowered"
    ),
    _real(
        "xn--caf-dma.example", (), True, lambda: python_hello("café.example"), "python-idn-sent-as-a-label"
    ),
    _real(
        "h.example",
        ("h2", "http/1.1"),
        True,
        lambda: python_hello("h.example", ["h2", "http/1.1"]),
        "python-tls13-alpn",
    ),
    _real(
        "old.example",
        ("http/1.1",),
        False,
        lambda: python_hello("old.example", ["http/1.1"], ssl.TLSVersion.TLSv1_2),
        "python-tls12-only-alpn",
    ),
    _real(None, (), False, lambda: python_hello(None, None, ssl.TLSVersion.TLSv1_2), "python-tls12-no-sni"),
    _real(
        "foo.example.com",
        ("h2", "http/1.1"),
        True,
        lambda: openssl_hello("-servername", "Foo.Example.COM", "-alpn", "h2,http/1.1"),
        "openssl-sni-alpn",
    ),
    _real(
        "frag.example.com",
        tuple(f"proto{i}" for i in range(60)),
        True,
        # -max_send_frag 512 makes OpenSSL cut its ~800-byte hello into two records (RFC 8446 §5.1).
        lambda: openssl_hello(
            "-servername",
            "frag.example.com",
            "-max_send_frag",
            "512",
            "-alpn",
            ",".join(f"proto{i}" for i in range(60)),
        ),
        "openssl-hello-fragmented-over-records",
    ),
    _real(None, (), False, lambda: openssl_hello("-noservername", "-tls1_2"), "openssl-tls12-no-sni"),
]


@pytest.mark.parametrize(("make", "sni", "alpn", "tls13"), REAL_HELLOS)
def test_real_client_hello(
    make: Callable[[], bytes], sni: str | None, alpn: tuple[str, ...], tls13: bool
) -> None:
    data = make()
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.sni == sni
    assert hello.alpn == alpn
    assert hello.legacy_version == 0x0303
    assert (0x0304 in hello.supported_versions) is tls13
    assert hello.record_length == len(data)


@pytest.mark.parametrize(("make", "sni", "alpn", "tls13"), REAL_HELLOS[:1] + REAL_HELLOS[-2:-1])
def test_real_hello_byte_at_a_time(
    make: Callable[[], bytes], sni: str | None, alpn: tuple[str, ...], tls13: bool
) -> None:
    data = make()
    whole = parse_client_hello(data)
    for i in range(len(data)):
        assert parse_client_hello(data[:i]) is None, f"prefix of {i} bytes"
    assert parse_client_hello(data) == whole


def test_openssl_hello_really_is_fragmented() -> None:
    data = openssl_hello(
        "-servername", "x.example", "-max_send_frag", "512", "-alpn", ",".join(["p" * 200] * 3)
    )
    first_record = 5 + int.from_bytes(data[3:5], "big")
    assert first_record < len(data)
    assert parse_client_hello(data) is not None


# ---------------------------------------------------------------------------------------------------------
# Hand-built valid hellos

PLAIN = handshake(sni_ext(b"example.com"))


def sized_handshake(size: int) -> bytes:
    """A valid ClientHello message of exactly `size` bytes, padded with an unknown extension."""
    message = handshake(ext(0xFFFF, bytes(size - len(handshake(ext(0xFFFF, b""))))))
    assert len(message) == size
    return message


def ok(
    data: bytes,
    sni: str | None,
    alpn: tuple[str, ...] = (),
    versions: tuple[int, ...] = (),
    *,
    legacy: int = 0x0303,
    consumed: int | None = None,
    id: str,
) -> pytest.ParameterSet:
    expected = ClientHello(sni, alpn, legacy, versions, len(data) if consumed is None else consumed)
    return pytest.param(data, expected, id=id)


LONGEST = (b"a" * 63 + b".") * 3 + b"a" * 61  # 253 characters, the DNS limit


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ok(records(PLAIN), "example.com", id="sni-present"),
        ok(records(handshake(b"")), None, id="empty-extensions"),
        ok(records(handshake(None)), None, id="no-extensions-block-tls12"),
        ok(records(handshake(sni_ext(b"WWW.Example.COM"))), "www.example.com", id="uppercase-sni-lowercased"),
        ok(records(handshake(sni_ext(b"example.com."))), "example.com", id="trailing-dot-removed"),
        ok(records(handshake(sni_ext(b"a_b.example"))), "a_b.example", id="underscore-accepted"),
        ok(records(handshake(sni_ext(b"10.0.0.1"))), "10.0.0.1", id="ip-literal-passed-through"),
        ok(records(handshake(sni_ext(LONGEST))), LONGEST.decode(), id="sni-253-chars"),
        ok(records(handshake(sni_ext(LONGEST + b"."))), LONGEST.decode(), id="sni-253-chars-and-dot"),
        ok(
            records(handshake(server_names((7, b"\x00opaque"), (0, b"x.example")))),
            "x.example",
            id="unknown-name-type-skipped",
        ),
        ok(records(handshake(server_names((7, b"other")))), None, id="only-unknown-name-type-means-no-sni"),
        ok(
            records(handshake(alpn_ext(b"h2", b"http/1.1") + versions_ext(0x0A0A, 0x0304, 0x0303))),
            None,
            ("h2", "http/1.1"),
            (0x0A0A, 0x0304, 0x0303),
            id="alpn-and-versions-with-grease",
        ),
        ok(records(handshake(alpn_ext(b"\xff\x00"))), None, ("\xff\x00",), id="alpn-opaque-bytes-latin1"),
        ok(records(handshake(ext(0xFE0D, bytes(100)) + ext(21, b""))), None, id="unknown-extensions-ignored"),
        ok(records(PLAIN, size=1), "example.com", id="one-byte-records"),
        ok(records(PLAIN, size=2), "example.com", id="handshake-header-split-over-records"),
        ok(records(PLAIN, size=40), "example.com", id="fragmented-over-records"),
        ok(
            records(PLAIN) + record(b"early data", content_type=23) + b"\x16\x03",
            "example.com",
            consumed=len(records(PLAIN)),
            id="bytes-after-hello-not-consumed",
        ),
        ok(records(PLAIN, version=0x0300), "example.com", id="record-version-ssl3"),
        ok(records(handshake(b"", legacy_version=0x0301, session_id=b"")), None, legacy=0x0301, id="tls10"),
        # Four full-size records plus their headers: exactly the limit.
        ok(records(sized_handshake(MAX_CLIENT_HELLO - 20)), None, id="exactly-max-size"),
    ],
)
def test_valid_hello(data: bytes, expected: ClientHello) -> None:
    assert parse_client_hello(data) == expected


# ---------------------------------------------------------------------------------------------------------
# Need more data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x16", id="record-type-only"),
        pytest.param(b"\x16\x03\x01\x00", id="record-header-partial"),
        pytest.param(records(PLAIN)[:5], id="record-header-only"),
        pytest.param(records(PLAIN)[:7], id="handshake-header-partial"),
        pytest.param(records(PLAIN)[:60], id="mid-body"),
        pytest.param(records(PLAIN)[:-1], id="one-byte-short"),
        pytest.param(records(PLAIN, size=40)[:45], id="between-fragments"),
        pytest.param(records(PLAIN, size=40)[:47], id="second-record-header-partial"),
        pytest.param(records(PLAIN, size=2)[:7], id="handshake-header-not-yet-complete"),
    ],
)
def test_truncated_returns_none(data: bytes) -> None:
    assert parse_client_hello(data) is None


def test_handshake_built_byte_at_a_time() -> None:
    data = records(handshake(sni_ext(b"Step.Example") + alpn_ext(b"h2")), size=17)
    for i in range(len(data)):
        assert parse_client_hello(data[:i]) is None
    assert parse_client_hello(data) == ClientHello("step.example", ("h2",), 0x0303, (), len(data))


# ---------------------------------------------------------------------------------------------------------
# Malformed


def _body_ext(extensions: bytes) -> bytes:
    return records(handshake(extensions))


def _raw_hello(body: bytes) -> bytes:
    return record(b"\x01" + len(body).to_bytes(3, "big") + body)


FIXED = b"\x03\x03" + bytes(32)  # legacy_version + random

MALFORMED = [
    # Not TLS at all: the caller may answer 400 or close (NotTLSError).
    pytest.param(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", NotTLSError, "not a TLS", id="http-get"),
    pytest.param(b"P", NotTLSError, "not a TLS", id="http-first-byte-only"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NotTLSError, "not a TLS", id="h2-prior-knowledge"),
    pytest.param(b"\x80\x2e\x01\x03\x01\x00\x15", NotTLSError, "SSLv2", id="sslv2-compatible-hello"),
    pytest.param(b"\x00\x00\x00\x00", NotTLSError, "not a TLS", id="zeros"),
    pytest.param(b"\x15\x03\x03\x00\x02\x02\x28", NotTLSError, "not a TLS", id="alert-record"),
    pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", NotTLSError, "not a TLS", id="ssh-banner"),
    # Record layer (RFC 8446 §5.1).
    pytest.param(b"\x16\x02", ClientHelloError, "record version", id="record-version-major-2"),
    pytest.param(
        b"\x16\x03\x01\x00\x00", ClientHelloError, "empty handshake record", id="zero-length-record"
    ),
    pytest.param(b"\x16\x03\x01\x40\x01", ClientHelloError, "record too long", id="record-over-2-14"),
    pytest.param(b"\x16\x03\x01\x00\x04\x02", ClientHelloError, "not a ClientHello", id="server-hello-type"),
    pytest.param(
        records(PLAIN, size=40)[:45] + b"\x17",
        ClientHelloError,
        "non-handshake record",
        id="interleaved-appdata",
    ),
    pytest.param(
        records(PLAIN, size=40)[:45] + b"\x16\x04",
        ClientHelloError,
        "record version",
        id="second-record-bad-version",
    ),
    pytest.param(
        record(PLAIN + b"\x14\x00\x00\x00"),
        ClientHelloError,
        "data after ClientHello",
        id="trailing-in-record",
    ),
    pytest.param(
        record(PLAIN[:50]) + record(PLAIN[50:] + b"x"),
        ClientHelloError,
        "data after ClientHello",
        id="trailing-in-last-fragment",
    ),
    # Size limit.
    pytest.param(
        b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", ClientHelloError, "too large", id="announced-65536"
    ),
    pytest.param(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", ClientHelloError, "too large", id="announced-16m"),
    pytest.param(
        # The message alone would fit behind one record header, but 2^14-byte records need five headers.
        records(sized_handshake(MAX_CLIENT_HELLO - 5)),
        ClientHelloError,
        "too large",
        id="fits-one-header-not-five",
    ),
    pytest.param(
        # 1-byte records cost 6 bytes per handshake byte: the records pass the limit before the message ends.
        records(handshake(ext(0xFFFF, bytes(12000))), size=1)[: MAX_CLIENT_HELLO + 6],
        ClientHelloError,
        "too large",
        id="tiny-records-exceed-limit",
    ),
    # ClientHello body (RFC 8446 §4.1.2).
    pytest.param(_raw_hello(b"\x03"), ClientHelloError, "truncated legacy_version", id="body-1-byte"),
    pytest.param(
        _raw_hello(b"\x02\x00" + bytes(40)), ClientHelloError, "ClientHello version", id="version-sslv2"
    ),
    pytest.param(_raw_hello(FIXED[:20]), ClientHelloError, "truncated random", id="short-random"),
    pytest.param(
        records(handshake(b"", session_id=bytes(33))),
        ClientHelloError,
        "legacy_session_id",
        id="session-id-33",
    ),
    pytest.param(
        _raw_hello(FIXED + b"\x05\x00"), ClientHelloError, "legacy_session_id", id="session-id-overruns"
    ),
    pytest.param(
        records(handshake(b"", suites=b"")), ClientHelloError, "cipher_suites", id="no-cipher-suites"
    ),
    pytest.param(
        records(handshake(b"", suites=b"\x13")), ClientHelloError, "cipher_suites", id="odd-cipher-suites"
    ),
    pytest.param(
        _raw_hello(FIXED + b"\x00\x00\x10\x13\x01"),
        ClientHelloError,
        "cipher_suites",
        id="cipher-suites-overrun",
    ),
    pytest.param(
        records(handshake(b"", compression=b"")), ClientHelloError, "compression", id="no-compression-methods"
    ),
    pytest.param(
        _raw_hello(FIXED + b"\x00\x00\x02\x13\x01\x01\x00\x00"),
        ClientHelloError,
        "extensions",
        id="ext-length-cut",
    ),
    pytest.param(
        _raw_hello(FIXED + b"\x00\x00\x02\x13\x01\x01\x00\x00\x05\x00\x00"),
        ClientHelloError,
        "extensions",
        id="ext-block-overruns-body",
    ),
    pytest.param(
        _raw_hello(FIXED + b"\x00\x00\x02\x13\x01\x01\x00\x00\x00\xaa"),
        ClientHelloError,
        "trailing bytes in ClientHello",
        id="bytes-after-extensions",
    ),
    pytest.param(_body_ext(b"\x00\x15\x00"), ClientHelloError, "truncated extension", id="ext-header-cut"),
    pytest.param(
        _body_ext(b"\x00\x15\x00\x09abc"), ClientHelloError, "truncated extension", id="ext-data-overruns"
    ),
    pytest.param(
        _body_ext(ext(21, b"") + ext(21, b"")),
        ClientHelloError,
        "duplicate extension",
        id="duplicate-extension",
    ),
    pytest.param(
        _body_ext(sni_ext(b"a.example") + sni_ext(b"b.example")),
        ClientHelloError,
        "duplicate extension",
        id="duplicate-sni-extension",
    ),
    # server_name (RFC 6066 §3).
    pytest.param(_body_ext(ext(0, b"")), ClientHelloError, "server_name list", id="sni-empty-extension"),
    pytest.param(_body_ext(ext(0, b"\x00\x00")), ClientHelloError, "server_name list", id="sni-empty-list"),
    pytest.param(
        _body_ext(ext(0, b"\x00\x10\x00\x00\x01a")),
        ClientHelloError,
        "server_name list",
        id="sni-list-overruns",
    ),
    pytest.param(
        _body_ext(ext(0, b"\x00\x04\x00\x00\x01ax")),
        ClientHelloError,
        "trailing bytes in server_name",
        id="sni-junk",
    ),
    pytest.param(
        _body_ext(ext(0, b"\x00\x04\x00\x00\x05a")),
        ClientHelloError,
        "truncated server_name",
        id="sni-name-overruns",
    ),
    pytest.param(_body_ext(sni_ext(b"")), ClientHelloError, "bad server_name length", id="sni-empty-name"),
    pytest.param(
        _body_ext(server_names((0, b"a.example"), (0, b"b.example"))),
        ClientHelloError,
        "more than one host_name",
        id="sni-two-host-names",
    ),
    pytest.param(_body_ext(sni_ext(b"evil.com\x00.example.com")), ClientHelloError, "invalid", id="sni-nul"),
    pytest.param(_body_ext(sni_ext("café.example".encode())), ClientHelloError, "invalid", id="sni-utf8"),
    pytest.param(_body_ext(sni_ext(b"caf\xe9.example")), ClientHelloError, "invalid", id="sni-latin1"),
    pytest.param(_body_ext(sni_ext(b"a b.example")), ClientHelloError, "invalid", id="sni-space"),
    pytest.param(_body_ext(sni_ext(b"a..example")), ClientHelloError, "invalid", id="sni-empty-label"),
    pytest.param(_body_ext(sni_ext(b".example")), ClientHelloError, "invalid", id="sni-leading-dot"),
    pytest.param(_body_ext(sni_ext(b".")), ClientHelloError, "invalid", id="sni-only-dot"),
    pytest.param(_body_ext(sni_ext(b"example..")), ClientHelloError, "invalid", id="sni-two-trailing-dots"),
    pytest.param(_body_ext(sni_ext(b"*.example")), ClientHelloError, "invalid", id="sni-wildcard"),
    pytest.param(_body_ext(sni_ext(b"example.com:443")), ClientHelloError, "invalid", id="sni-with-port"),
    pytest.param(_body_ext(sni_ext(b"example.com\n")), ClientHelloError, "invalid", id="sni-newline"),
    pytest.param(_body_ext(sni_ext(b"a" * 64 + b".example")), ClientHelloError, "invalid", id="sni-label-64"),
    pytest.param(_body_ext(sni_ext((b"a" * 63 + b".") * 4)), ClientHelloError, "invalid", id="sni-256-chars"),
    # ALPN (RFC 7301 §3.1).
    pytest.param(_body_ext(ext(16, b"\x00\x00")), ClientHelloError, "ALPN list", id="alpn-empty-list"),
    pytest.param(_body_ext(ext(16, b"")), ClientHelloError, "ALPN list", id="alpn-empty-extension"),
    pytest.param(_body_ext(alpn_ext(b"h2", b"")), ClientHelloError, "ALPN protocol", id="alpn-empty-name"),
    pytest.param(
        _body_ext(ext(16, b"\x00\x03\x05h2")), ClientHelloError, "ALPN protocol", id="alpn-name-overruns"
    ),
    pytest.param(
        _body_ext(ext(16, b"\x00\x03\x02h2x")), ClientHelloError, "trailing bytes in ALPN", id="alpn-junk"
    ),
    # supported_versions (RFC 8446 §4.2.1).
    pytest.param(_body_ext(ext(43, b"\x00")), ClientHelloError, "supported_versions", id="versions-empty"),
    pytest.param(
        _body_ext(ext(43, b"\x03\x03\x04\x03")), ClientHelloError, "supported_versions", id="versions-odd"
    ),
    pytest.param(
        _body_ext(ext(43, b"\x02\x03\x04\x03")), ClientHelloError, "supported_versions", id="versions-junk"
    ),
]


@pytest.mark.parametrize(("data", "error", "reason"), MALFORMED)
def test_malformed_raises(data: bytes, error: type[ClientHelloError], reason: str) -> None:
    with pytest.raises(error, match=reason):
        parse_client_hello(data)


def test_errors_are_value_errors() -> None:
    assert issubclass(ClientHelloError, ValueError)
    assert issubclass(NotTLSError, ClientHelloError)


def test_accepts_bytearray_and_memoryview() -> None:
    data = records(PLAIN, size=50)
    expected = parse_client_hello(data)
    assert expected is not None
    assert parse_client_hello(bytearray(data)) == expected
    assert parse_client_hello(memoryview(data)) == expected


def test_hello_is_frozen() -> None:
    hello = parse_client_hello(records(PLAIN))
    assert hello is not None
    with pytest.raises(AttributeError):
        hello.sni = "other"  # type: ignore[misc]
