"""glibc malloc's thresholds, fixed for a router that moves large bodies.

uvloop reads up to 256 KiB at a time, and a body moves through bytes objects of that size (read, then
encrypted). glibc serves allocations above its mmap threshold (128 KiB at first) with mmap, then raises
that threshold as such blocks are freed, and trims the top of its heap whenever more than twice that is
free there. Which of these happens depends on the process's history, so a router fell into one of two
modes: the same 1 MiB edge responses cost 0.6 ms of router CPU per MB in one run and 1.3-1.45 in the next
(HAProxy steady at ~0.8). In the slow runs the heap was trimmed and grown again all the time: `perf stat`
counted ~3 brk calls and ~86 page faults per MB relayed (each fault the kernel zeroing a fresh page), none
in the fast runs (BENCHMARKS.md, work log).

Fixed thresholds end the guessing: blocks up to MMAP_THRESHOLD come from the heap, and up to
TRIM_THRESHOLD of free heap is kept for the next body instead of being given back and faulted in again.
The cost is memory the process may keep after a burst: at most TRIM_THRESHOLD above what it uses.
A MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ environment variable (glibc's own tunables) wins.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")  # in GLIBC_TUNABLES


def _set_by_environment() -> list[str]:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return [n for n in _VARIABLES if n in os.environ] + [t for t in _TUNABLES if t in tunables]


def tune() -> str:
    """Fix the thresholds if this is glibc and the environment does not set them; says what was done."""
    if found := _set_by_environment():
        return "left to the environment (" + ", ".join(found) + ")"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "not glibc: left as they are"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return "mallopt refused: left as they are"
    mib = 1024 * 1024
    return f"mmap threshold {MMAP_THRESHOLD // mib} MiB, trim threshold {TRIM_THRESHOLD // mib} MiB"
