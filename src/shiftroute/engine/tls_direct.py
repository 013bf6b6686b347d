"""TLS records after the handshake, through OpenSSL called from C: the compiled build's path.

This is the Python version, used when the engine runs from its sources: it has no access to the `SSL`
object behind `ssl.SSLObject`, so `handle_of` answers 0 and TlsLayer keeps going through `ssl` (see
tls_direct.pxd for the C version and why it is safe). tests/unit/test_tls_direct.py checks that the compiled
build takes the C path and that both paths give a client the same bytes.
"""

from __future__ import annotations

NO_HANDLE_MESSAGE = "no OpenSSL handle: the engine runs from its Python sources (TlsLayer uses ssl instead)"


def handle_of(sslobj: object, incoming: object, outgoing: object) -> int:
    """The `SSL *` behind `sslobj` as an integer, or 0 if it cannot be used from here: always 0 in Python."""
    return 0


def feed(handle: int, data: bytes) -> tuple[list[bytes], bytes, bool]:
    raise ValueError(NO_HANDLE_MESSAGE)


def encrypt(handle: int, data: bytes) -> bytes:
    raise ValueError(NO_HANDLE_MESSAGE)
