"""The harness's own small HTTPS client: connects to 127.0.0.1 with SNI and Host set to a route's host.
No certificate verification: it checks routing, not certificates."""

from __future__ import annotations

import http.client
import socket
import ssl

from bench.procs import LOCALHOST

_CONTEXT: ssl.SSLContext | None = None


def client_context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CONTEXT = ctx
    return _CONTEXT


def https_get(
    port: int, host: str, path: str = "/", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new TLS connection; (status, lower-cased headers, body)."""
    raw = socket.create_connection((LOCALHOST, port), timeout=timeout)
    with client_context().wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
