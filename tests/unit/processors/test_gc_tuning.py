"""The processors' collector schedule: a batch's survivors frozen, cycles reclaimed on schedule."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from schemas.runtime import BatchGc


class Node:
    def __init__(self) -> None:
        self.me: Node | None = self  # a reference cycle: only the collector reclaims it


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process's collector as it was


@pytest.mark.usefixtures("thawed")
def test_what_a_batch_kept_is_frozen_and_cycles_wait_for_the_full_collection() -> None:
    now = [0.0]
    schedule = BatchGc(full_every=300.0, clock=lambda: now[0])
    kept, cycle = Node(), Node()
    kept.me = None
    kept_ref, cycle_ref = weakref.ref(kept), weakref.ref(cycle)
    del cycle
    frozen_before = gc.get_freeze_count()
    schedule.after_batch()
    assert gc.get_freeze_count() > frozen_before
    gc.collect()  # the collector no longer looks at frozen objects
    assert cycle_ref() is not None
    now[0] = 299.0
    schedule.after_batch()
    gc.collect()
    assert cycle_ref() is not None
    assert schedule.full_collections == 0
    now[0] = 300.0
    schedule.after_batch()
    assert cycle_ref() is None
    assert schedule.full_collections == 1
    assert kept_ref() is kept  # reachable objects stay, frozen again
    del kept
    assert kept_ref() is None  # reference counting frees frozen objects as ever


@pytest.mark.usefixtures("thawed")
def test_a_schedule_that_collects_young_reclaims_cycles_at_every_batch() -> None:
    schedule = BatchGc(full_every=300.0, clock=lambda: 0.0, collect_young=True)
    cycle = Node()
    cycle_ref = weakref.ref(cycle)
    del cycle
    schedule.after_batch()
    assert cycle_ref() is None
    assert schedule.full_collections == 0
