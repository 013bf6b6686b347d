"""Socket and TLS probes of endpoints and of the router. Blocking sockets, every one with a timeout.

Errors are described with the router's own wording (`describe_connect_error`), so a diagnosis reads like
the router's log line for the same failure.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

from cryptography import x509

from shiftroute.engine.upstream import describe_connect_error
from shiftroute.pki.pem import CertSummary, summarize

CONNECT_TIMEOUT = 3.0
TLS_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
MAX_RESPONSE = 256 * 1024


def hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class ConnectResult:
    ok: bool
    error: str = ""
    millis: float = 0.0


def tcp_connect(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> ConnectResult:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return ConnectResult(True, millis=(time.monotonic() - started) * 1000)
    except OSError as exc:
        return ConnectResult(False, describe_connect_error(exc))


@dataclass(frozen=True, slots=True)
class TlsResult:
    ok: bool
    error: str = ""
    verify_message: str = ""  # set when the handshake failed certificate verification
    version: str = ""
    cipher: str = ""
    cert: CertSummary | None = None
    cert_obj: x509.Certificate | None = None


def insecure_context() -> ssl.SSLContext:
    """Learns what a backend presents without judging it (the judging is a second, verifying handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_handshake(
    address: str, port: int, ctx: ssl.SSLContext, server_hostname: str | None, timeout: float = TLS_TIMEOUT
) -> TlsResult:
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        return TlsResult(False, describe_connect_error(exc))
    try:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            cert = x509.load_der_x509_certificate(der) if der else None
            cipher = tls.cipher()
            return TlsResult(
                True,
                version=tls.version() or "",
                cipher=cipher[0] if cipher else "",
                cert=summarize(cert) if cert is not None else None,
                cert_obj=cert,
            )
    except ssl.SSLCertVerificationError as exc:
        return TlsResult(False, describe_connect_error(exc), verify_message=str(exc.verify_message))
    except (OSError, ValueError) as exc:
        return TlsResult(False, _tls_error(exc))
    finally:
        raw.close()


def _tls_error(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLEOFError | ConnectionResetError) or (
        isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno is None
    ):
        return "TLS handshake failed: the endpoint closed the connection"
    return describe_connect_error(exc)


@dataclass(frozen=True, slots=True)
class HttpResult:
    ok: bool  # an HTTP status line came back
    error: str = ""
    status: int = 0
    status_line: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    first_bytes: bytes = b""
    cert: CertSummary | None = None  # what a TLS client was served
    tls_version: str = ""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None


def _request_bytes(host: str, path: str) -> bytes:
    return (
        f"GET {path or '/'} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shiftroute-diagnose\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def _read_all(sock: socket.socket | ssl.SSLSocket, deadline: float) -> bytes:
    data = b""
    while len(data) < MAX_RESPONSE:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            break
        if not chunk:
            break
        data += chunk
        if _complete(data):
            break
    return data


def _complete(data: bytes) -> bool:
    """A Content-Length response is complete without waiting for the peer to close."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False


def parse_response(data: bytes) -> HttpResult:
    if not data.startswith(b"HTTP/"):
        return HttpResult(False, "no HTTP response", first_bytes=data[:16])
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return HttpResult(
        True, status=status, status_line=lines[0], headers=headers, body=body, first_bytes=data[:16]
    )


def http_request(
    address: str,
    port: int,
    host: str,
    path: str = "/",
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> HttpResult:
    """One GET with `Connection: close`; over TLS when `tls` is given (with `sni`, or none)."""
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((address, port), timeout=min(timeout, CONNECT_TIMEOUT))
    except OSError as exc:
        return HttpResult(False, describe_connect_error(exc))
    sock: socket.socket | ssl.SSLSocket = raw
    served: CertSummary | None = None
    version = ""
    try:
        if tls is not None:
            raw.settimeout(min(timeout, TLS_TIMEOUT))
            sock = tls.wrap_socket(raw, server_hostname=sni)
            der = sock.getpeercert(binary_form=True)
            served = summarize(x509.load_der_x509_certificate(der)) if der else None
            version = sock.version() or ""
        sock.sendall(_request_bytes(host, path))
        data = _read_all(sock, deadline)
    except OSError as exc:
        return HttpResult(False, _tls_error(exc) if tls is not None else describe_connect_error(exc))
    finally:
        sock.close()
    result = parse_response(data)
    if not data:
        result = HttpResult(False, "the connection closed without an answer")
    return HttpResult(
        result.ok,
        result.error,
        result.status,
        result.status_line,
        result.headers,
        result.body,
        result.first_bytes,
        served,
        version,
    )
