"""Plain request heads and plain responses read in one pass, without llhttp: the compiled build's shortcut.

This is the Python version, used when the engine runs from its sources: it reads nothing (`request` and
`response` answer None) and llhttp reads everything, as the compiled build does for anything not plain.
The C version, and the subset it reads, is in head_scan.pxd; tests/unit/test_head_scan.py checks it
against llhttp.
"""

from __future__ import annotations


def request(
    data: bytes, start: int, limit: int, max_fields: int
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """(end, method, target, fields) for a plain head at data[start:end], or None: llhttp reads it."""
    return None


def response(
    data: bytes, limit: int, max_fields: int
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes] | None:
    """(status, reason, fields, body) when `data` is exactly one plain response, or None: llhttp reads it."""
    return None
