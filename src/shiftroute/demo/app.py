"""`shiftroute demo-app`: a tiny HTTP/1.1 "Hello" application, over TLS or plain HTTP.

It answers every request with its text and reports, in response headers, what it saw of the connection,
so a client on the other side of a router learns what the application got (the demo prints it):

    X-Demo-App-TLS: TLSv1.3 | none        X-Demo-App-Forwarded-For: <X-Forwarded-For or none>
    X-Demo-App-Cipher: <cipher> | none    X-Demo-App-Forwarded-Proto: <X-Forwarded-Proto or none>
    X-Demo-App-SNI: <server name> | none  X-Demo-App-Host: <Host header>

asyncio streams are fine here: this is a test backend, not the router's data plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass

MAX_HEAD = 16 * 1024
# Bounded waits: a client that sends nothing, or a body that never ends, cannot hold a connection.
HEAD_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class AppConfig:
    bind: str
    port: int
    text: str
    cert: str | None = None
    key: str | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = _remember_sni
    return ctx


# The SNI the client sent, per TLS connection: the callback runs inside the handshake, before the stream
# handler can see the connection, so it is kept by SSLObject identity and read once the handshake is done.
_SNI: dict[int, str] = {}


def _remember_sni(obj: ssl.SSLSocket | ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
    if name:
        _SNI[id(obj)] = name


def _headers(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return method, target, headers


def response(text: str, seen: dict[str, str], head_only: bool, close: bool) -> bytes:
    body = (text + "\n").encode()
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        *(f"X-Demo-App-{name}: {value}" for name, value in seen.items()),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


def _what_it_saw(writer: asyncio.StreamWriter, headers: dict[str, str]) -> dict[str, str]:
    sslobj = writer.get_extra_info("ssl_object")
    cipher = writer.get_extra_info("cipher")
    return {
        "TLS": sslobj.version() if sslobj is not None else "none",
        "Cipher": cipher[0] if cipher else "none",
        "SNI": _SNI.get(id(sslobj), "none") if sslobj is not None else "none",
        "Forwarded-For": headers.get("x-forwarded-for", "none"),
        "Forwarded-Proto": headers.get("x-forwarded-proto", "none"),
        "Host": headers.get("host", "none"),
    }


async def _discard_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bool:
    """Read and drop a Content-Length body; False when the framing is one this app does not follow."""
    if "transfer-encoding" in headers:
        return False
    length = headers.get("content-length", "0").strip() or "0"
    if not length.isdigit():
        return False
    await asyncio.wait_for(reader.readexactly(int(length)), IDLE_TIMEOUT)
    return True


TLS_HANDSHAKE_RECORD = b"\x16"
_NOT_TLS_BODY = b"This port speaks plain HTTP, not TLS.\n"
NOT_TLS_HERE = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%b" % (len(_NOT_TLS_BODY), _NOT_TLS_BODY)
)


async def _first_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The first byte of a plain-HTTP connection; None after answering a TLS ClientHello with a 400 at once,
    so a TLS client (a reencrypt route pointed here by mistake) fails fast instead of waiting for a head
    that never comes."""
    first = await asyncio.wait_for(reader.readexactly(1), HEAD_TIMEOUT)
    if writer.get_extra_info("ssl_object") is None and first == TLS_HANDSHAKE_RECORD:
        writer.write(NOT_TLS_HERE)
        await writer.drain()
        return None
    return first


async def _serve(text: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = True
    try:
        pending = await _first_bytes(reader, writer)
        while pending is not None:
            wait = HEAD_TIMEOUT if first else IDLE_TIMEOUT
            head = pending + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
            pending = b""
            first = False
            method, _target, headers = _headers(head)
            keep = await _discard_body(reader, headers)
            close = not keep or headers.get("connection", "").lower() == "close"
            writer.write(response(text, _what_it_saw(writer, headers), method == "HEAD", close))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        pass  # the client went away, sent garbage, or stayed silent: just close
    except ssl.SSLError:
        pass
    finally:
        _SNI.pop(id(writer.get_extra_info("ssl_object")), None)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def run(config: AppConfig, announce: Callable[[str], None]) -> None:
    ctx = server_context(config.cert, config.key) if config.cert and config.key else None
    server = await asyncio.start_server(
        lambda r, w: _serve(config.text, r, w), config.bind, config.port, ssl=ctx, limit=MAX_HEAD
    )
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ctx else "http"
    announce(f"demo-app: serving {config.text!r} on {scheme}://{config.bind}:{port}/")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    announce("demo-app: stopped")


def main(config: AppConfig) -> None:
    def announce(line: str) -> None:
        print(line, flush=True)

    asyncio.run(run(config, announce))
    sys.exit(0)
