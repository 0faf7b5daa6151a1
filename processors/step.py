"""The steps of a batch the batch loop (processors.batch_loop) builds on: its insert, erasures, a last write."""

from __future__ import annotations

import asyncio
import logging
import time

from processors import metrics
from processors.pipeline import BatchOutput, HitProcessor
from processors.writer import ClickHouseWriter

log = logging.getLogger(__name__)

WRITE_FINISH_TIMEOUT = 60.0  # a batch's insert (and publish and commit), when a rebalance or an ending waits on it


async def write_batch(writer: ClickHouseWriter, out: BatchOutput, token: str) -> None:
    """Inserts a processed batch's rows under the dedup `token`; returns once ClickHouse has them."""
    started = time.perf_counter()
    await writer.write(out.tables(), token)
    metrics.BATCH_SECONDS.labels("insert").observe(time.perf_counter() - started)


async def let_finish(task: asyncio.Task[None] | None, timeout: float) -> None:
    """A runner is ending on an error while a batch's write is in flight: the insert may still be running
    on the writer's thread, where a cancel cannot stop it. It gets `timeout` seconds to land (and, in
    Kafka, to commit, which is safe after its own insert) before the runner goes on leaving; a failure
    of its own is logged, since the error the runner is ending on is raised."""
    if task is None:
        return
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.error("stopping: the batch in flight is not written after %.0f s; leaving it", timeout)
        task.cancel()
    elif not task.cancelled() and task.exception() is not None:
        log.error("stopping: the batch in flight failed too: %r", task.exception())


class ErasureWatch:
    """Keeps a processor's erased recipients in step with the `erasures` table, which `pixeltrack forget`
    writes from anywhere: all of them at the first batch, then those recorded lately, at most every
    `every` seconds. The look-back (an hour before the latest erasure seen) covers the clock of the
    machine that ran forget being behind this one's."""

    LOOK_BACK = 3600.0

    def __init__(self, processor: HitProcessor, writer: ClickHouseWriter, every: float = 5.0) -> None:
        self._processor = processor
        self._writer = writer
        self._every = every
        self._since = 0.0
        self._next = 0.0

    async def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            hashes, latest = await self._writer.erasures(max(0.0, self._since - self.LOOK_BACK))
        except Exception as exc:  # ClickHouse unreachable: the batch's own insert will say so
            log.warning("erasures not read (%s); trying again with the next batch", exc)
            self._next = now
            return
        self._processor.forget_recipients(hashes)
        self._since = max(self._since, latest)


class ConsentWatch:
    """Keeps a processor's withdrawn consents in step with the `consents` table (HitProcessor.consents_changed):
    every recipient whose consent is not granted at the first batch, then those whose consent changed
    lately (by the change's time, an hour's look-back), at most every `every` seconds. A change recorded
    with a time further back than that is read at the processor's next start."""

    LOOK_BACK = 3600.0

    def __init__(self, processor: HitProcessor, writer: ClickHouseWriter, every: float = 5.0) -> None:
        self._processor = processor
        self._writer = writer
        self._every = every
        self._since = 0.0
        self._next = 0.0

    async def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            changes, latest = await self._writer.consents(max(0.0, self._since - self.LOOK_BACK)
                                                          if self._since else 0.0)
        except Exception as exc:  # ClickHouse unreachable (or a writer without consents): next batch
            log.warning("consents not read (%s); trying again with the next batch", exc)
            self._next = now
            return
        self._processor.consents_changed(changes)
        self._since = max(self._since, latest)
