"""The router's garbage-collector settings (shiftroute.engine.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shiftroute.engine import gc_tuning


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_freezes_what_lives_and_raises_the_thresholds() -> None:
    module_dict = vars(gc_tuning)  # a start-up object: alive for the process's lifetime
    frozen = gc_tuning.tune()
    assert frozen == gc.get_freeze_count() > 1000  # the interpreter's and the test run's own objects
    assert gc.get_threshold() == (
        gc_tuning.YOUNG_THRESHOLD,
        gc_tuning.OLDER_THRESHOLD,
        gc_tuning.OLDER_THRESHOLD,
    )
    assert not any(obj is module_dict for obj in gc.get_objects())  # frozen: no longer walked


@pytest.mark.usefixtures("restore_gc")
def test_garbage_of_the_start_up_is_collected_not_frozen() -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]  # a reference cycle: only the collector frees it
    del a, b
    gc_tuning.tune()
    assert not any(type(obj) is Node for obj in gc.get_objects())
    gc.unfreeze()
    assert not any(type(obj) is Node for obj in gc.get_objects())  # not frozen either: gone
