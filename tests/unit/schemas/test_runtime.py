"""The one runtime: run() on uvloop when installed, SIGTERM/SIGINT set the command's stop event, the GC policies."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest

from schemas.runtime import (
    GC_BATCH_THRESHOLD,
    GC_EDGE_THRESHOLD,
    run,
    stop_on_signals,
    tune_gc_for_batches,
    tune_gc_for_edge,
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_sets_the_event_and_the_loop_is_uvloop(sig: signal.Signals) -> None:
    async def main() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stop_on_signals(loop, stop)
        try:
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(stop.wait(), 5)
        finally:
            for s in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(s)
        return type(loop).__module__

    assert run(main()).startswith("uvloop")


def test_each_process_kind_keeps_its_collector_thresholds() -> None:
    tune_gc_for_edge()
    assert gc.get_threshold() == (50_000, 20, 100) == GC_EDGE_THRESHOLD
    schedule = tune_gc_for_batches(collect_young=True)
    assert gc.get_threshold() == (1_000_000, 20, 50) == GC_BATCH_THRESHOLD
    assert schedule.full_collections == 0
    gc.unfreeze()
