"""The one task that moves records from the edge to the transport, through memory or the spool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import NamedTuple

from ingest import metrics
from ingest.publisher import Publisher
from ingest.spool import Position, Spool
from schemas.records import REPLAY_HEADER, Record

log = logging.getLogger(__name__)


class Pending(NamedTuple):
    record: Record
    position: Position | None  # where the spool holds it (None without a spool)


class HitQueue:
    """Bounded in-memory queue between request handlers and the forwarder. `offer` never waits."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize)

    def offer(self, item: Pending) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            metrics.QUEUE_OVERFLOW.inc()
            return False
        return True

    def qsize(self) -> int:
        return self._queue.qsize()

    async def take_batch(self, max_records: int, timeout: float) -> list[Pending]:
        """Waits up to `timeout` for one record, then takes what else is queued, up to max_records."""
        try:
            batch = [await asyncio.wait_for(self._queue.get(), timeout)]
        except TimeoutError:
            return []
        while len(batch) < max_records:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    def take_all(self) -> list[Pending]:
        out: list[Pending] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return out


class Forwarder:
    """Publishes what the edge answered, in order, and never loses it while the disk holds.

    With a spool, every record is on disk (page cache) before its answer is sent, so the in-memory
    queue is only the fast path:
    - direct mode: batches go from the queue to the transport; their spool positions are then acked.
    - catch-up mode, entered when a publish fails or times out, or the queue overflows: the queue is
      dropped (all of it is in the spool) and records are re-read from the spool from the last ack,
      published in order with the replay header, and acked; when the reader reaches the end of the
      spool the forwarder returns to direct mode. Memory stays bounded through any outage.
    Without a spool (the embedded wiring) a failed batch is retried from memory.
    """

    def __init__(self, queue: HitQueue, publisher: Publisher, spool: Spool | None = None,
                 max_batch: int = 2000, publish_timeout: float = 5.0, fsync_interval: float = 0.2) -> None:
        self.queue = queue
        self._publisher = publisher
        self.spool = spool
        self._max_batch = max_batch
        self._publish_timeout = publish_timeout
        self._fsync_interval = fsync_interval
        self.direct = spool is None or spool.pending_bytes() == 0
        self._started = False
        self._backoff = 0.05
        self.dropped = 0

    # --- called by request handlers: never awaits ---
    def submit(self, record: Record) -> bool:
        """Takes a record the edge is about to answer for. False only when the spool is at its bound."""
        position = None
        if self.spool is not None:
            position = self.spool.append(record)
            if position is None:
                self.dropped += 1
                metrics.SPOOL_DROPPED.inc()
                log.error("spool full (%d bytes pending): hit dropped", self.spool.pending_bytes())
                return False
        if self.direct and not self.queue.offer(Pending(record, position)):
            if self.spool is None:
                self.dropped += 1
                return False
            self._enter_catch_up("in-memory queue full")
        return True

    def healthy(self) -> bool:
        return self._started and self.direct and self._publisher.healthy()

    def at_bound(self) -> bool:
        return self.spool is not None and self.spool.pending_bytes() > 0.9 * self.spool.max_bytes

    def _enter_catch_up(self, why: str) -> None:
        if self.direct:
            log.warning("forwarder: catch-up from the spool (%s)", why)
        self.direct = False
        self.queue.take_all()  # every queued record is also in the spool
        metrics.FORWARDER_MODE.set(0)

    async def _publish(self, records: list[Record]) -> bool:
        started = time.perf_counter()
        try:
            if not self._started:
                await asyncio.wait_for(self._publisher.start(), self._publish_timeout)
                self._started = True
            await asyncio.wait_for(self._publisher.publish(records), self._publish_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport's errors are many; each means "not acknowledged"
            metrics.PUBLISH_ERRORS.inc()
            log.warning("publish of %d records failed: %r", len(records), exc)
            if self._started:
                await self._publisher.reset()
                self._started = False
            return False
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        for record in records:
            metrics.PUBLISHED.labels(record.topic).inc()
        self._backoff = 0.05
        return True

    async def _pause(self) -> None:
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, 2.0)

    async def _step_direct(self) -> None:
        batch = await self.queue.take_batch(self._max_batch, timeout=0.1)
        metrics.QUEUE_DEPTH.set(self.queue.qsize())
        if not batch or not self.direct:
            return
        if await self._publish([p.record for p in batch]):
            if self.spool is not None and batch[-1].position is not None:
                self.spool.ack(batch[-1].position)
        elif self.spool is not None:
            self._enter_catch_up("publish failed")
        else:
            for item in batch:  # no spool: keep them in memory, at the front
                self.queue.offer(item)
            await self._pause()

    async def _step_catch_up(self) -> None:
        assert self.spool is not None
        chunk = self.spool.read_from(self.spool.acked, self._max_batch)
        if not chunk:
            # No await between the read and the switch: no handler can append in between.
            self.direct = True
            metrics.FORWARDER_MODE.set(1)
            log.info("forwarder: spool caught up; direct mode")
            return
        replayed = [Record(r.topic, r.key, r.value, ((REPLAY_HEADER, b"1"),)) for r, _ in chunk]
        if await self._publish(replayed):
            self.spool.ack(chunk[-1][1])
            metrics.REPLAYED.inc(len(chunk))
        else:
            await self._pause()

    async def run(self) -> None:
        metrics.FORWARDER_MODE.set(1 if self.direct else 0)
        while True:
            if self.direct:
                await self._step_direct()
            else:
                await self._step_catch_up()
            if self.spool is not None:
                metrics.SPOOL_BYTES.set(self.spool.pending_bytes())
                metrics.SPOOL_SEGMENTS.set(len(self.spool.segments()))

    async def sync_spool(self) -> None:
        """fsync the spool every `fsync_interval`, in a worker thread: a machine crash loses at most
        that window; a killed process loses nothing (the page cache holds every write)."""
        while self.spool is not None:
            await asyncio.sleep(self._fsync_interval)
            fd = self.spool.sync_fd()
            try:
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)

    async def drain(self, timeout: float) -> None:
        """After `run` was cancelled: publish what is left within `timeout`; what is not published
        stays in the spool (fsynced) and is replayed by the next start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.direct and self.queue.qsize() == 0:
                break
            remaining = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._step_direct() if self.direct else self._step_catch_up(), remaining)
        left = self.queue.qsize() if self.spool is None else self.spool.pending_bytes()
        if left:
            log.warning("shutdown: %d %s not published; %s", left, "records" if self.spool is None else "bytes",
                        "lost (no spool)" if self.spool is None else "kept in the spool for the next start")
        if self.spool is not None:
            fd = self.spool.sync_fd()
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
