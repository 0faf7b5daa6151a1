"""The embedded runner: the same pipeline fed from an in-process queue in place of Kafka."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from processors.pipeline import HitProcessor
from processors.step import process_and_write
from processors.writer import ClickHouseWriter
from schemas.records import Record


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
    """Takes batches off the bus, processes and inserts them; dead letters loop back onto the bus
    as they would through Kafka's hits.dlq."""

    def __init__(self, bus: asyncio.Queue[Record], processor: HitProcessor, writer: ClickHouseWriter,
                 max_records: int = 5000, max_ms: int = 200,
                 on_classified: Callable[[list[Record]], Awaitable[None]] | None = None) -> None:
        """`on_classified` receives each batch's classified events after its insert (the embedded
        wiring's stand-in for the events.classified topic)."""
        self._bus = bus
        self._processor = processor
        self._writer = writer
        self._max_records = max_records
        self._max_ms = max_ms
        self._on_classified = on_classified
        self._run_id = os.urandom(6).hex()
        self._seq = 0
        self.rows_written = 0

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

    async def _handle(self, batch: list[Record]) -> None:
        first = self._seq
        records = [LocalRecord(r.topic, -1, first + i, r.value, r.headers) for i, r in enumerate(batch)]
        self._seq += len(batch)
        out = await process_and_write(self._processor, self._writer, records,
                                      f"local:{self._run_id}:{first}-{self._seq - 1}")
        self.rows_written += sum(len(t.rows) for t in out.tables())
        for letter in out.to_dlq:
            self._bus.put_nowait(letter)
        if self._on_classified is not None and out.classified:
            await self._on_classified(out.classified)

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; a batch taken off the bus is always written before returning."""
        while not stop.is_set():
            batch = await self._take(stop)
            if batch:
                await self._handle(batch)

    async def drain(self) -> None:
        """Processes whatever is on the bus now (after the edge stopped), including looped-back letters."""
        while not self._bus.empty():
            batch: list[Record] = []
            while not self._bus.empty() and len(batch) < self._max_records:
                batch.append(self._bus.get_nowait())
            await self._handle(batch)
