# cython: annotation_typing=False
# (read when setup.py compiles this module: see tls_hello.pxd)
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

from typing import NamedTuple

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
_Bytes = bytes | bytearray  # what the parser proper reads (a memoryview is copied to bytes first)

_MAX_HOSTNAME = 253  # RFC 1035 §2.3.4 (255 octets on the wire = 253 characters in dotted form)
_MAX_LABEL = 63  # RFC 1035 §2.3.4
_MAX_HELLO = MAX_CLIENT_HELLO  # compiled: a C int (tls_hello.pxd), as are the constants above


class ClientHelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello; the message is a short reason."""


class NotTLSError(ClientHelloError):
    """The first bytes are not a TLS handshake record (plain HTTP, SSLv2-compatible hello, garbage)."""


class ClientHello(NamedTuple):
    """What routing needs from a ClientHello (one per TLS connection: a named tuple, which is made in a
    fraction of the time a frozen dataclass's __init__ takes, and is as immutable).

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


_new_tuple = tuple.__new__


def parse_client_hello(buf: _Buffer) -> ClientHello | None:
    """Parse the ClientHello at the start of `buf`; None means "need more data"."""
    if not isinstance(buf, (bytes, bytearray)):
        buf = bytes(buf)  # a memoryview: the compiled build reads only bytes and bytearray in place
    n = len(buf)
    if n == 0:
        return None
    return _parse(buf, n)


# The functions below walk the bytes with integer positions and no per-field objects. Compiled, `data` is
# a C pointer into the caller's buffer and positions are C integers (tls_hello.pxd), so every index must be
# below `n` or the end of the enclosing vector: each one is checked before the byte is read.


def _parse(data: _Bytes, n: int) -> ClientHello | None:
    """Validate the records carrying the ClientHello, then parse the handshake message they hold."""
    first = data[0]
    if first != _CONTENT_HANDSHAKE:
        if first & 0x80:
            # RFC 5246 Appendix E.2: an SSLv2-compatible hello has a 2-byte header with the high bit set.
            # It cannot carry extensions, hence no SNI; TLS 1.3 forbids it (RFC 8446 Appendix D.5).
            raise NotTLSError("SSLv2-compatible ClientHello is not supported")
        raise NotTLSError("not a TLS handshake record")
    announced = 0  # handshake bytes promised by the record headers seen so far
    need = -1  # full handshake message length (header included), once known
    head = 0  # bytes of the 4-byte handshake header seen so far (it may span records)
    length = 0  # its 3-byte length field, as far as seen
    pos = 0
    # RFC 8446 §5.1: a handshake message may be fragmented across several records, and records of
    # another content type MUST NOT be interleaved with those fragments. One iteration per record.
    while True:
        # The record header at `pos`, checked as far as it has arrived.
        if pos < n and data[pos] != _CONTENT_HANDSHAKE:
            raise ClientHelloError("non-handshake record inside ClientHello")
        # RFC 8446 §5.1 legacy_record_version is 0x0301 or 0x0303; RFC 5246 Appendix E.1 allows any {03,xx}.
        if pos + 1 < n and data[pos + 1] != 3:
            raise ClientHelloError("unsupported TLS record version")
        if pos + _RECORD_HEADER > n:
            return None
        rlen = (data[pos + 3] << 8) | data[pos + 4]
        if rlen == 0:
            raise ClientHelloError("empty handshake record")  # RFC 8446 §5.1: MUST NOT send zero-length
        if rlen > _MAX_FRAGMENT:
            raise ClientHelloError("TLS record too long")
        start = pos + _RECORD_HEADER
        end = start + rlen
        if end > _MAX_HELLO:
            raise ClientHelloError("ClientHello too large")
        announced += rlen
        if need < 0:
            i = start
            stop = min(end, n)
            while head < _HANDSHAKE_HEADER and i < stop:
                if head == 0:
                    if data[i] != _HANDSHAKE_CLIENT_HELLO:
                        raise ClientHelloError("first handshake message is not a ClientHello")
                else:
                    length = (length << 8) | data[i]
                head += 1
                i += 1
            if head == _HANDSHAKE_HEADER:
                need = _HANDSHAKE_HEADER + length
                if need + _RECORD_HEADER > _MAX_HELLO:
                    raise ClientHelloError("ClientHello too large")
        if 0 <= need < announced:
            # The ClientHello is the client's only message until the server answers (RFC 8446 §2),
            # so a record holding bytes past its end is a protocol violation.
            raise ClientHelloError("data after ClientHello in its last record")
        if end > n:
            return None
        pos = end
        if announced == need:
            break
    if pos == _RECORD_HEADER + need:  # one record, the usual case: parse it in place
        return _parse_body(data, _RECORD_HEADER + _HANDSHAKE_HEADER, pos, pos)
    # Fragmented over several records (rare): parse a copy of the message, the records' payloads joined.
    pieces: list[bytes | bytearray] = []
    start = 0
    while start < pos:
        rlen = (data[start + 3] << 8) | data[start + 4]
        pieces.append(data[start + _RECORD_HEADER : start + _RECORD_HEADER + rlen])
        start += _RECORD_HEADER + rlen
    message = b"".join(pieces)
    return _parse_body(message, _HANDSHAKE_HEADER, need, pos)


def _vector(data: _Bytes, pos: int, end: int, len_size: int, low: int, high: int, what: str) -> int:
    """The end of the variable-length vector `<low..high>` (RFC 8446 §3.4) whose `len_size`-byte length
    is at `pos` (its content starts at `pos + len_size`); it must fit before `end`."""
    if pos + len_size > end:
        raise ClientHelloError(f"truncated {what}")
    size = data[pos] if len_size == 1 else (data[pos] << 8) | data[pos + 1]
    if not low <= size <= high:
        raise ClientHelloError(f"bad {what} length")
    pos += len_size + size
    if pos > end:
        raise ClientHelloError(f"truncated {what}")
    return pos


def _parse_body(data: _Bytes, pos: int, end: int, record_length: int) -> ClientHello:
    """RFC 8446 §4.1.2 ClientHello body `data[pos:end]` (same layout as RFC 5246 §7.4.1.2)."""
    if pos + 2 > end:
        raise ClientHelloError("truncated legacy_version")
    legacy_version = (data[pos] << 8) | data[pos + 1]
    if legacy_version >> 8 != 3:
        raise ClientHelloError("unsupported ClientHello version")
    pos += 2
    if pos + 32 > end:
        raise ClientHelloError("truncated random")
    pos += 32
    pos = _vector(data, pos, end, 1, 0, 32, "legacy_session_id")
    start = pos + 2
    pos = _vector(data, pos, end, 2, 2, 0xFFFE, "cipher_suites")
    if (pos - start) % 2:
        raise ClientHelloError("bad cipher_suites length")
    pos = _vector(data, pos, end, 1, 1, 0xFF, "legacy_compression_methods")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    # RFC 5246 §7.4.1.2: a hello may end right after compression_methods (no extensions at all).
    if pos < end:
        extensions_end = _vector(data, pos, end, 2, 0, 0xFFFF, "extensions")
        if extensions_end != end:
            raise ClientHelloError("trailing bytes in ClientHello")
        pos += 2
        # RFC 8446 §4.2: there MUST NOT be more than one extension of the same type. Types below 64 (all
        # the common ones) are remembered as bits of `seen_low`, the others in a set.
        seen_low = 0
        seen: set[int] = set()
        while pos < extensions_end:
            if pos + 2 > extensions_end:
                raise ClientHelloError("truncated extension type")
            ext_type = (data[pos] << 8) | data[pos + 1]
            start = pos + 4
            pos = _vector(data, pos + 2, extensions_end, 2, 0, 0xFFFF, "extension")
            if ext_type < 64:
                bit = 1
                bit <<= ext_type  # (not `1 << ext_type`: compiled, that would shift a 32-bit C int)
                if seen_low & bit:
                    raise ClientHelloError("duplicate extension")
                seen_low |= bit
            else:
                if ext_type in seen:
                    raise ClientHelloError("duplicate extension")
                seen.add(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                sni = _parse_server_name(data, start, pos)
            elif ext_type == _EXT_ALPN:
                alpn = _parse_alpn(data, start, pos)
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                versions = _parse_supported_versions(data, start, pos)
    # tuple.__new__ directly: the named tuple's own __new__ is a Python function around this same call.
    return _new_tuple(ClientHello, (sni, alpn, legacy_version, versions, record_length))


def _parse_server_name(data: _Bytes, pos: int, end: int) -> str | None:
    """RFC 6066 §3 ServerNameList in `data[pos:end]`; only host_name is defined and it may appear once."""
    names_end = _vector(data, pos, end, 2, 1, 0xFFFF, "server_name list")
    if names_end != end:
        raise ClientHelloError("trailing bytes in server_name extension")
    pos += 2
    host: str | None = None
    while pos < names_end:
        name_type = data[pos]
        name = pos + 3  # after name_type and the 2-byte length
        # Every NameType so far uses the HostName layout opaque<1..2^16-1>; unknown types are skipped.
        pos = _vector(data, pos + 1, names_end, 2, 1, 0xFFFF, "server_name")
        if name_type != _NAME_TYPE_HOST_NAME:
            continue
        if host is not None:
            raise ClientHelloError("more than one host_name in server_name")
        host = _valid_hostname(data, name, pos)
    return host


def _valid_hostname(data: _Bytes, start: int, end: int) -> str:
    """The host_name `data[start:end]` (1 byte at least), lowercased; ClientHelloError if it is invalid.

    RFC 6066 §3: "HostName" is the ASCII (A-label) DNS name without a trailing dot; some clients still send
    the dot, which we drop. Allowed: dot-separated labels of 1..63 letters, digits, `-` or `_`, 253 at most
    in all; which rejects NUL, non-ASCII, spaces and empty labels.
    """
    if data[end - 1] == 0x2E:  # "."
        end -= 1
    if end - start > _MAX_HOSTNAME:
        raise ClientHelloError("invalid server_name host_name")
    label = 0  # length of the current label so far
    upper = False  # an uppercase letter seen: lowercased at the end (clients send lowercase names)
    for i in range(start, end):
        c = data[i]
        if c == 0x2E:
            if label == 0:
                raise ClientHelloError("invalid server_name host_name")
            label = 0
        elif 0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c in (0x2D, 0x5F) or 0x41 <= c <= 0x5A:
            # a-z 0-9 - _ A-Z
            if 0x41 <= c <= 0x5A:
                upper = True
            label += 1
            if label > _MAX_LABEL:
                raise ClientHelloError("invalid server_name host_name")
        else:
            raise ClientHelloError("invalid server_name host_name")
    if label == 0:  # empty, or ending with a dot (after the one dropped)
        raise ClientHelloError("invalid server_name host_name")
    name = data[start:end].decode("ascii")
    return name.lower() if upper else name  # lower() is a method call: only when there is something to do


def _parse_alpn(data: _Bytes, pos: int, end: int) -> tuple[str, ...]:
    """RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each ProtocolName opaque<1..2^8-1>."""
    names_end = _vector(data, pos, end, 2, 2, 0xFFFF, "ALPN list")
    if names_end != end:
        raise ClientHelloError("trailing bytes in ALPN extension")
    pos += 2
    protocols: list[str] = []
    while pos < names_end:
        start = pos + 1
        pos = _vector(data, pos, names_end, 1, 1, 0xFF, "ALPN protocol")
        protocols.append(data[start:pos].decode("latin-1"))
    return tuple(protocols)


def _parse_supported_versions(data: _Bytes, pos: int, end: int) -> tuple[int, ...]:
    """RFC 8446 §4.2.1: in a ClientHello, ProtocolVersion versions<2..254>."""
    versions_end = _vector(data, pos, end, 1, 2, 254, "supported_versions")
    if versions_end != end:
        raise ClientHelloError("trailing bytes in supported_versions extension")
    pos += 1
    if (versions_end - pos) % 2:
        raise ClientHelloError("bad supported_versions length")
    return tuple([(data[i] << 8) | data[i + 1] for i in range(pos, versions_end, 2)])
