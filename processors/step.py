"""The steps of a batch the batch loop (processors.batch_loop) builds on: its insert, erasures, a last write."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, TypeVar

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


T = TypeVar("T")


class _TableWatch(Generic[T]):
    """Keeps a processor in step with a table that other processes write: everything at the first batch,
    then what was recorded lately, at most every `every` seconds. The look-back (an hour before the
    latest record seen) covers the clock of the machine that wrote it being behind this one's. A read
    that fails (ClickHouse unreachable: the batch's own insert will say so) is tried with the next batch."""

    LOOK_BACK = 3600.0
    WHAT = ""

    def __init__(self, processor: HitProcessor, writer: ClickHouseWriter, every: float = 5.0) -> None:
        self._processor = processor
        self._writer = writer
        self._every = every
        self._since = 0.0
        self._next = 0.0

    async def _read(self, since: float) -> tuple[T, float]:
        """What was recorded at or after `since` (epoch seconds), and the latest record's time."""
        raise NotImplementedError

    def _apply(self, got: T) -> None:
        raise NotImplementedError

    async def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            got, latest = await self._read(max(0.0, self._since - self.LOOK_BACK))
        except Exception as exc:
            log.warning("%s not read (%s); trying again with the next batch", self.WHAT, exc)
            self._next = now
            return
        self._apply(got)
        self._since = max(self._since, latest)


class ErasureWatch(_TableWatch[set[str]]):
    """Keeps a processor's erased recipients in step with the `erasures` table, which `pixeltrack forget`
    writes from anywhere."""

    WHAT = "erasures"

    async def _read(self, since: float) -> tuple[set[str], float]:
        return await self._writer.erasures(since)

    def _apply(self, got: set[str]) -> None:
        self._processor.forget_recipients(got)


class ConsentWatch(_TableWatch[list[tuple[str, str, str]]]):
    """Keeps a processor's withdrawn consents in step with the `consents` table (HitProcessor.consents_changed):
    every recipient whose consent is not granted at the first batch, then those whose consent changed
    lately (by the change's time). A change recorded with a time further back than the look-back is read
    at the processor's next start."""

    WHAT = "consents"

    async def _read(self, since: float) -> tuple[list[tuple[str, str, str]], float]:
        return await self._writer.consents(since)

    def _apply(self, got: list[tuple[str, str, str]]) -> None:
        self._processor.consents_changed(got)
