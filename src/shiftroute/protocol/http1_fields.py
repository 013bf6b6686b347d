# cython: annotation_typing=False
# (read when setup.py compiles this module: see http1_fields.pxd)
"""Header fields of an HTTP/1.1 head, one at a time (http1.py parses and builds whole heads with these):
Host values (validated, normalized, cached), Connection tokens, header names the parser treats specially,
and trimmed values.

Pure functions of bytes, run for every header of every request and response: compiled, they are C
functions (http1_fields.pxd) that http1 and engine/headers call in C.
"""

from __future__ import annotations

import re

_HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]{0,5})?$")

# Host values seen recently: the same few repeat, so each is normalized and checked once. Both caches are
# bounded in entries and in the length of what they keep.
_HOSTS: dict[bytes, str] = {}  # value -> normalized
_VALID_HOSTS: set[bytes] = set()  # values _HOST accepts
_CACHED_HOSTS = 4096
_CACHED_HOST_LENGTH = 300  # a DNS name has at most 253 bytes, then `:port`


def normalize_host(value: bytes) -> str:
    """Host compared case-insensitively with any `:port` and a trailing dot removed (routes.md §4)."""
    found = _HOSTS.get(value)
    if found is None:
        found = _normalize_host(value)
        if len(value) <= _CACHED_HOST_LENGTH:
            if len(_HOSTS) >= _CACHED_HOSTS:
                _HOSTS.clear()
            _HOSTS[value] = found
    return found


def valid_host(value: bytes) -> bool:
    """Whether a Host value is a valid authority (rule 9)."""
    if value in _VALID_HOSTS:
        return True
    if _HOST.match(value) is None:
        return False
    if len(value) <= _CACHED_HOST_LENGTH:
        if len(_VALID_HOSTS) >= _CACHED_HOSTS:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(value)
    return True


def _normalize_host(value: bytes) -> str:
    host = value.strip()
    if host.startswith(b"["):
        end = host.find(b"]")
        host = host[: end + 1]
    else:
        colon = host.rfind(b":")
        if colon != -1:
            host = host[:colon]
    return host.rstrip(b".").decode("latin-1").lower()


_SINGLE_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade"})


def add_tokens(value: bytes, tokens: list[bytes]) -> None:
    """Append the lowercased tokens of a Connection value to `tokens` (appended, not returned: no list is
    made per header)."""
    lower = value.lower()  # bytes.lower maps A-Z only: commas and whitespace are where they were
    if lower in _SINGLE_TOKENS:  # the usual Connection values, without a split
        tokens.append(lower)
        return
    for token in lower.split(b","):
        token = token.strip()
        if token:
            tokens.append(token)


def names_by_length(names: frozenset[bytes]) -> tuple[tuple[bytes, ...], ...]:
    """`names` (lowercase) grouped by length: entry `n` holds the names of `n` bytes."""
    return tuple(
        tuple(sorted(n for n in names if len(n) == size)) for size in range(max(map(len, names)) + 1)
    )


def special_name(name: bytes, by_length: tuple[tuple[bytes, ...], ...]) -> bytes | None:
    """The lowercase name among `by_length` (see names_by_length) that `name` spells in any case, or None.

    Most header names are ordinary: their length or first byte already rules them out, so only a likely
    match is lowercased (a copy) to be compared in full."""
    size = len(name)
    if size >= len(by_length):
        return None
    data = name  # read byte by byte (compiled: a C pointer into `name`, see http1_fields.pxd)
    for candidate in by_length[size]:
        first = candidate  # as `data`; every candidate has a first byte (names are not empty)
        # `| 0x20` lowercases an ASCII letter (a non-letter that happens to match is refused below).
        if first[0] == data[0] | 0x20 and name.lower() == candidate:
            return candidate
    return None


def drop_named(headers: list[tuple[bytes, bytes]], named: set[bytes]) -> list[tuple[bytes, bytes]]:
    """`headers` without those whose (lowercased) name is in `named` (rule 11: what Connection names)."""
    sizes = {len(n) for n in named}  # bytes.lower keeps the length: other lengths cannot match
    return [h for h in headers if len(h[0]) not in sizes or h[0].lower() not in named]


def kept(item: tuple[bytes, bytes], name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """The pair (name, value) as forwarded, the value trimmed; `item`, the pair received, when it is that
    already (the usual case: no new tuple per header)."""
    size = len(value)
    data = value  # as in special_name
    if size and data[size - 1] in (0x20, 0x09):  # as trim, without a second call per header
        return (name, value.rstrip(b" \t"))
    return item if type(item) is tuple else (name, value)


def trim(value: bytes) -> bytes:
    """`value` without trailing spaces and tabs: RFC 9110 §5.5, they are not part of a field value (llhttp
    keeps them); rule 10."""
    size = len(value)
    data = value  # as in special_name
    if size and data[size - 1] in (0x20, 0x09):
        return value.rstrip(b" \t")
    return value
