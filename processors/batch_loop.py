"""The one batch loop of both runners: fetch, process, publish, insert, commit, over a transport.

A batch goes through these steps, in this order, whatever carries it (Kafka in `pixeltrack process`,
the in-process bus in `pixeltrack serve`):

1. fetched from the transport (`Transport.fetch`: Kafka's consumer group, the bus);
2. processed (`HitProcessor.process`), after ClickHouse is asked what it needs (`lookups`); this runs
   while the previous batch is still being inserted, and the processor answers for that one from
   memory (its hit ids, sends and conversion keys), since ClickHouse cannot yet. The processor's own
   dead letters (a record that does not decode, a bad token, an unattributed conversion) are rows of
   this batch, sampled and counted as the letters the edge sends through hits.dlq are;
3. its side outputs published and acknowledged (`Transport.publish`: the classified events, to
   events.classified or to the embedded triggers);
4. inserted into ClickHouse under the batch's dedup token (`Transport.token`: its source positions),
   one batch at a time and in order;
5. committed (`Transport.commit`: Kafka's offsets), only after the insert returned.

Why this order: a crash after the insert is never read again (the next owner resumes after the
positions ClickHouse holds), so a side output sent after it would be lost; a crash before it re-sends
the batch's side outputs with the batch (at least once into topics: classified events carry hit ids
and revisions). The insert is exactly once: its token makes a retried or replayed batch land once.

A batch whose insert fails: with `retry_max_delay` None (Kafka) the loop ends with the error, the batch
uncommitted, and the next run reads it again; with a delay (the bus, which cannot fetch it again) it is
tried again under the same token, pauses growing to `retry_max_delay`, for as long as `stop` is unset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from processors.pipeline import BatchOutput, HitProcessor, SourceRecord
from processors.step import WRITE_FINISH_TIMEOUT, ConsentWatch, ErasureWatch, let_finish, write_batch
from processors.writer import ClickHouseWriter
from schemas.runtime import BatchGc

log = logging.getLogger(__name__)

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Batch(Generic[P]):
    """Records fetched together, the insert dedup token naming their positions, and what the transport
    needs to commit them (Kafka: each partition's first and last offset)."""

    records: Sequence[SourceRecord]
    token: str
    positions: P


class Transport(Protocol[P]):
    """What carries batches to the loop and its side outputs away."""

    async def fetch(self, stop: asyncio.Event) -> Batch[P] | None:
        """The next batch, or None when none came within the transport's wait (or `stop` is set)."""
        ...

    async def publish(self, out: BatchOutput) -> None:
        """Sends a batch's side outputs (its classified events); returns once they are acknowledged."""
        ...

    async def commit(self, batch: Batch[P]) -> None:
        """Records that `batch` is written (called after its insert returned)."""
        ...


class BatchLoop(Generic[P]):
    """Runs batches from a transport through a processor into ClickHouse in the module's order."""

    def __init__(self, transport: Transport[P], processor: HitProcessor, writer: ClickHouseWriter, *,
                 retry_max_delay: float | None = None, gc_schedule: BatchGc | None = None,
                 after_insert: Callable[[int], Awaitable[None]] | None = None,
                 task_name: str = "pixeltrack-processor-write") -> None:
        """`after_insert(batch_number)` runs after a batch's insert and before its commit: a fault
        injection point for tests (raising there is a crash between insert and commit). `gc_schedule`:
        kept after each batch is processed (schemas.runtime)."""
        self._transport = transport
        self._processor = processor
        self._writer = writer
        self._retry_max_delay = retry_max_delay
        self._gc = gc_schedule
        self._after_insert = after_insert
        self._task_name = task_name
        self._erasures = ErasureWatch(processor, writer)
        self._consents = ConsentWatch(processor, writer)
        self._writing: asyncio.Task[None] | None = None  # the previous batch's publish, insert and commit
        self._unwritten = 0  # batches fetched and not yet committed
        # Set while no fetched batch waits to be committed: a Kafka rebalance waits on it before it gives
        # partitions up, so their next owner reads positions that include every batch fetched here.
        self.all_written = asyncio.Event()
        self.all_written.set()
        self.batches_done = 0
        self.records_done = 0  # records whose batch was inserted and committed
        self.rows_written = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; a fetched batch is written and committed (or its failure raised)
        before it returns, and a failed batch ends it at once."""
        try:
            while not stop.is_set():
                batch = await self._transport.fetch(stop)
                if self._writing is not None and self._writing.done():
                    await self._written()  # a failed write ends the loop now, not a batch later
                if batch is not None:
                    await self._handle(batch, stop)
            await self._written()  # stopping: the last batch is inserted and committed first
        finally:
            task, self._writing = self._writing, None  # set only when ending on an error
            await let_finish(task, WRITE_FINISH_TIMEOUT)  # before the transport closes (see let_finish)

    async def handle(self, batch: Batch[P]) -> None:
        """Processes one batch and starts its write, outside `run` (a drain after it ended): a failing
        insert is not tried again. `written()` waits for it."""
        await self._handle(batch, None)

    async def written(self) -> None:
        """Waits for the batch in flight to be published, inserted and committed; raises what failed it."""
        await self._written()

    async def _written(self) -> None:
        if self._writing is not None:
            task, self._writing = self._writing, None
            await task

    async def _handle(self, batch: Batch[P], stop: asyncio.Event | None) -> None:
        """Processes a batch while the previous one is still being inserted (the insert waits on the
        writer's thread or on the server, not on this loop: chDB inserts without holding the GIL), then,
        once that one is committed, starts this one's write. Writes stay one at a time and in order."""
        records = batch.records
        self._unwritten += 1
        self.all_written.clear()
        try:
            # ClickHouse's answers cannot include the batch in flight; the processor remembers what that
            # batch held and answers for it from memory.
            await self._erasures.refresh()
            await self._consents.refresh()
            out = self._processor.process(records, await self._writer.lookup(self._processor.lookups(records)))
            if self._gc is not None:
                self._gc.after_batch()
            await self._written()
        except BaseException:
            self._settled()
            raise
        self._writing = asyncio.create_task(self._write(batch, out, stop), name=self._task_name)
        # Let it hand its insert to the writer's thread now: the next fetch may return without
        # suspending (records already fetched), and the next batch would be processed first.
        await asyncio.sleep(0)

    async def _write(self, batch: Batch[P], out: BatchOutput, stop: asyncio.Event | None) -> None:
        try:
            await self._transport.publish(out)  # side outputs before the insert (the module's order)
            await self._insert(out, batch, stop)
            if self._after_insert is not None:
                await self._after_insert(self.batches_done)
            await self._transport.commit(batch)  # only after the insert returned
            self.batches_done += 1
            self.records_done += len(batch.records)
            self.rows_written += sum(len(t.rows) for t in out.tables())
        finally:
            self._settled()  # also when it failed: the loop then ends, and a rebalance must not wait on it

    async def _insert(self, out: BatchOutput, batch: Batch[P], stop: asyncio.Event | None) -> None:
        """Inserts under the batch's token; see the module for what a failure does."""
        delay = 1.0
        while True:
            try:
                await write_batch(self._writer, out, batch.token)
                return
            except Exception as exc:
                if self._retry_max_delay is None:
                    raise
                records = len(batch.records)
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

    def _settled(self) -> None:
        """A fetched batch is committed, or will never be (the loop is ending)."""
        self._unwritten -= 1
        if not self._unwritten:
            self.all_written.set()
