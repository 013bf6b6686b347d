"""The cyclic garbage collector, set for a long-running router process.

CPython's defaults (threshold 700, 10, 10) collect the youngest generation every 700 net allocations of
container objects. A new TLS connection allocates a few hundred (protocol, TLS objects, session, exchange,
heads, timers), so under a stream of short connections the collector ran every few connections, found
the few that were still open, promoted them, and every so often walked every object in the process: the
modules, the configuration, the routing table. On the full-handshake benchmark that was ~4 % of the
router's CPU (perf: gc_collect_main and its visitors), about 45 µs of ~500 µs per edge handshake
(BENCHMARKS.md, work log).

Two changes, the usual ones for long-running CPython servers:
- `gc.freeze()` once the process has started: what exists then (imported modules, options, the default
  certificate's context) lives as long as the process, and the collector no longer walks it;
- a young-generation threshold of 20 000: most per-connection objects are freed by reference counting
  before a collection would see them, so collections are rarer and find less to promote.
Reference counting still frees almost everything at once; only reference cycles wait for a collection.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLD = 20  # collections of the younger generation between collections of the next one


def tune() -> int:
    """Collect once, freeze what survives, raise the thresholds; the number of objects frozen."""
    gc.collect()  # so that no garbage of the start-up is frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    return gc.get_freeze_count()
