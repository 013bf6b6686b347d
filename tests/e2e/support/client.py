"""Raw HTTP/1.1 clients for the tests: plain or TLS to 127.0.0.1 with any SNI and Host (glibc does not
resolve *.apps.localhost, so tests connect to loopback and set both), every read under a deadline."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import httptools
from cryptography import x509


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    peer_cert: x509.Certificate | None = None
    closed: bool = False  # the router closed the connection after this response

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class _Collect:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    messages: int = 0
    begun: int = 0

    def on_message_begin(self) -> None:
        self.begun += 1
        self.headers = []
        self.body = bytearray()
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.done = True
        self.messages += 1


def _first_message(data: bytes) -> tuple[httptools.HttpResponseParser, _Collect, bytes]:
    """(parser, collected, rest) for the first whole response in `data`, which holds more after it.
    httptools does not say where a message ended: the shortest prefix that completes one is searched for
    (the count of completed messages only grows with the prefix; `done` does not: the next message's
    start resets it)."""

    def parse(size: int) -> tuple[httptools.HttpResponseParser, _Collect]:
        collect = _Collect()
        parser = httptools.HttpResponseParser(collect)
        parser.feed_data(data[:size])
        return parser, collect

    low, high = 0, len(data)  # parse(low) has completed no message, parse(high) has
    while high - low > 1:
        middle = (low + high) // 2
        if parse(middle)[1].messages:
            high = middle
        else:
            low = middle
    parser, collect = parse(high)
    return parser, collect, data[high:]


def insecure_client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Connection:
    """One client connection; send raw bytes or requests, read responses, under deadlines."""

    def __init__(
        self,
        port: int,
        tls: bool = False,
        sni: str | None = None,
        timeout: float = 10.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket | ssl.SSLSocket = raw
        self.peer_cert: x509.Certificate | None = None
        if tls:
            ctx = context or insecure_client_context()
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
            der = self.sock.getpeercert(binary_form=True)
            self.peer_cert = x509.load_der_x509_certificate(der) if der else None
        self._buffer = b""
        self.eof = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        host: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Response:
        self.send(build_request(method, path, host, headers, body))
        return self.read_response(head=method == "HEAD")

    def _recv(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        if not data:
            self.eof = True
        return data

    def read_response(self, head: bool = False) -> Response:
        """One response (skipping 1xx interim ones unless it is a 101)."""
        deadline = time.monotonic() + self.timeout
        while True:
            collect = _Collect()
            parser = httptools.HttpResponseParser(collect)
            data = self._buffer
            self._buffer = b""
            fed = b""  # every byte given to this parser
            while True:
                if data:
                    fed += data
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserUpgrade as exc:
                        self._buffer = data[exc.args[0] :]
                        return self._response(parser, collect)
                    if collect.messages and collect.begun > 1:
                        # Bytes of the next response came in the same read (pipelined responses the
                        # router wrote together): keep them for the next call, parse this one alone.
                        parser, collect, self._buffer = _first_message(fed)
                        break
                    if collect.done or (head and collect.headers and b"\r\n\r\n" in data):
                        break
                data = self._recv(deadline)
                if not data:
                    if collect.headers or collect.body:
                        # read-until-close body
                        return self._response(parser, collect, closed=True)
                    raise ConnectionError("connection closed before a response")
            status = parser.get_status_code()
            if 100 <= status < 200 and status != 101:
                continue
            resp = self._response(parser, collect)
            if any(v.strip().lower() == "close" for v in (resp.header("Connection") or "").split(",")):
                resp.closed = True
            return resp

    def _response(
        self, parser: httptools.HttpResponseParser, collect: _Collect, closed: bool = False
    ) -> Response:
        return Response(
            status=parser.get_status_code(),
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in collect.headers],
            body=bytes(collect.body),
            peer_cert=self.peer_cert,
            closed=closed,
        )

    def read_until_closed(self, limit: float | None = None) -> bytes:
        """Everything until the peer closes (bounded by the timeout)."""
        deadline = time.monotonic() + (limit or self.timeout)
        out = self._buffer
        self._buffer = b""
        while True:
            try:
                data = self._recv(deadline)
            except TimeoutError:
                raise TimeoutError(
                    f"connection still open after {limit or self.timeout}s; got {out[:200]!r}"
                ) from None
            if not data:
                return out
            out += data

    def read_exactly(self, count: int, limit: float | None = None) -> bytes:
        """Exactly `count` bytes (raw, after any response already read), under the deadline."""
        deadline = time.monotonic() + (limit or self.timeout)
        out = self._buffer
        while len(out) < count:
            data = self._recv(deadline)
            if not data:
                raise ConnectionError(f"connection closed after {len(out)} of {count} bytes")
            out += data
        self._buffer = out[count:]
        return out[:count]

    def read_until(self, marker: bytes, limit: float | None = None) -> bytes:
        """Raw bytes up to and including `marker`, under the deadline."""
        deadline = time.monotonic() + (limit or self.timeout)
        out = self._buffer
        while marker not in out:
            data = self._recv(deadline)
            if not data:
                raise ConnectionError(f"connection closed before {marker!r}; got {out[:200]!r}")
            out += data
        end = out.index(marker) + len(marker)
        self._buffer = out[end:]
        return out[:end]

    def read_pipelined_response(self, head: bool = False) -> Response:
        """One response when several may arrive in one read (pipelining): framed by its own head, so the
        bytes after it stay buffered for the next call. (`read_response` takes one response per read.)"""
        while True:
            raw = self.read_until(b"\r\n\r\n")
            collect = _Collect()
            parser = httptools.HttpResponseParser(collect)
            try:
                parser.feed_data(raw)
            except httptools.HttpParserUpgrade:
                pass
            status = parser.get_status_code()
            if not (100 <= status < 200 and status != 101):
                break
        resp = self._response(parser, collect)
        te = (resp.header("Transfer-Encoding") or "").lower()
        if head or status in (101, 204, 304):
            pass
        elif te.endswith("chunked"):
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":  # trailer fields
                        pass
                    break
                body += self.read_exactly(size)
                self.read_exactly(2)
            resp.body = body
        elif resp.header("Content-Length") is not None:
            resp.body = self.read_exactly(int(resp.header("Content-Length") or 0))
        else:
            resp.body = self.read_until_closed()
            resp.closed = True
        if any(v.strip().lower() == "close" for v in (resp.header("Connection") or "").split(",")):
            resp.closed = True
        return resp

    def is_closed(self, wait: float = 2.0) -> bool:
        """True when the peer closes the connection within `wait` seconds (reading nothing else)."""
        try:
            return self.read_until_closed(wait) is not None
        except TimeoutError:
            return False


def build_request(
    method: str, path: str, host: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body is not None and not any(
        n.lower() in ("content-length", "transfer-encoding") for n, _ in headers or []
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def get(
    port: int,
    host: str,
    path: str = "/",
    tls: bool = False,
    sni: str | None = "",
    headers: list[tuple[str, str]] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a new connection. `sni=""` means: the same as the host (None: no SNI)."""
    server_name = host if sni == "" else sni
    with Connection(port, tls=tls, sni=server_name, timeout=timeout) as conn:
        headers = list(headers or []) + [("Connection", "close")]
        return conn.request("GET", path, host, headers)
