"""Property tests for the ClientHello parser: it only ever raises ClientHelloError, waits on every prefix of
a valid hello, and gives back any valid hostname it was sent."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftroute.protocol.tls_hello import MAX_CLIENT_HELLO, ClientHello, ClientHelloError, parse_client_hello

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A parse of at most 64 KiB takes well under a millisecond; a second means a loop that does not advance.
HANG = 1.0

# ---------------------------------------------------------------------------------------------------------
# Builders (a copy of the small ones in test_tls_hello.py: test modules do not import each other).


def vec1(data: bytes) -> bytes:
    return len(data).to_bytes(1, "big") + data


def vec2(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def ext(ext_type: int, data: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + vec2(data)


def handshake(extensions: bytes) -> bytes:
    body = (
        b"\x03\x03"
        + bytes(32)
        + vec1(bytes(32))
        + vec2(b"\x13\x01\x13\x02")
        + vec1(b"\x00")
        + vec2(extensions)
    )
    return b"\x01" + len(body).to_bytes(3, "big") + body


def split_records(message: bytes, sizes: list[int]) -> bytes:
    """`message` as TLS handshake records whose lengths cycle through `sizes`."""
    out, pos, i = b"", 0, 0
    while pos < len(message):
        chunk = message[pos : pos + sizes[i % len(sizes)]]
        out += b"\x16\x03\x01" + vec2(chunk)
        pos, i = pos + len(chunk), i + 1
    return out


# ---------------------------------------------------------------------------------------------------------
# Strategies

LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
labels = st.text(LABEL_CHARS, min_size=1, max_size=63)
hostnames = st.lists(labels, min_size=1, max_size=6).map(".".join).filter(lambda h: len(h) <= 253)
protocols = st.lists(st.binary(min_size=1, max_size=20), max_size=4)
record_sizes = st.lists(st.integers(min_value=1, max_value=1 << 14), min_size=1, max_size=5)


@st.composite
def valid_hellos(draw: st.DrawFn) -> tuple[bytes, str, str, tuple[bytes, ...]]:
    """(records, hostname as sent, hostname expected back, ALPN protocols)."""
    host = draw(hostnames)
    sent = host + "." if draw(st.booleans()) else host
    alpn = tuple(draw(protocols))
    extensions = [ext(0, vec2(b"\x00" + vec2(sent.encode())))]
    if alpn:
        extensions.append(ext(16, vec2(b"".join(vec1(p) for p in alpn))))
    extensions.append(ext(43, vec1(b"\x03\x04\x03\x03")))
    extensions.extend(ext(0xFF00 + i, draw(st.binary(max_size=40))) for i in range(draw(st.integers(0, 3))))
    order = draw(st.permutations(extensions))
    data = split_records(handshake(b"".join(order)), draw(record_sizes))
    return data, sent, host.lower(), alpn


def check(data: bytes) -> ClientHello | None:
    """Parse, allowing only ClientHelloError out, and bounded in time."""
    start = time.perf_counter()
    try:
        result = parse_client_hello(data)
    except ClientHelloError:
        result = None
    assert time.perf_counter() - start < HANG
    if result is not None:
        assert 0 < result.record_length <= min(len(data), MAX_CLIENT_HELLO)
    return result


# ---------------------------------------------------------------------------------------------------------
# (a) nothing but ClientHelloError, never a hang


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(
    st.integers(0, 0x0400),
    st.integers(0, 0xFFFF),
    st.sampled_from([0, 1, 2, 3]),
    st.integers(0, 0xFFFFFF),
    st.binary(max_size=1024),
)
def test_random_body_behind_valid_headers(
    version: int, rlen: int, msg_type: int, hlen: int, body: bytes
) -> None:
    # Random bytes rarely get past the first byte; put plausible record and handshake headers in front.
    check(
        b"\x16"
        + version.to_bytes(2, "big")
        + rlen.to_bytes(2, "big")
        + bytes([msg_type])
        + hlen.to_bytes(3, "big")
        + body
    )
    message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    check(split_records(message, [max(1, rlen % 300)]))


@FUZZ
@given(valid_hellos(), st.data())
def test_mutated_valid_hello(hello: tuple[bytes, str, str, tuple[bytes, ...]], data: st.DataObject) -> None:
    raw = bytearray(hello[0])
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(raw)))
        raw[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    check(bytes(raw))


# ---------------------------------------------------------------------------------------------------------
# (b) every prefix of a valid hello means "need more data"


@FUZZ
@given(valid_hellos(), st.data())
def test_prefix_of_valid_hello_needs_more(
    hello: tuple[bytes, str, str, tuple[bytes, ...]], data: st.DataObject
) -> None:
    raw = hello[0]
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert parse_client_hello(raw[:cut]) is None


# ---------------------------------------------------------------------------------------------------------
# (c) a valid hostname comes back lowercased, whatever the record boundaries and extension order


@FUZZ
@given(valid_hellos(), st.binary(max_size=30))
def test_valid_hello_round_trips(hello: tuple[bytes, str, str, tuple[bytes, ...]], after: bytes) -> None:
    raw, _sent, expected, alpn = hello
    result = parse_client_hello(raw + after)
    assert result is not None
    assert result.sni == expected
    assert result.alpn == tuple(p.decode("latin-1") for p in alpn)
    assert result.supported_versions == (0x0304, 0x0303)
    assert result.record_length == len(raw)


@FUZZ
@given(hostnames, st.integers(0, 252), st.sampled_from([*b"\x00 \t\n:/@*\\\x7f\x80\xc3\xff"]))
def test_hostname_with_bad_byte_raises(host: str, where: int, bad: int) -> None:
    name = host.encode()
    index = where % (len(name) + 1)
    name = name[:index] + bytes([bad]) + name[index:]
    raw = split_records(handshake(ext(0, vec2(b"\x00" + vec2(name)))), [1 << 14])
    try:
        parse_client_hello(raw)
    except ClientHelloError as exc:
        assert "server_name" in str(exc)
    else:
        raise AssertionError(f"accepted {name!r}")
