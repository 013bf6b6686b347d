"""Read a TLS ClientHello without terminating TLS, so passthrough routes can be chosen by SNI.

Sans-IO: `parse_client_hello(buf)` takes every byte received so far and returns

- `None` when the buffer is a valid prefix of a ClientHello and more bytes are needed,
- a `ClientHello` once the whole handshake message has arrived (`record_length` says how many bytes of
  `buf` it took; the caller relays `buf` unchanged, this parser never consumes anything),
- or raises `ClientHelloError` (a `ValueError`) with a short reason when the bytes cannot be the start
  of a TLS connection. `NotTLSError`, a subclass, means the very first bytes are not a TLS handshake record
  at all (plain HTTP on the HTTPS port, an SSLv2-compatible hello, garbage), so the caller may answer 400.

The parser is stateless: call it again with the grown buffer. It checks every byte it can as soon as it
has it, so a bad stream fails early, yet every prefix of a valid ClientHello returns `None`. Every length
field is checked against its container before it is used, so no IndexError or struct.error escapes.

Server name policy (RFC 6066 §3): the host_name must be 1..253 ASCII letters, digits, `-` or `_` in dot
separated labels of 1..63 characters, with at most one trailing dot (removed). Anything else (NUL, non-ASCII,
spaces, empty labels, a second host_name) makes the whole hello invalid and raises `ClientHelloError`: a
client sending it is broken or probing, and guessing which name it meant would route it somewhere.
The underscore is accepted because real clients send it; such a name matches no route host (those are
DNS-1123) and simply falls through to TLS termination with the default certificate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_CLIENT_HELLO", "ClientHello", "ClientHelloError", "NotTLSError", "parse_client_hello"]

# Upper bound on the TLS records carrying one ClientHello (headers included). Real hellos are 200..2000
# bytes (post-quantum key shares push them to ~1800); anything past 64 KiB is an attack on our buffers.
MAX_CLIENT_HELLO = 65536

_CONTENT_HANDSHAKE = 22  # RFC 8446 §5.1 ContentType.handshake
_HANDSHAKE_CLIENT_HELLO = 1  # RFC 8446 §4 HandshakeType.client_hello
_RECORD_HEADER = 5  # type(1) legacy_record_version(2) length(2)
_HANDSHAKE_HEADER = 4  # msg_type(1) length(3)
_MAX_FRAGMENT = 1 << 14  # RFC 8446 §5.1 / RFC 5246 §6.2.1: length MUST NOT exceed 2^14

_EXT_SERVER_NAME = 0  # RFC 6066 §3
_EXT_ALPN = 16  # RFC 7301 §3.1
_EXT_SUPPORTED_VERSIONS = 43  # RFC 8446 §4.2.1
_NAME_TYPE_HOST_NAME = 0  # RFC 6066 §3 NameType.host_name

# A BufferedProtocol caller can hand over its bytearray or a memoryview of it without copying.
_Buffer = bytes | bytearray | memoryview

_MAX_HOSTNAME = 253  # RFC 1035 §2.3.4 (255 octets on the wire = 253 characters in dotted form)
_HOSTNAME_RE = re.compile(rb"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}")


class ClientHelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello; the message is a short reason."""


class NotTLSError(ClientHelloError):
    """The first bytes are not a TLS handshake record (plain HTTP, SSLv2-compatible hello, garbage)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What routing needs from a ClientHello.

    `sni` is the host_name, lowercased, trailing dot removed, None when the client sent none.
    `alpn` holds the offered protocol names in client order, decoded as Latin-1 (RFC 7301 §3.1 names are
    opaque octets; Latin-1 keeps every byte). `supported_versions` is the list as sent, GREASE values
    (RFC 8701) included; empty when the extension is absent (a TLS 1.2-or-older client).
    `record_length` is the number of bytes of `buf` the hello's records took.
    """

    sni: str | None
    alpn: tuple[str, ...]
    legacy_version: int
    supported_versions: tuple[int, ...]
    record_length: int


def parse_client_hello(buf: _Buffer) -> ClientHello | None:
    """Parse the ClientHello at the start of `buf`; None means "need more data"."""
    n = len(buf)
    if n == 0:
        return None
    _check_first_byte(buf[0])
    view = memoryview(buf)
    pieces: list[memoryview] = []
    announced = 0  # handshake bytes promised by the record headers seen so far
    need = -1  # full handshake message length (header included), once known
    pos = 0
    # RFC 8446 §5.1: a handshake message may be fragmented across several records, and records of
    # another content type MUST NOT be interleaved with those fragments. One iteration per record.
    while True:
        rlen = _record_length(buf, pos, n)
        if rlen < 0:
            return None
        end = pos + _RECORD_HEADER + rlen
        if end > MAX_CLIENT_HELLO:
            raise ClientHelloError("ClientHello too large")
        announced += rlen
        pieces.append(view[pos + _RECORD_HEADER : min(end, n)])
        if need < 0:
            need = _handshake_length(pieces)
        if 0 <= need < announced:
            # The ClientHello is the client's only message until the server answers (RFC 8446 §2),
            # so a record holding bytes past its end is a protocol violation.
            raise ClientHelloError("data after ClientHello in its last record")
        if end > n:
            return None
        pos = end
        if announced == need:
            break
    if len(pieces) == 1:
        return _parse_body(buf, _RECORD_HEADER + _HANDSHAKE_HEADER, _RECORD_HEADER + need, pos)
    message = b"".join(pieces)
    return _parse_body(message, _HANDSHAKE_HEADER, need, pos)


def _check_first_byte(first: int) -> None:
    if first == _CONTENT_HANDSHAKE:
        return
    if first & 0x80:
        # RFC 5246 Appendix E.2: an SSLv2-compatible hello has a 2-byte header with the high bit set.
        # It cannot carry extensions, hence no SNI; TLS 1.3 forbids it (RFC 8446 Appendix D.5).
        raise NotTLSError("SSLv2-compatible ClientHello is not supported")
    raise NotTLSError("not a TLS handshake record")


def _record_length(buf: _Buffer, pos: int, n: int) -> int:
    """Validate the record header at `pos` (as much of it as has arrived); its length, or -1 if partial."""
    if pos < n and buf[pos] != _CONTENT_HANDSHAKE:
        raise ClientHelloError("non-handshake record inside ClientHello")
    # RFC 8446 §5.1 legacy_record_version is 0x0301 or 0x0303; RFC 5246 Appendix E.1 allows any {03,xx}.
    if pos + 1 < n and buf[pos + 1] != 3:
        raise ClientHelloError("unsupported TLS record version")
    if pos + _RECORD_HEADER > n:
        return -1
    rlen = (buf[pos + 3] << 8) | buf[pos + 4]
    if rlen == 0:
        raise ClientHelloError("empty handshake record")  # RFC 8446 §5.1: MUST NOT send zero-length
    if rlen > _MAX_FRAGMENT:
        raise ClientHelloError("TLS record too long")
    return rlen


def _handshake_length(pieces: list[memoryview]) -> int:
    """The handshake message's total length from its header, which may span records; -1 if partial."""
    head = b""
    for piece in pieces:
        head += piece[: _HANDSHAKE_HEADER - len(head)]
        if len(head) == _HANDSHAKE_HEADER:
            break
    if head and head[0] != _HANDSHAKE_CLIENT_HELLO:
        raise ClientHelloError("first handshake message is not a ClientHello")
    if len(head) < _HANDSHAKE_HEADER:
        return -1
    need = _HANDSHAKE_HEADER + int.from_bytes(head[1:4], "big")
    if need + _RECORD_HEADER > MAX_CLIENT_HELLO:
        raise ClientHelloError("ClientHello too large")
    return need


class _Reader:
    """A bounded cursor over `data[pos:end]`; every read past `end` raises ClientHelloError."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: _Buffer, pos: int, end: int) -> None:
        self._data = data
        self._pos = pos
        self._end = end

    def remaining(self) -> int:
        return self._end - self._pos

    def _advance(self, size: int, what: str) -> int:
        start = self._pos
        if start + size > self._end:
            raise ClientHelloError(f"truncated {what}")
        self._pos = start + size
        return start

    def u8(self, what: str) -> int:
        return self._data[self._advance(1, what)]

    def u16(self, what: str) -> int:
        p = self._advance(2, what)
        return (self._data[p] << 8) | self._data[p + 1]

    def skip(self, size: int, what: str) -> None:
        self._advance(size, what)

    def vector(self, len_size: int, low: int, high: int, what: str) -> _Reader:
        """A variable-length vector `<low..high>` (RFC 8446 §3.4) as a reader bounded by its own length."""
        p = self._advance(len_size, what)
        size = int.from_bytes(self._data[p : p + len_size], "big")
        if not low <= size <= high:
            raise ClientHelloError(f"bad {what} length")
        start = self._advance(size, what)
        return _Reader(self._data, start, start + size)

    def opaque(self, len_size: int, low: int, high: int, what: str) -> bytes:
        inner = self.vector(len_size, low, high, what)
        return bytes(inner._data[inner._pos : inner._end])

    def expect_end(self, what: str) -> None:
        if self._pos != self._end:
            raise ClientHelloError(f"trailing bytes in {what}")


def _parse_body(data: _Buffer, pos: int, end: int, record_length: int) -> ClientHello:
    """RFC 8446 §4.1.2 ClientHello body (same layout as RFC 5246 §7.4.1.2)."""
    body = _Reader(data, pos, end)
    legacy_version = body.u16("legacy_version")
    if legacy_version >> 8 != 3:
        raise ClientHelloError("unsupported ClientHello version")
    body.skip(32, "random")
    body.vector(1, 0, 32, "legacy_session_id")
    suites = body.vector(2, 2, 0xFFFE, "cipher_suites")
    if suites.remaining() % 2:
        raise ClientHelloError("bad cipher_suites length")
    body.vector(1, 1, 0xFF, "legacy_compression_methods")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    # RFC 5246 §7.4.1.2: a hello may end right after compression_methods (no extensions at all).
    if body.remaining():
        extensions = body.vector(2, 0, 0xFFFF, "extensions")
        body.expect_end("ClientHello")
        seen: set[int] = set()
        while extensions.remaining():
            ext_type = extensions.u16("extension type")
            ext = extensions.vector(2, 0, 0xFFFF, "extension")
            # RFC 8446 §4.2: there MUST NOT be more than one extension of the same type.
            if ext_type in seen:
                raise ClientHelloError("duplicate extension")
            seen.add(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                sni = _parse_server_name(ext)
            elif ext_type == _EXT_ALPN:
                alpn = _parse_alpn(ext)
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                versions = _parse_supported_versions(ext)
    return ClientHello(sni, alpn, legacy_version, versions, record_length)


def _parse_server_name(ext: _Reader) -> str | None:
    """RFC 6066 §3 ServerNameList; only host_name is defined and it may appear once."""
    names = ext.vector(2, 1, 0xFFFF, "server_name list")
    ext.expect_end("server_name extension")
    host: str | None = None
    while names.remaining():
        name_type = names.u8("server_name type")
        # Every NameType so far uses the HostName layout opaque<1..2^16-1>; unknown types are skipped.
        name = names.opaque(2, 1, 0xFFFF, "server_name")
        if name_type != _NAME_TYPE_HOST_NAME:
            continue
        if host is not None:
            raise ClientHelloError("more than one host_name in server_name")
        host = _valid_hostname(name)
    return host


def _valid_hostname(name: bytes) -> str:
    # RFC 6066 §3: "HostName" is the ASCII (A-label) DNS name without a trailing dot; some clients still
    # send the dot, which we drop. The regex rejects NUL, non-ASCII, spaces and empty labels.
    if name.endswith(b"."):
        name = name[:-1]
    if len(name) > _MAX_HOSTNAME or not _HOSTNAME_RE.fullmatch(name):
        raise ClientHelloError("invalid server_name host_name")
    return name.lower().decode("ascii")


def _parse_alpn(ext: _Reader) -> tuple[str, ...]:
    """RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each ProtocolName opaque<1..2^8-1>."""
    names = ext.vector(2, 2, 0xFFFF, "ALPN list")
    ext.expect_end("ALPN extension")
    protocols: list[str] = []
    while names.remaining():
        protocols.append(names.opaque(1, 1, 0xFF, "ALPN protocol").decode("latin-1"))
    return tuple(protocols)


def _parse_supported_versions(ext: _Reader) -> tuple[int, ...]:
    """RFC 8446 §4.2.1: in a ClientHello, ProtocolVersion versions<2..254>."""
    versions = ext.vector(1, 2, 254, "supported_versions")
    ext.expect_end("supported_versions extension")
    if versions.remaining() % 2:
        raise ClientHelloError("bad supported_versions length")
    return tuple(versions.u16("supported_versions") for _ in range(versions.remaining() // 2))
