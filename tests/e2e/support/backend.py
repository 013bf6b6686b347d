"""A recording HTTP/1.1 backend on 127.0.0.1 (plain or TLS), run in a thread by the test.

It records exactly what arrived (raw head bytes, parsed method/path/headers, the de-framed body) so tests
can assert what the application saw, and answers with a configurable response. Keep-alive is supported;
`respond` can be replaced to send arbitrary (even malformed) bytes.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httptools


@dataclass
class Received:
    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    tls: bool
    sni: str | None = None
    tls_resumed: bool = False  # the TLS session of this connection was resumed
    connection: int = 0  # which accepted connection (1, 2, ...) carried the request

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def named_response(name: str) -> Callable[[Received], bytes]:
    """A backend that answers its own name, to see which endpoint a request reached."""
    body = name.encode()

    def respond(request: Received) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)

    return respond


def held_response(
    release: threading.Event, body: bytes = b"ok", wait: float = 10.0
) -> Callable[[Received], bytes]:
    """A backend that holds each answer until `release` is set (at most `wait` seconds)."""

    def respond(request: Received) -> bytes:
        release.wait(wait)
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)

    return respond


def hello_response(request: Received) -> bytes:
    body = b"Hello"
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


@dataclass
class _Parse:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    url: bytes = b""
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    head_end: int = -1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_message_complete(self) -> None:
        self.done = True


class Backend:
    def __init__(
        self,
        respond: Callable[[Received], bytes | Iterable[bytes]] = hello_response,
        tls: ssl.SSLContext | None = None,
        name: str = "backend",
    ) -> None:
        self.respond = respond
        self.tls = tls
        self.name = name
        self.received: list[Received] = []
        self.connections = 0
        self.closed_connections = 0  # connections that ended (either side closed)
        self.bytes_received = 0  # every byte that arrived, complete requests or not
        self.raw_connections: list[socket.socket] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        if tls is not None:
            # Remember the SNI the router sent, per connection.
            tls.sni_callback = lambda obj, name, _ctx: setattr(obj, "seen_sni", name)  # type: ignore[assignment]

    def __enter__(self) -> Backend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in list(self.raw_connections):
            try:
                conn.close()
            except OSError:
                pass

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.raw_connections.append(conn)
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int = 0) -> None:
        stream: socket.socket | ssl.SSLSocket = conn
        try:
            conn.settimeout(30)  # inside: stop() may already have closed a connection accepted just now
            if self.tls is not None:
                stream = self.tls.wrap_socket(conn, server_side=True)
            self._requests(stream, getattr(stream, "seen_sni", None), number)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass
            with self._lock:
                self.closed_connections += 1

    def _recv(self, stream: socket.socket | ssl.SSLSocket) -> bytes:
        data = stream.recv(65536)
        with self._lock:
            self.bytes_received += len(data)
        return data

    def _requests(self, stream: socket.socket | ssl.SSLSocket, sni: str | None, number: int = 0) -> None:
        buffer = b""
        while not self._stop.is_set():
            parse = _Parse()
            parser = httptools.HttpRequestParser(parse)
            consumed = b""
            upgraded = False
            while not parse.done:
                data = buffer or self._recv(stream)
                buffer = b""
                if not data:
                    return
                try:
                    parser.feed_data(data)
                    consumed += data
                except httptools.HttpParserUpgrade as exc:
                    consumed += data[: exc.args[0]]
                    buffer = data[exc.args[0] :]
                    upgraded = True
                    break
                except httptools.HttpParserError:
                    stream.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
            head_end = consumed.find(b"\r\n\r\n")
            received = Received(
                method=parser.get_method().decode(),
                path=parse.url.decode("latin-1"),
                version=parser.get_http_version(),
                headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in parse.headers],
                body=bytes(parse.body),
                raw_head=consumed[: head_end + 4] if head_end >= 0 else consumed,
                tls=self.tls is not None,
                sni=sni,
                tls_resumed=bool(getattr(stream, "session_reused", False)),
                connection=number,
            )
            with self._lock:
                self.received.append(received)
            answer = self.respond(received)
            if not isinstance(answer, bytes):
                # An iterable of pieces: sent one by one, so a test can hold the rest of a response back.
                sent = b""
                for piece in answer:
                    stream.sendall(piece)
                    sent = sent or piece
                answer = sent
            elif answer:
                stream.sendall(answer)
            if upgraded:
                self._echo(stream, buffer)
                return
            if not parser.should_keep_alive() or b"connection: close" in answer.lower():
                return

    def _echo(self, stream: socket.socket | ssl.SSLSocket, first: bytes) -> None:
        """After a 101: echo every byte back (a stand-in for a WebSocket echo server)."""
        if first:
            stream.sendall(first)
        while True:
            data = self._recv(stream)
            if not data:
                return
            stream.sendall(data)
