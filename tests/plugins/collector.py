"""Every test leaves the garbage collector as it found it: a processor's wiring (schemas.runtime)
freezes objects and raises the collector's thresholds for the whole process, which would change how
later tests see garbage."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    if gc.get_freeze_count() or gc.get_threshold() != threshold:
        gc.unfreeze()
        gc.set_threshold(*threshold)
