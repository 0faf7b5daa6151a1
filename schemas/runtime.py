"""How a pixeltrack process runs: its event loop (uvloop when installed), its stop signals, its collector policy.

One place for what every long-running command does the same way (`serve`, `edge` and its workers, `process`,
`api`, `triggers`, `dashboard`). It lives in schemas/ because ingest/ and processors/ both use it and may
import only schemas/.

The collector policy has two settings, one per kind of process, because their heaps differ:

- an edge (tune_gc_for_edge): young collections every 50,000 allocations (GC_EDGE_THRESHOLD). Its objects
  are short-lived (a request, its record, a queue entry) over a heap of aiohttp and aiokafka objects
  that never die; nothing is frozen after start-up.
- a processor (tune_gc_for_batches): young collections every 1,000,000 allocations (GC_BATCH_THRESHOLD),
  above what a batch allocates and keeps, and what each batch kept frozen after it (BatchGc), with a
  full collection every FULL_COLLECTION_EVERY seconds for the cycles frozen meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` to its end on a fresh event loop: uvloop's when it is installed (it is a dependency
    where it builds), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)
    return uvloop.run(coro)


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set `stop` (the command then shuts down in its own order). Where the loop cannot
    take signal handlers (not the main thread, a loop without them), nothing is installed: the caller's
    `stop` is then its only way to end."""
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


# --- the edge -------------------------------------------------------------------------------------------

GC_EDGE_THRESHOLD = (50_000, 20, 100)


def tune_gc_for_edge() -> None:
    """After start-up: move what exists to the permanent generation (gc.freeze) and collect young
    objects every 50,000 allocations instead of 700. A hit allocates a few dozen short-lived objects
    (request, headers, record, queue entry), and at thousands of hits a second the default thresholds
    run a collection every few requests over a heap of aiohttp and aiokafka objects that never die.
    Measured on one core (bench/bench_edge.py conditions): about 6,000 -> 8,000-9,000 answered req/s
    and a third less CPU per request. Reference cycles are still collected, later and in bigger
    batches; RSS through a 60 s Kafka outage stays far under the 150 MB bound (bench/bench_faults.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_EDGE_THRESHOLD)


# --- processors (batches) -------------------------------------------------------------------------------

# Young-generation threshold: above what a batch allocates and keeps (about a dozen objects a hit for
# up to 20,000-record batches), so the collector does not run in the middle of one (see BatchGc).
YOUNG_THRESHOLD = 1_000_000
GC_BATCH_THRESHOLD = (YOUNG_THRESHOLD, 20, 50)
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
    gc.set_threshold(*GC_BATCH_THRESHOLD)
    return BatchGc(collect_young=collect_young)
