"""The router's shared deadlines (engine/deadlines.py), on a real uvloop loop: when an owner is called,
that a removed owner is not, that an owner may add itself again, and that one failing owner does not cost
the others their deadline. Every wait is bounded by asyncio.wait_for."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from shiftroute.engine.deadlines import RING, SLOTS_PER_SECOND, Deadlines

SLOT = 1 / SLOTS_PER_SECOND


class Owner:
    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = "") -> None:
        self.loop = loop
        self.name = name
        self.called_at: list[float] = []
        self.fired = asyncio.Event()

    def on_deadline(self) -> None:
        self.called_at.append(self.loop.time())
        self.fired.set()


class Failing(Owner):
    def on_deadline(self) -> None:
        super().on_deadline()
        raise RuntimeError("owner failed")


class Again(Owner):
    """Adds itself again once, with a deadline that has already passed: called again in a later slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        super().__init__(loop)
        self.deadlines = deadlines

    def on_deadline(self) -> None:
        super().on_deadline()
        if len(self.called_at) == 1:
            self.deadlines.add(self, self.loop.time() - 1.0)


def run(coro: object) -> None:
    uvloop.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


def test_owners_are_called_after_their_deadline_never_before_and_at_most_a_slot_late() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        owners = [(Owner(loop), loop.time() + delay) for delay in (0.05, 0.02, 0.13, 0.02)]
        for owner, when in owners:
            deadlines.add(owner, when)
        assert len(deadlines) == 4
        await asyncio.gather(*(owner.fired.wait() for owner, _ in owners))
        for owner, when in owners:
            assert len(owner.called_at) == 1
            assert owner.called_at[0] >= when
            assert owner.called_at[0] <= when + SLOT + 0.05  # a slot and the loop's own lateness
        assert len(deadlines) == 0

    run(main())


def test_a_removed_owner_is_not_called_and_the_others_still_are() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        removed, kept = Owner(loop), Owner(loop)
        slot = deadlines.add(removed, loop.time() + 0.03)
        deadlines.add(kept, loop.time() + 0.03)
        deadlines.remove(removed, slot)
        deadlines.remove(removed, slot)  # twice: nothing happens
        await kept.fired.wait()
        await asyncio.sleep(3 * SLOT)
        assert removed.called_at == []
        assert len(kept.called_at) == 1

    run(main())


def test_a_slot_emptied_by_removal_needs_no_call() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        alone = Owner(loop)
        deadlines.remove(alone, deadlines.add(alone, loop.time() + 0.02))
        later = Owner(loop)
        deadlines.add(later, loop.time() + 0.08)
        await later.fired.wait()
        assert alone.called_at == [] and len(deadlines) == 0

    run(main())


def test_an_owner_adding_itself_again_while_called_is_called_again_later() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        owner = Again(loop, deadlines)
        deadlines.add(owner, loop.time() + 0.01)
        while len(owner.called_at) < 2:
            await asyncio.sleep(SLOT)
        assert owner.called_at[1] > owner.called_at[0]  # in a later slot, not again in the same firing

    run(main())


def test_an_owner_that_fails_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        owners = [Failing(loop, "a"), Owner(loop, "b"), Failing(loop, "c")]
        when = loop.time() + 0.02
        for owner in owners:
            deadlines.add(owner, when)  # the same slot
        await asyncio.gather(*(owner.fired.wait() for owner in owners))
        # A later deadline is still served: the timer was scheduled again after the failures.
        after = Owner(loop)
        deadlines.add(after, loop.time() + 0.02)
        await after.fired.wait()

    run(main())
    failures = [r for r in caplog.records if r.getMessage().startswith("deadline handler of")]
    assert len(failures) == 2


def test_an_earlier_deadline_added_later_moves_the_timer_forward() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        late, early = Owner(loop), Owner(loop)
        deadlines.add(late, loop.time() + 5.0)
        started = loop.time()
        deadlines.add(early, started + 0.02)
        await early.fired.wait()
        assert loop.time() - started < 1.0  # not held behind the 5 s timer
        assert late.called_at == []

    run(main())


def test_move_keeps_an_entry_that_fires_first_and_moves_one_that_would_fire_late() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        owner = Owner(loop)
        now = loop.time()
        slot = deadlines.move(owner, 0, now + 5.0)  # not yet in: added
        assert slot and len(deadlines) == 1
        assert deadlines.move(owner, slot, now + 60.0) == slot  # later: stays, fires first
        earlier = deadlines.move(owner, slot, now + 0.02)  # earlier: moved
        assert earlier < slot and len(deadlines) == 1
        await owner.fired.wait()
        assert owner.called_at[0] >= now + 0.02 and len(owner.called_at) == 1

    run(main())


def test_a_slot_emptied_and_filled_again_is_queued_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        when = loop.time() + 0.05
        owners = [Owner(loop) for _ in range(50)]
        for owner in owners:  # a connection opened and closed, then the next one, in the same slot
            deadlines.remove(owner, deadlines.add(owner, when))
        last = Owner(loop)
        deadlines.add(last, when)
        assert len(deadlines._order) == 1  # the slot's number is in the heap once, not 51 times
        await last.fired.wait()
        assert all(owner.called_at == [] for owner in owners)
        assert not deadlines._order and not deadlines._queued

    run(main())


def test_slots_a_ring_apart_share_no_place_and_each_fires_in_turn() -> None:
    """Slots RING slots apart map to the same place in the ring: the second is kept apart (`_far`), and
    each fires, or is removed, on its own. The far slot here is RING slots *earlier* (already ended, so
    it fires at once); a later one would take 164 s to see."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        ring_span = RING * SLOT
        near, early, early_removed = Owner(loop, "near"), Owner(loop, "early"), Owner(loop, "removed")
        when = loop.time() + 0.05
        slot = deadlines.add(near, when)
        early_slot = deadlines.add(early, when - ring_span)
        assert early_slot == slot - RING and deadlines._far  # the same place: kept apart
        assert deadlines.add(early_removed, when - ring_span) == early_slot
        deadlines.remove(early_removed, early_slot)
        far_later = Owner(loop, "far later")
        far_slot = deadlines.add(far_later, when + ring_span)  # 164 s ahead, the same place again
        assert far_slot == slot + RING and len(deadlines) == 3
        await early.fired.wait()
        assert near.called_at == []  # its own slot has not ended
        await near.fired.wait()
        assert near.called_at[0] >= when
        assert len(early.called_at) == 1 and early_removed.called_at == []
        assert len(deadlines) == 1  # the far later one waits
        deadlines.remove(far_later, far_slot)
        assert len(deadlines) == 0 and not deadlines._far

    run(main())


def test_a_place_freed_finds_the_slot_kept_apart_again() -> None:
    """Once the ring's place is free, a deadline for a slot kept apart joins that slot (found in `_far`),
    not a second copy of it in the ring."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        when = loop.time() + 0.05
        first, apart, joining = Owner(loop), Owner(loop), Owner(loop)
        slot = deadlines.add(first, when)
        apart_slot = deadlines.add(apart, when + RING * SLOT)
        deadlines.remove(first, slot)  # the place is free now
        assert deadlines.add(joining, when + RING * SLOT) == apart_slot
        assert len(deadlines._far) == 1 and len(deadlines) == 2
        deadlines.remove(apart, apart_slot)
        deadlines.remove(joining, apart_slot)
        assert len(deadlines) == 0 and not deadlines._far

    run(main())
