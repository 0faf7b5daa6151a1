"""Garbage-collector settings for long-running processors."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Young-generation threshold: above what a batch allocates and keeps (about a dozen objects a hit for
# up to 20,000-record batches), so the collector does not run in the middle of one (see BatchGc).
YOUNG_THRESHOLD = 1_000_000
# Seconds between the full collections that reclaim reference cycles among frozen objects.
FULL_COLLECTION_EVERY = 300.0


class BatchGc:
    """The collector's schedule for a processor: after each batch, what the batch kept (the classifier's
    state, caches, rows on their way to ClickHouse) is frozen out of the collector's reach, and every
    `full_every` seconds one full collection reclaims whatever cycles were frozen meanwhile.

    Why: a processor keeps about ten objects of every hit for minutes (its Hit, its classifier state,
    its cached token), and the collector re-walked each of them at every young collection until it
    was old, touching every field (half a microsecond an object, cache-cold): a sixth of a processor's
    time (bench_pipeline). Reference counting frees nearly everything a processor makes; processing
    200,000 hits left no cyclic garbage at all (the library's own cycles, an exception's traceback
    say, wait for the next full collection). The full collection walks everything once: one to
    two seconds with the classifier's state at its bound (1.6 s measured over 1.9 million objects),
    every five minutes by default.
    """

    def __init__(self, full_every: float = FULL_COLLECTION_EVERY, clock: Callable[[], float] = time.monotonic,
                 collect_young: bool = False) -> None:
        """`collect_young`: collect the young generation before each freeze, for a process that also
        makes cyclic garbage of its own between batches (`serve`: the edge leaves about a kilobyte of
        cycles per closed connection), at the cost of walking the batch's survivors once."""
        self._full_every = full_every
        self._clock = clock
        self._collect_young = collect_young
        self._last_full = clock()
        self.full_collections = 0

    def after_batch(self) -> None:
        now = self._clock()
        if now - self._last_full >= self._full_every:
            gc.unfreeze()
            started = time.perf_counter()
            found = gc.collect()
            log.debug("full collection: %d unreachable objects in %.0f ms", found,
                      (time.perf_counter() - started) * 1000)
            self._last_full = now
            self.full_collections += 1
        elif self._collect_young:
            gc.collect(0)
        gc.freeze()


def tune_gc_for_batches(collect_young: bool = False) -> BatchGc:
    """Freezes what start-up allocated (settings, parsers, network lists, caches) out of the collector's
    reach and raises the young-generation threshold above a batch's allocations; returns the schedule
    the runner keeps after each batch (BatchGc, `collect_young` as there). Reference counting still
    frees almost everything at once; only cycles wait longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 50)
    return BatchGc(collect_young=collect_young)
