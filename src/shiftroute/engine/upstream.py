"""Connections to endpoints: plain or TLS (reencrypt), kept alive in a per-endpoint pool and reused across
requests and clients.

An UpstreamConnection is owned by at most one request at a time (its `owner`). The owner receives
plaintext through `upstream_data`, and `upstream_closed` when the connection ends.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from typing import Any, Protocol, cast

from shiftroute.engine.outbox import Outbox, WriteBatch
from shiftroute.engine.tls import TlsLayer

log = logging.getLogger("shiftroute.engine")

# How long an idle pooled connection is kept. Backends close idle connections too (Apache after 5 s by
# default); a connection the backend closed is found dead on reuse and the request is retried when safe.
POOL_IDLE_TIMEOUT = 4.0
MAX_IDLE_PER_ENDPOINT = 64

# An endpoint's key in the pool: address, port, TLS context, SNI. A named alias also keeps Cython from
# reading `tuple[object, ...]` as a type of its own (Cython 3.3 then refuses the cpdef in upstream.pxd).
PoolKey = tuple[object, ...]


class UpstreamOwner(Protocol):
    def upstream_data(self, data: bytes) -> None: ...

    def upstream_closed(self, exc: BaseException | None) -> None: ...

    def upstream_writable(self) -> None: ...


class ConnectError(Exception):
    """The endpoint could not be reached or failed TLS; nothing of the request was sent."""

    def __init__(self, reason: str, tls: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tls = tls


def describe_connect_error(exc: BaseException) -> str:
    """One line for the log: what OpenShift users grep for when reencrypt answers 503."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "wrong version number", "PACKET_LENGTH_TOO_LONG"):
            return f"TLS handshake failed ({reason}): the endpoint does not speak TLS"
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "connect timed out"
    if isinstance(exc, OSError):
        return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    return str(exc) or type(exc).__name__


class UpstreamConnection:
    """One connection to an endpoint: an asyncio protocol by its methods, not by inheritance (an extension
    type when compiled, which cannot subclass asyncio.Protocol; see upstream.pxd)."""

    __slots__ = (
        "_handshake",
        "_loop",
        "callbacks",
        "closed",
        "key",
        "outbox",
        "owner",
        "parked_at",
        "parser",
        "paused",
        "pool",
        "session_saved",
        "tls",
        "transport",
    )

    def __init__(self, pool: Pool, key: PoolKey, tls: TlsLayer | None) -> None:
        self.pool = pool
        self.key = key
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.outbox: Outbox | None = None  # every write goes through it (engine/outbox.py)
        self.owner: UpstreamOwner | None = None
        self.closed = False
        self.paused = False
        self._handshake: asyncio.Future[None] | None = None
        self.parked_at = 0.0  # loop time it went idle in the pool
        self.session_saved = False
        # The response parser and its callbacks, kept with the connection across requests (llhttp is ready
        # for the next response once one is complete; a connection left mid-response is never reused).
        self.parser: Any = None
        self.callbacks: Any = None

    # -- asyncio callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        # Kept: asyncio.get_running_loop() makes a getpid() system call each time (CPython 3.11).
        self._loop = asyncio.get_running_loop()
        self.outbox = Outbox(self.transport, self._loop, self.pool.writes)
        if self.tls is not None:
            self._handshake = self._loop.create_future()
            first = self.tls.start()
            if first:
                self.outbox.write(first)

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is None:
            if self.owner is not None:
                self.owner.upstream_data(data)
            else:
                self._unexpected()
            return
        try:
            pieces, out, peer_closed = tls.feed(data)
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        if out and self.outbox is not None:
            self.outbox.write(out)
        handshake = self._handshake
        if handshake is not None and tls.handshake_done and not handshake.done():
            handshake.set_result(None)
        if len(pieces) > 1:
            # What one read decrypted (up to 16 records of a large body) goes to the session in one piece,
            # as a plain backend's read does: then one TLS write and one send to the client, not one of
            # each per 16 KiB record.
            pieces = [b"".join(pieces)]
        for piece in pieces:
            if self.owner is None:
                self._unexpected()
                return
            self.owner.upstream_data(piece)
        if peer_closed:
            self.close()

    def eof_received(self) -> bool | None:
        if self.outbox is not None:
            self.outbox.flush()  # asyncio closes the transport on False: what was written goes first
        return False  # close our side too: an HTTP/1.1 backend that half-closes is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(exc or ConnectionResetError("connection closed during the TLS handshake"))
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.upstream_closed(exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.owner is not None:
            self.owner.upstream_writable()

    # -- use ------------------------------------------------------------------------------------------

    def _unexpected(self) -> None:
        # Bytes from an idle backend connection: it is not in a state we can trust; drop it.
        self.close()

    def _fail(self, exc: BaseException) -> None:
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()  # no flush: after a TLS failure nothing more is worth sending

    def send(self, data: bytes) -> None:
        outbox = self.outbox
        if outbox is None or self.closed:
            return
        if self.tls is not None:
            data = self.tls.encrypt(data)
        outbox.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            if self.outbox is not None:
                self.outbox.flush()  # what was sent reaches the socket first, as it did before the batch
            self.transport.abort()

    def park(self) -> None:
        """Back into the pool, idle. The pool's sweeper closes it after POOL_IDLE_TIMEOUT (one timer per
        pool rather than one per request)."""
        self.owner = None
        self.parked_at = self._loop.time()

    def unpark(self, owner: UpstreamOwner) -> None:
        self.owner = owner


class Pool:
    """Idle connections per endpoint key (address, port, TLS context, SNI), newest first."""

    def __init__(self, writes: WriteBatch | None = None) -> None:
        # The router's write batch, which the pool's connections write through (engine/outbox.py).
        self.writes = writes if writes is not None else WriteBatch()
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        # The last TLS session per endpoint key: a new connection resumes it (an abbreviated handshake
        # instead of a full one, as HAProxy does with its backend SSL session cache).
        self._sessions: dict[PoolKey, ssl.SSLSession] = {}
        self.open = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def _sweep(self) -> None:
        """Close connections idle longer than POOL_IDLE_TIMEOUT; runs once a second while any are idle."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        limit = loop.time() - POOL_IDLE_TIMEOUT
        for key in list(self._idle):
            idle = self._idle[key]
            stale = [c for c in idle if c.parked_at <= limit]
            for conn in stale:
                conn.close()  # connection_lost removes it from the list
            if not self._idle.get(key):
                self._idle.pop(key, None)
        if self._idle:
            self._sweeper = loop.call_later(1.0, self._sweep)

    @staticmethod
    def key_for(address: str, port: int, context: ssl.SSLContext | None, hostname: str | None) -> PoolKey:
        return (address, port, id(context) if context is not None else 0, hostname)

    def take(self, key: PoolKey, owner: UpstreamOwner) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        conn: UpstreamConnection  # typed: its attributes are struct reads when compiled
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.unpark(owner)
                return conn
        return None

    def remember_session(self, conn: UpstreamConnection) -> None:
        # TLS 1.3 tickets arrive after the handshake, so a used connection is the one to ask; once per
        # connection, because CPython copies the session through DER on every read of `.session`
        # (about 100 µs: more than a whole keep-alive request).
        if conn.tls is not None and conn.tls.handshake_done and not conn.session_saved:
            conn.session_saved = True
            session = conn.tls.session
            if session is not None:
                self._sessions[conn.key] = session

    def give_back(self, conn: UpstreamConnection) -> None:
        self.remember_session(conn)
        if conn.closed:
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
            return
        conn.park()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def forget(self, conn: UpstreamConnection) -> None:
        self.open -= 1
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in list(idle):
                conn.close()
        self._idle.clear()

    async def connect(
        self,
        address: str,
        port: int,
        context: ssl.SSLContext | None,
        hostname: str | None,
        owner: UpstreamOwner,
        timeout: float,
    ) -> UpstreamConnection:
        """A new connection, TLS handshake done when `context` is set. Raises ConnectError."""
        loop = asyncio.get_running_loop()
        key = self.key_for(address, port, context, hostname)
        session = self._sessions.get(key) if context is not None else None

        def factory() -> asyncio.Protocol:
            tls = (
                TlsLayer(context, server_side=False, server_hostname=hostname, session=session)
                if context
                else None
            )
            # A protocol by its methods, not by inheritance (see UpstreamConnection).
            return cast(asyncio.Protocol, UpstreamConnection(self, key, tls))

        conn: UpstreamConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                _transport, protocol = await loop.create_connection(factory, address, port)
                conn = cast(UpstreamConnection, protocol)
                self.open += 1
                if conn._handshake is not None:
                    await conn._handshake
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            if conn is not None:
                conn.close()
            self._sessions.pop(key, None)  # never resume a session with an endpoint that just failed
            raise ConnectError(describe_connect_error(exc), tls=isinstance(exc, ssl.SSLError)) from None
        conn.owner = owner
        return conn
