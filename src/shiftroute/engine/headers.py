"""Building the heads the router forwards (hardening.md rule 10: re-serialised, never raw client bytes):
X-Forwarded-*/Forwarded per policy (rule 18), sticky cookies (routes.md §5), HSTS, route header actions,
path rewriting. Pure functions of a request and its backend."""

from __future__ import annotations

from shiftroute.protocol.http1 import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    RequestHead,
    ResponseHead,
    serialize_head,
    serialize_pieces,
    status_line_start,
)
from shiftroute.protocol.http1_fields import names_by_length, special_name
from shiftroute.routing.table import Backend, Server

_FORWARDED_NAMES = (
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-proto",
    b"forwarded",
)
# The request header names upstream_head treats specially, by length (http1_fields.special_name).
_UPSTREAM_BY_LENGTH = names_by_length(frozenset(_FORWARDED_NAMES) | {b"cookie", b"expect"})


def rewrite_path(backend: Backend, path: bytes) -> bytes:
    """routes.md §6 rewrite-target: target `/` turns `<route path>/x` into `/x`; other targets replace the
    route's path prefix."""
    target = backend.rewrite_target
    if target is None:
        return path
    prefix = backend.path.rstrip("/").encode()
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    new_prefix = target.rstrip("/").encode()
    result = new_prefix + rest
    if not result.startswith(b"/"):
        result = b"/" + result
    return result


def client_cookie(head: RequestHead, prefix: bytes) -> bytes | None:
    """The value of the router's sticky cookie (`prefix`: its name and `=`) in the request, if the client
    sent it."""
    for header, value in head.headers:
        if len(header) == 6 and header.lower() == b"cookie" and value.find(prefix) != -1:
            for part in value.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :]
    return None


def _strip_cookie(value: bytes, prefix: bytes) -> bytes:
    return b"; ".join(p.strip() for p in value.split(b";") if p.strip() and not p.strip().startswith(prefix))


def _forwarded_for(ip: str) -> bytes:
    # RFC 7239 §6: IPv6 addresses are quoted and bracketed.
    return b'"[%b]"' % ip.encode() if ":" in ip else ip.encode()


class ClientInfo:
    """What the forwarding headers say about a client connection, encoded once per connection."""

    __slots__ = ("_forwarded", "_forwarded_host", "_own", "_own_host", "forwarded_for", "ip", "port", "proto")

    def __init__(self, client_ip: str, local_port: int, secure: bool) -> None:
        self.ip = client_ip.encode()
        self.port = str(local_port).encode()
        self.proto = b"https" if secure else b"http"
        self.forwarded_for = _forwarded_for(client_ip)
        self._forwarded_host = b""
        self._forwarded = b""
        self._own_host = b""
        self._own: tuple[tuple[bytes, bytes], ...] = ()

    def forwarded(self, host: bytes) -> bytes:
        """The Forwarded value (RFC 7239) for a request to `host`: a keep-alive client repeats its host, so
        the last one is kept."""
        if host != self._forwarded_host or not self._forwarded:
            self._forwarded = b"for=%b;host=%b;proto=%b" % (self.forwarded_for, host, self.proto)
            self._forwarded_host = host
        return self._forwarded

    def own_headers(self, host: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """The forwarding headers the router sets on a request to `host` (rule 18), in their order; kept
        for the next request as `forwarded` is."""
        if host != self._own_host or not self._own:
            self._own = (
                (b"X-Forwarded-Host", host),
                (b"X-Forwarded-Port", self.port),
                (b"X-Forwarded-Proto", self.proto),
                (b"Forwarded", self.forwarded(host)),
                (b"X-Forwarded-For", self.ip),
            )
            self._own_host = host
        return self._own


def upstream_head(head: RequestHead, backend: Backend, server: Server, client: ClientInfo) -> bytes:
    """The request head sent to the endpoint."""
    policy = backend.forwarded_policy
    cookie = backend.cookie_prefix
    headers: list[tuple[bytes, bytes]] = []
    sent: set[bytes] | None = None  # forwarding headers the client sent
    for item in head.headers:
        name, value = item
        lower = special_name(name, _UPSTREAM_BY_LENGTH)
        if lower is None:
            headers.append(item)  # the pair as received (a tuple: the compiled head writer takes only tuples)
            continue
        if lower in _FORWARDED_NAMES:
            if sent is None:
                sent = set()
            sent.add(lower)
            if policy == "replace":
                continue
            if policy == "append" and lower not in {b"x-forwarded-for", b"forwarded"}:
                continue  # append keeps the client's chain but sets Host/Port/Proto itself
        elif lower == b"cookie" and cookie is not None and value.find(cookie) != -1:
            # routes.md §5: the router's cookie never reaches the backend. (find, not `in`: http1._target)
            value = _strip_cookie(value, cookie)
            if not value:
                continue
        elif lower == b"expect":
            continue  # the router answers 100-continue itself
        headers.append((name, value))
    if policy in {"append", "replace", "if-none"}:
        own = client.own_headers(head.host_header)
        if policy != "if-none" or sent is None:
            headers.extend(own)
        else:
            # if-none decides per header, as OpenShift's template does (`set-header X ... if !{ req.hdr(X)
            # -m found }`, `option forwardfor if-none`): a client's X-Forwarded-For alone does not suppress
            # the rest.
            headers.extend([h for h in own if h[0].lower() not in sent])
    if backend.request_actions:  # usually none: no call
        _apply_actions(headers, backend.request_actions)
    if head.body == CHUNKED:
        headers.append((b"Transfer-Encoding", b"chunked"))
    elif head.body == LENGTH:
        headers.append((b"Content-Length", str(head.content_length).encode()))
    elif head.method in (b"POST", b"PUT", b"PATCH"):
        headers.append((b"Content-Length", b"0"))
    if head.websocket_key is not None:
        headers.append((b"Connection", b"Upgrade"))
        headers.append((b"Upgrade", head.upgrade))
    # The request line's pieces joined with the headers: `method SP path query SP HTTP/1.1`.
    pieces = [head.method, b" ", rewrite_path(backend, head.path), head.query, b" HTTP/1.1"]
    return serialize_pieces(pieces, headers)


def _apply_actions(
    headers: list[tuple[bytes, bytes]], actions: tuple[tuple[bytes, bytes | None], ...]
) -> None:
    """spec.httpHeaders actions: Set replaces every header of that name, Delete removes them."""
    for lower, value in actions:
        headers[:] = [(n, v) for n, v in headers if n.lower() != lower]
        if value is not None:
            headers.append((lower, value))


def client_framing(response: ResponseHead, request: RequestHead) -> int:
    """How the body goes to the client: a read-until-close backend body is chunked for HTTP/1.1 clients,
    so the client connection can stay open."""
    if response.body == UNTIL_CLOSE:
        return CHUNKED if request.version == b"1.1" else UNTIL_CLOSE
    return response.body


def client_head(
    response: ResponseHead,
    request: RequestHead,
    backend: Backend,
    framing: int,
    set_cookie: Server | None,
    secure: bool,
    keep_alive: bool,
) -> bytes:
    """The response head sent to the client: the backend's headers as checked, then what the router adds
    (framing, sticky cookie, HSTS, the route's header actions, Connection)."""
    added: list[tuple[bytes, bytes]] = []
    if framing == LENGTH:
        added.append((b"Content-Length", b"%d" % response.content_length))
    elif framing == CHUNKED:
        added.append((b"Transfer-Encoding", b"chunked"))
    if set_cookie is not None and backend.cookie_name:
        added.append((b"Set-Cookie", backend.set_cookie[set_cookie.id]))
        # HAProxy's `cookie ... nocache`: a response that sets a routing cookie must not be cached.
        added.append((b"Cache-control", b"private"))
    headers = response.headers
    if (backend.hsts is not None and secure) or backend.response_actions:
        headers = headers + added
        added = []
        if backend.hsts is not None and secure:
            headers = [(n, v) for n, v in headers if n.lower() != b"strict-transport-security"]
            headers.append((b"Strict-Transport-Security", backend.hsts))
        _apply_actions(headers, backend.response_actions)
    if not keep_alive:
        added.append((b"Connection", b"close"))
    elif request.version == b"1.0":
        added.append((b"Connection", b"keep-alive"))
    # In the usual case (nothing to filter) the backend's list is written as it is, not copied.
    return serialize_pieces([status_line_start(response.status), response.reason or b"-"], headers, added)


def switching_head(response: ResponseHead) -> bytes:
    """The 101 for a WebSocket tunnel, re-serialised (rule 10)."""
    headers = list(response.headers)
    headers.append((b"Connection", b"Upgrade"))
    headers.append((b"Upgrade", response.upgrade))
    return serialize_head(b"HTTP/1.1 101 %b" % (response.reason or b"Switching Protocols"), headers)


__all__ = [
    "NO_BODY",
    "client_cookie",
    "client_framing",
    "client_head",
    "rewrite_path",
    "switching_head",
    "upstream_head",
]
