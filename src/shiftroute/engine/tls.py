"""TLS over an asyncio transport with ssl.MemoryBIO, one object per connection.

Why not `loop.start_tls`: the HTTPS listener must read the ClientHello before deciding to terminate
(passthrough needs the untouched bytes), and asyncio cannot start TLS on bytes it already read. Owning the
TLS layer also keeps per-connection buffers small: asyncio's SSLProtocol reserves 256 KiB per connection,
here an idle connection holds only what OpenSSL holds.
"""

from __future__ import annotations

import contextlib
import ssl

from shiftroute.engine import tls_direct

READ_SIZE = 65536
# Compiled, records after the handshake go through OpenSSL from C (tls_direct.pxd) when the `SSL` object can
# be reached safely; False keeps every connection on `ssl` (the tests compare the two paths).
DIRECT = True


class TlsLayer:
    __slots__ = ("_handle", "_in", "_out", "_pending", "_read", "_write", "handshake_done", "obj")

    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname, session=session
        )
        self.handshake_done = False
        # The C object behind ssl.SSLObject (`_sslobj`, there since Python 3.7): its read/write without the
        # Python wrapper methods, which cost about a tenth of a microsecond each on every record.
        raw = getattr(self.obj, "_sslobj", self.obj)
        self._read = raw.read
        self._write = raw.write
        self._pending = raw.pending
        # Used once the handshake is done (0: not available, every record goes through `ssl`).
        self._handle = tls_direct.handle_of(raw, self._in, self._out) if DIRECT else 0

    @property
    def direct(self) -> bool:
        """Whether records after the handshake skip the `ssl` wrappers (compiled build, see tls_direct)."""
        return self._handle != 0

    def start(self) -> bytes:
        """Client side: the first flight (ClientHello)."""
        self._handshake()
        return self._out.read()

    def _handshake(self) -> None:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        self.handshake_done = True

    def feed(self, data: bytes) -> tuple[list[bytes], bytes, bool]:
        """Bytes from the network in; (plaintext pieces, bytes to send back, peer closed) out.

        Raises ssl.SSLError on a handshake or protocol failure. `peer closed` means close_notify arrived
        (after the pieces returned with it)."""
        if self.handshake_done and self._handle:
            return tls_direct.feed(self._handle, data)
        self._in.write(data)
        if not self.handshake_done:
            self._handshake()
            if not self.handshake_done:
                return [], self._out.read(), False
        pieces: list[bytes] = []
        closed = False
        incoming = self._in
        read = self._read
        while True:
            try:
                piece = read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                closed = True
                break
            if not piece:
                closed = True
                break
            pieces.append(piece)
            if not incoming.pending and not self._pending():
                # Everything received is decrypted and handed out: stop here rather than read once more
                # only to be told SSLWantReadError (an exception costs about a microsecond).
                break
        # Reading application data rarely produces anything to send back (a key update, an alert).
        outgoing = self._out
        return pieces, outgoing.read() if outgoing.pending else b"", closed

    def encrypt(self, data: bytes) -> bytes:
        if self.handshake_done and self._handle:
            return tls_direct.encrypt(self._handle, data)
        self._write(data)
        return self._out.read()

    def close_notify(self) -> bytes:
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.obj.unwrap()
        return self._out.read()

    @property
    def session(self) -> ssl.SSLSession | None:
        return self.obj.session

    @property
    def sni(self) -> str | None:
        return getattr(self.obj, "server_hostname", None)


def describe_records() -> str:
    """One line for the router's log: how TLS records are read and written once a handshake is done."""
    if not DIRECT:
        return "through Python's ssl module (tls.DIRECT is off)"
    probe = TlsLayer(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), server_side=False, server_hostname="localhost")
    if probe.direct:
        return "OpenSSL called directly on the ssl module's own connections (engine/tls_direct.pxd)"
    if (__file__ or "").endswith(".py"):
        return "through Python's ssl module (Python sources)"
    return "through Python's ssl module (its OpenSSL objects could not be reached safely on this Python)"
