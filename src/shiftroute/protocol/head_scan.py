"""A plain request head read in one pass, without llhttp: the compiled build's shortcut.

This is the Python version, used when the engine runs from its sources: it reads nothing (`request`
answers None) and llhttp reads every head, as the compiled build does for anything but a plain head. The C
version, and the subset of heads it reads, is in head_scan.pxd; tests/unit/test_head_scan.py checks it
against llhttp.
"""

from __future__ import annotations


def request(
    data: bytes, start: int, limit: int, max_fields: int
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """(end, method, target, fields) for a plain head at data[start:end], or None: llhttp reads it."""
    return None
