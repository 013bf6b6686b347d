"""The clock of the client connections' deadlines: CLOCK_MONOTONIC, in seconds, as `time.monotonic()`.

The same clock as the event loop's `time()` (asyncio's is time.monotonic(); uvloop's is libuv's cached
CLOCK_MONOTONIC reading, in milliseconds, taken once per loop iteration), read fresh. A deadline set from it
is a little later than one set from the loop's cached time, so it never fires early (engine/deadlines.py
fires a slot once the loop's time has passed its end).

This module is never compiled itself. Its `.pxd` holds the C twin (clock_gettime(2) through the vDSO, no
system call), which the compiled listeners and passthrough relay cimport, as they do sock_syscalls: there,
`clock.monotonic()` is a C call, where `loop.time()` was a Python method call (about 0.3k instructions, four
per passthrough connection).
"""

from __future__ import annotations

from time import monotonic

__all__ = ["monotonic", "ticks"]


def ticks(seconds: float, per_second: float) -> int:
    """The whole ticks of 1/`per_second` s in `seconds` (>= 0): int(seconds * per_second). Compiled, a C
    conversion; `int()` of a C double made a Python int first."""
    return int(seconds * per_second)
