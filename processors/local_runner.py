"""The embedded runner: the same pipeline fed from an in-process queue in place of Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processors.gc_tuning import BatchGc
from processors.pipeline import BatchOutput, HitProcessor
from processors.step import WRITE_FINISH_TIMEOUT, ErasureWatch, let_finish, write_batch
from processors.writer import ClickHouseWriter
from schemas.records import Record

log = logging.getLogger(__name__)

RETRY_MAX_DELAY = 30.0  # seconds between a failing batch's further tries, at most


@dataclass(frozen=True, slots=True)
class LocalRecord:
    """A bus record with the attributes the pipeline reads from aiokafka's records. Partition -1
    marks it as not from Kafka, so it never moves the stored consumer positions."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class LocalRunner:
    """Takes batches off the bus, processes each while the previous one is inserted, and inserts them
    one at a time and in order; dead letters loop back onto the bus after their batch's insert, as
    they would through Kafka's hits.dlq.

    There is no Kafka to fetch a batch again: a batch whose insert keeps failing (a full disk) is
    tried again, with pauses growing to `retry_max_delay`, for as long as the runner runs, and the
    bus holds what arrives meanwhile. Once stopping, a failure is final and `run` raises it.
    """

    def __init__(self, bus: asyncio.Queue[Record], processor: HitProcessor, writer: ClickHouseWriter,
                 max_records: int = 5000, max_ms: int = 200,
                 on_classified: Callable[[list[Record]], Awaitable[None]] | None = None,
                 retry_max_delay: float = RETRY_MAX_DELAY, gc_schedule: BatchGc | None = None) -> None:
        """`on_classified` receives each batch's classified events after its insert (the embedded
        wiring's stand-in for the events.classified topic). `gc_schedule`: kept after each batch is
        processed (processors.gc_tuning; `pixeltrack serve` passes one)."""
        self._bus = bus
        self._processor = processor
        self._writer = writer
        self._max_records = max_records
        self._max_ms = max_ms
        self._on_classified = on_classified
        self._retry_max_delay = retry_max_delay
        self._run_id = os.urandom(6).hex()
        # Record positions start at this run's start in microseconds, not at 0: a dead letter's id is
        # its record's topic:partition:offset, and a restart must not reuse the last run's ids (the
        # dead_letters table keeps one row per id).
        self._seq = time.time_ns() // 1000
        self._writing: asyncio.Task[None] | None = None  # the previous batch's insert and what follows it
        self._erasures = ErasureWatch(processor, writer)
        self._gc = gc_schedule
        self.rows_written = 0
        self.batches_written = 0

    async def _take(self, stop: asyncio.Event) -> list[Record]:
        """Up to max_records, waiting at most max_ms once the first arrived; [] when stopping."""
        batch: list[Record] = []
        deadline: float | None = None
        while len(batch) < self._max_records:
            try:
                batch.append(self._bus.get_nowait())
                if deadline is None:
                    deadline = time.monotonic() + self._max_ms / 1000
                continue
            except asyncio.QueueEmpty:
                pass
            if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                break
            # Polling keeps every record either on the bus or in `batch`, never in a cancelled get().
            await asyncio.sleep(0.002 if batch else 0.01)
        return batch

    async def _written(self) -> None:
        """Waits for the previous batch's insert (and its dead letters and classified events); raises
        what failed it."""
        if self._writing is not None:
            task, self._writing = self._writing, None
            await task

    async def _handle(self, batch: list[Record], stop: asyncio.Event | None) -> None:
        """Processes a batch while the previous one is still being inserted (chDB inserts on the writer's
        thread without holding the GIL, so the two use both cores), then starts its insert once that
        one has landed. `stop`: while it is unset, a failing insert is tried again."""
        first = self._seq
        records = [LocalRecord(r.topic, -1, first + i, r.value, r.headers) for i, r in enumerate(batch)]
        self._seq += len(batch)
        # The batch in flight is answered for from the processor's memory (see KafkaRunner._handle).
        await self._erasures.refresh()
        out = self._processor.process(records, await self._writer.lookup(self._processor.lookups(records)))
        if self._gc is not None:
            self._gc.after_batch()
        await self._written()
        self._writing = asyncio.create_task(
            self._write(out, f"local:{self._run_id}:{first}-{self._seq - 1}", len(records), stop),
            name="pixeltrack-local-write")
        await asyncio.sleep(0)  # let it hand the insert to the writer's thread before the next batch

    async def _write(self, out: BatchOutput, token: str, records: int, stop: asyncio.Event | None) -> None:
        delay = 1.0
        while True:
            try:
                await write_batch(self._writer, out, token)
                break
            except Exception as exc:
                if stop is None or stop.is_set():
                    log.error("a batch of %d records was not written (%s: %s)", records, type(exc).__name__, exc)
                    raise
                # Same token: whatever part of it landed is not stored twice.
                log.error("a batch of %d records could not be written (%s: %s); trying again in %.0f s",
                          records, type(exc).__name__, exc, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()  # a stop cuts the pause short, for one last try
                delay = min(delay * 2, self._retry_max_delay)
        self.rows_written += sum(len(t.rows) for t in out.tables())
        self.batches_written += 1
        for letter in out.to_dlq:
            self._bus.put_nowait(letter)
        if self._on_classified is not None and out.classified:
            await self._on_classified(out.classified)

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; a batch taken off the bus is written (or its failure raised) before
        it returns, and a failed batch ends it at once."""
        try:
            while not stop.is_set():
                batch = await self._take(stop)
                if self._writing is not None and self._writing.done():
                    await self._written()
                if batch:
                    await self._handle(batch, stop)
            await self._written()
        finally:
            task, self._writing = self._writing, None  # set only when ending on an error
            await let_finish(task, WRITE_FINISH_TIMEOUT)

    async def drain(self) -> None:
        """Processes whatever is on the bus now (after the edge stopped), including looped-back letters."""
        while True:
            await self._written()  # its dead letters join the bus first
            if self._bus.empty():
                return
            batch: list[Record] = []
            while not self._bus.empty() and len(batch) < self._max_records:
                batch.append(self._bus.get_nowait())
            await self._handle(batch, None)
