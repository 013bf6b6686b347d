"""A head's bytes: `first pieces (CRLF name: value)* CRLF CRLF`, in one piece.

This is the Python version; compiled, http1 uses the C version in head_bytes.pxd instead (same name, same
result; see there). tests/unit/test_head_bytes.py checks the two against each other.
"""

from __future__ import annotations


def serialize(
    first: list[bytes], headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]] | None
) -> bytes:
    parts = list(first)
    for fields in (headers, added or ()):
        for name, value in fields:
            parts += (b"\r\n", name, b": ", value)
    parts.append(b"\r\n\r\n")
    return b"".join(parts)
