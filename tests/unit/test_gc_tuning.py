"""The router's garbage-collector thresholds (shiftroute.engine.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shiftroute.engine import gc_tuning


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_raises_the_thresholds() -> None:
    assert gc_tuning.tune() == gc.get_threshold() == (20_000, 20, 20)


@pytest.mark.usefixtures("restore_gc")
def test_reference_cycles_are_still_collected() -> None:
    class Node:
        pass

    gc_tuning.tune()
    gc.collect()  # counts start from zero: no collection before the allocations below
    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    del a, b
    assert any(type(obj) is Node for obj in gc.get_objects())
    keep = [[] for _ in range(gc_tuning.YOUNG_THRESHOLD + 1000)]  # allocations that cross the threshold
    assert not any(type(obj) is Node for obj in gc.get_objects())  # a collection ran by itself
    assert len(keep) > gc_tuning.YOUNG_THRESHOLD
