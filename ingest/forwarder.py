"""The one task that moves records from the edge's in-memory queue to the transport."""

from __future__ import annotations

import asyncio
import logging
import time

from ingest import metrics
from ingest.publisher import Publisher
from schemas.records import Record

log = logging.getLogger(__name__)


class HitQueue:
    """Bounded in-memory queue between request handlers and the forwarder.

    `offer` never waits: a handler hands its record over and answers. It returns False when the
    queue is full, and the caller decides what happens to that record.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize)

    def offer(self, record: Record) -> bool:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            metrics.QUEUE_OVERFLOW.inc()
            return False
        return True

    def qsize(self) -> int:
        return self._queue.qsize()

    async def take_batch(self, max_records: int) -> list[Record]:
        """Waits for one record, then takes whatever else is already queued, up to max_records."""
        batch = [await self._queue.get()]
        while len(batch) < max_records:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    def take_all(self) -> list[Record]:
        out: list[Record] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return out


class Forwarder:
    """Drains the queue into the publisher in batches, retrying a failed batch with backoff.

    Invariant: a batch leaves memory only after `publish` returned, so a transport failure delays
    records but never loses them while the process lives.
    """

    def __init__(self, queue: HitQueue, publisher: Publisher, max_batch: int = 2000) -> None:
        self._queue = queue
        self._publisher = publisher
        self._max_batch = max_batch
        self._pending: list[Record] = []

    async def _publish(self, batch: list[Record]) -> None:
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                await self._publisher.publish(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the transport's errors are many; every one means "retry"
                metrics.PUBLISH_ERRORS.inc()
                log.warning("publish of %d records failed (%s); retrying in %.2fs", len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
            for record in batch:
                metrics.PUBLISHED.labels(record.topic).inc()
            return

    async def run(self) -> None:
        while True:
            self._pending = await self._queue.take_batch(self._max_batch)
            metrics.QUEUE_DEPTH.set(self._queue.qsize())
            await self._publish(self._pending)
            self._pending = []

    async def drain(self, timeout: float) -> int:
        """After `run` was cancelled: publish what is in flight and queued, within `timeout` seconds.
        Returns how many records could not be published in time."""
        leftover = self._pending + self._queue.take_all()
        self._pending = []
        if not leftover:
            return 0
        try:
            await asyncio.wait_for(self._publish(leftover), timeout)
        except TimeoutError:
            log.error("shutdown: %d records not published within %.1fs", len(leftover), timeout)
            return len(leftover)
        return 0
