"""Responses the router writes itself: the OpenShift-style 503 page, errors, and redirects. Built once."""

from __future__ import annotations

from http import HTTPStatus

# routes.md §4: the page OpenShift's router serves when it cannot route a request.
_UNAVAILABLE_BODY = b"""<html>
  <head>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Application is not available</title>
    <style type="text/css">
      body { font-family: sans-serif; margin: 2em auto; max-width: 42em; color: #333; }
      h1 { font-weight: normal; }
    </style>
  </head>
  <body>
    <h1>Application is not available</h1>
    <p>The application is currently not serving requests at this endpoint. It may not have been started
    or is still starting.</p>
    <p>Possible reasons you are seeing this page:</p>
    <ul>
      <li><strong>The host doesn't exist.</strong> Make sure the hostname was typed correctly and that a
      route matching this hostname exists.</li>
      <li><strong>The host exists, but doesn't have a matching path.</strong> Check if the URL path was
      typed correctly and that the route was created using the desired path.</li>
      <li><strong>Route and path matches, but all pods are down.</strong> Make sure that the resources
      exposed by this route (pods) are running.</li>
    </ul>
    <p>Run <code>shiftroute diagnose route NAME</code> to see why a route does not serve.</p>
  </body>
</html>
"""

NO_CACHE = b"private, max-age=0, no-cache, no-store"


def _response(status: int, body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    reason = HTTPStatus(status).phrase.encode()
    return (
        b"HTTP/1.1 %d %b\r\nContent-Length: %d\r\nCache-Control: %b\r\nContent-Type: %b\r\n%b"
        b"Connection: close\r\n\r\n%b" % (status, reason, len(body), NO_CACHE, content_type, extra, body)
    )


SERVICE_UNAVAILABLE = _response(503, _UNAVAILABLE_BODY, b"text/html; charset=utf-8")
SERVICE_UNAVAILABLE_HEAD = SERVICE_UNAVAILABLE[: SERVICE_UNAVAILABLE.index(b"\r\n\r\n") + 4]


def error(status: int, message: str = "") -> bytes:
    """A short plain-text error; the connection is closed after it (hardening.md rules 5-12)."""
    text = f"{status} {HTTPStatus(status).phrase}" + (f": {message}" if message else "") + "\n"
    return _response(status, text.encode("latin-1", "replace"), b"text/plain; charset=utf-8")


_ERRORS = {status: error(status) for status in (400, 403, 405, 413, 414, 417, 421, 429, 431, 502, 504, 505)}


def error_cached(status: int) -> bytes:
    return _ERRORS.get(status) or error(status)


def redirect(location: bytes, keep_alive: bool) -> bytes:
    """routes.md §4: insecure policy Redirect answers 302 to https://<host><path and query>."""
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return b"HTTP/1.1 302 Found\r\nLocation: %b\r\nContent-Length: 0\r\nCache-Control: no-cache\r\n%b\r\n" % (
        location,
        connection,
    )


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
