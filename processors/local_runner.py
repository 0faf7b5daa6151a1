"""The embedded runner: the same pipeline fed from an in-process queue in place of Kafka."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processors.batch_loop import Batch, BatchLoop
from processors.pipeline import BatchOutput, HitProcessor
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.runtime import BatchGc

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


class BusTransport:
    """The batch loop's transport over the in-process bus (processors.batch_loop): takes batches off
    the queue, gives each record a position of this run, and hands classified events to
    `on_classified`. Nothing to commit: the bus forgets a record once it is taken."""

    def __init__(self, bus: asyncio.Queue[Record], max_records: int, max_ms: int,
                 on_classified: Callable[[list[Record]], Awaitable[None]] | None) -> None:
        self._bus = bus
        self._max_records = max_records
        self._max_ms = max_ms
        self._on_classified = on_classified
        self._run_id = os.urandom(6).hex()
        # Record positions start at this run's start in microseconds, not at 0: a dead letter's id is
        # its record's topic:partition:offset, and a restart must not reuse the last run's ids (the
        # dead_letters table keeps one row per id).
        self._seq = time.time_ns() // 1000

    async def fetch(self, stop: asyncio.Event) -> Batch[None] | None:
        """Up to max_records, waiting at most max_ms once the first arrived; None when none came."""
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
        return self._positioned(batch)

    def take_now(self) -> Batch[None] | None:
        """What is on the bus now, up to max_records, without waiting."""
        batch: list[Record] = []
        while not self._bus.empty() and len(batch) < self._max_records:
            batch.append(self._bus.get_nowait())
        return self._positioned(batch)

    def _positioned(self, batch: list[Record]) -> Batch[None] | None:
        if not batch:
            return None
        first = self._seq
        records = [LocalRecord(r.topic, -1, first + i, r.value, r.headers) for i, r in enumerate(batch)]
        self._seq += len(batch)
        return Batch(records, f"local:{self._run_id}:{first}-{self._seq - 1}", None)

    async def publish(self, out: BatchOutput) -> None:
        if self._on_classified is not None and out.classified:
            await self._on_classified(out.classified)

    async def commit(self, batch: Batch[None]) -> None:
        return None


class LocalRunner:
    """Takes batches off the bus through the batch loop (processors.batch_loop, which says the order
    of a batch's steps), as `pixeltrack process` takes them from Kafka: processes each while the
    previous one is inserted, hands its classified events on, then inserts it with its dead letters,
    one at a time and in order.

    There is no Kafka to fetch a batch again: a batch whose insert keeps failing (a full disk) is
    tried again, with pauses growing to `retry_max_delay`, for as long as the runner runs, and the
    bus holds what arrives meanwhile. Once stopping, a failure is final and `run` raises it.
    """

    def __init__(self, bus: asyncio.Queue[Record], processor: HitProcessor, writer: ClickHouseWriter,
                 max_records: int = 5000, max_ms: int = 200,
                 on_classified: Callable[[list[Record]], Awaitable[None]] | None = None,
                 retry_max_delay: float = RETRY_MAX_DELAY, gc_schedule: BatchGc | None = None) -> None:
        """`on_classified` receives each batch's classified events before its insert (the embedded
        wiring's stand-in for the events.classified topic). `gc_schedule`: kept after each batch is
        processed (schemas.runtime; `pixeltrack serve` passes one)."""
        self._transport = BusTransport(bus, max_records, max_ms, on_classified)
        self._loop = BatchLoop(self._transport, processor, writer, retry_max_delay=retry_max_delay,
                               gc_schedule=gc_schedule, task_name="pixeltrack-local-write")

    @property
    def rows_written(self) -> int:
        return self._loop.rows_written

    @property
    def batches_written(self) -> int:
        return self._loop.batches_done

    @property
    def records_done(self) -> int:
        """Records taken off the bus whose batch was inserted."""
        return self._loop.records_done

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; a batch taken off the bus is written (or its failure raised) before
        it returns, and a failed batch ends it at once."""
        await self._loop.run(stop)

    async def drain(self) -> None:
        """Processes whatever is on the bus now (after the edge stopped); a failure is final."""
        while True:
            await self._loop.written()
            batch = self._transport.take_now()
            if batch is None:
                return
            await self._loop.handle(batch)
