"""The cyclic garbage collector's thresholds, set for a long-running router process.

CPython's defaults (700, 10, 10) collect the youngest generation every 700 net allocations of container
objects. A new TLS connection allocates a few hundred (protocol, TLS objects, session, exchange, heads,
timers), so under a stream of short connections the collector ran every few connections, found the few
that were still open, promoted them, and every so often collected the older generations too. On the
full-handshake edge benchmark perf put gc_collect_main and its visitors at 32 µs of the router's CPU per
connection (of ~500); with a young-generation threshold of 20 000, 6.6 µs (BENCHMARKS.md, work log):
most per-connection objects are freed by reference counting before a collection would see them, so
collections are rarer and find less to promote.

The routing tables and everything alive when one is published are frozen by the controller
(engine/controller.py, `gc.freeze()` after each publish), so the older generations stay small.
Reference counting still frees almost everything at once; only reference cycles wait for a collection.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLD = 20  # collections of the younger generation between collections of the next one


def tune() -> tuple[int, int, int]:
    """Raise the collection thresholds; the thresholds now in force."""
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    return gc.get_threshold()
