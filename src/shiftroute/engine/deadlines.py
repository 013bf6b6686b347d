# cython: annotation_typing=False
"""Every client connection's deadline on one loop timer for the whole router process: the listeners'
(ClientHello, handshake, a passthrough relay's connect and idle tunnel, the fin timeout) and the HTTP
sessions' (request head, body, backend response, keep-alive idle, tunnel idle).

Why not a loop timer per connection: uvloop's `call_at` makes a TimerHandle and a libuv timer (two
allocations and a context copy) and `cancel` closes them again, about 6 µs of a full-handshake
connection's CPU for a deadline that almost never fires (measured with perf on the passthrough handshake
workload: `call_at` was 2 % of the router's samples). HAProxy keeps its timeouts in one tree for the same
reason.

A deadline is kept in a slot of 1/SLOTS_PER_SECOND seconds: a set of owners per slot, the slots' numbers
in a heap, and one loop timer at the end of the earliest slot. A deadline fires in the first loop iteration
after its slot has ended: never early, at most one slot and a millisecond (11 ms) late. A busy router's
timer fires at most SLOTS_PER_SECOND times a second.

A slot's owners are found in a ring of RING places by the slot's number (`number % RING`, about 164 s of
slots): compiled, an add or a remove is a C comparison and a set operation. The slots were a dict keyed
by number, and each add and remove made a Python int for the key and compared it with the stored one
through the int type's equality: with two of each per passthrough connection, about 3 000 of its ~36 000
user-space instructions (callgrind). A slot whose place another slot holds (RING or more slots apart: a
deadline that far ahead while a near one waits) is kept in `_far`, a dict as before.

An owner is any object with an `on_deadline()` method; it keeps the slot number `add` returned (0: none)
and passes it to `remove`. `on_deadline` is called once per `add`, after the owner has been taken out of
the slot, so it may add itself again.
"""

from __future__ import annotations

import asyncio
import logging
from heapq import heappop, heappush
from typing import Protocol

from shiftroute.engine import clock

log = logging.getLogger("shiftroute.engine")

SLOTS_PER_SECOND = 100
_RATE = float(SLOTS_PER_SECOND)  # compiled: a C double (deadlines.pxd), so a slot is computed in C
RING = 1 << 14  # places in the ring of slots: 163.84 s of slots at 100 a second
_MASK = RING - 1


class DeadlineOwner(Protocol):
    def on_deadline(self) -> None: ...


class _Slot:
    """A slot with owners, in its place in the ring: its number (compiled, a C field) and its owners."""

    __slots__ = ("number", "owners")

    def __init__(self, number: int, owners: set[DeadlineOwner]) -> None:
        self.number = number
        self.owners = owners


class Deadlines:
    def __init__(self) -> None:
        self._ring: list[_Slot | None] = [None] * RING  # slot n at n & _MASK, while it has owners
        self._far: dict[int, set[DeadlineOwner]] = {}  # slots whose ring place another slot holds
        self._order: list[int] = []  # a heap of slot numbers; a number may stay after its slot emptied
        self._queued: set[int] = set()  # the numbers in _order: a slot emptied and filled again is in once
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0  # the slot the timer fires for
        self._firing = False
        self._ended = 0  # while firing: the last slot that has ended

    def __len__(self) -> int:
        in_ring = sum(len(entry.owners) for entry in self._ring if entry is not None)
        return in_ring + sum(len(owners) for owners in self._far.values())

    def _owners(self, slot: int) -> set[DeadlineOwner] | None:
        """The owners of slot `slot`, None when it has none."""
        entry = self._ring[slot & _MASK]
        if entry is not None and entry.number == slot:
            return entry.owners
        if self._far:
            return self._far.get(slot)
        return None

    def _take(self, slot: int) -> set[DeadlineOwner] | None:
        """Take slot `slot` out (its owners, None when it has none)."""
        place = slot & _MASK
        entry = self._ring[place]
        if entry is not None and entry.number == slot:
            self._ring[place] = None
            return entry.owners
        if self._far:
            return self._far.pop(slot, None)
        return None

    def move(self, owner: DeadlineOwner, slot: int, when: float) -> int:
        """The owner's deadline is now `when`: `slot` is where it is (0: nowhere), the slot returned is
        where it is from now on. An entry that fires no later than `when`'s slot stays where it is: it
        fires first, and the owner, seeing its later deadline, adds itself again (so a deadline that only
        moves later, as activity moves it, costs no set operations)."""
        new = clock.ticks(when, _RATE) + 1
        if slot:
            if slot <= new:
                return slot
            self.remove(owner, slot)
        return self.add(owner, when)

    def add(self, owner: DeadlineOwner, when: float) -> int:
        """Call `owner.on_deadline()` once, after `when` (loop time); returns the slot to remove it from."""
        # The slot that ends strictly after `when`: slot n ends at n / SLOTS_PER_SECOND.
        slot = clock.ticks(when, _RATE) + 1
        if self._firing and slot <= self._ended:
            slot = self._ended + 1  # re-added while its slot fires: the next one, or it would never end
        owners = self._owners(slot)
        if owners is None:
            owners = set()
            place = slot & _MASK
            if self._ring[place] is None:
                self._ring[place] = _Slot(slot, owners)
            else:
                self._far[slot] = owners  # its place is another slot's, RING or more slots away
            if slot not in self._queued:
                self._queued.add(slot)
                heappush(self._order, slot)
            if not self._firing and (self._timer is None or slot < self._timer_slot):
                self._schedule(slot)
        owners.add(owner)
        return slot

    def remove(self, owner: DeadlineOwner, slot: int) -> None:
        owners = self._owners(slot)
        if owners is not None:
            owners.discard(owner)
            if not owners:
                # Its number stays in the heap: the timer skips it, or fires once for nothing.
                self._take(slot)

    def _schedule(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        # The running loop, asked only here (a new earliest slot, or after firing): the owners' loop.
        loop = asyncio.get_running_loop()
        # A millisecond after the slot's end: uvloop rounds a timer to whole milliseconds, and a timer
        # that fired before its slot ended would find nothing to do.
        self._timer = loop.call_at(slot / _RATE + 0.001, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        ended = self._ended = clock.ticks(loop.time(), _RATE)  # the slots up to this one have ended
        order, queued = self._order, self._queued
        self._firing = True
        try:
            while order and order[0] <= ended:
                slot = heappop(order)
                queued.discard(slot)
                owners = self._take(slot)
                if owners is None:
                    continue
                for owner in owners:
                    try:
                        owner.on_deadline()
                    except Exception:  # one owner's failure must not cost the others their deadlines
                        log.exception("deadline handler of %r failed", owner)
        finally:
            self._firing = False
        while order and self._owners(order[0]) is None:
            queued.discard(heappop(order))  # emptied slots: no timer for them
        if order:
            self._schedule(order[0])
