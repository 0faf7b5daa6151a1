"""The one task that moves records from the edge to the transport, through memory or the spool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import NamedTuple

from ingest import metrics
from ingest.publisher import Publisher
from ingest.spool import Position, Spool
from schemas.records import REPLAY_HEADER, Record

log = logging.getLogger(__name__)
REPLAYED_HEADERS = ((REPLAY_HEADER, b"1"),)


class Pending(NamedTuple):
    record: Record
    position: Position | None  # where the spool holds it (None without a spool)


class HitQueue:
    """Bounded in-memory queue between request handlers and the forwarder. `offer` never waits.

    A deque plus one waiter future, not asyncio.Queue: the handlers' side is an append and, only when
    the forwarder sleeps on an empty queue, one set_result; the forwarder takes whole batches."""

    def __init__(self, maxsize: int, max_bytes: int | None = None) -> None:
        self._items: deque[Pending] = deque()
        self._maxsize = maxsize
        self._max_bytes = max_bytes  # bound on the records' values too (None: the count only)
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, item: Pending) -> bool:
        size = len(item.record.value)
        if len(self._items) >= self._maxsize or (self._max_bytes is not None and self._bytes + size > self._max_bytes):
            metrics.QUEUE_OVERFLOW.inc()
            return False
        self._items.append(item)
        self._bytes += size
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    def qsize(self) -> int:
        return len(self._items)

    async def take_batch(self, max_records: int, timeout: float, linger: float = 0.0) -> list[Pending]:
        """Waits up to `timeout` for a record; then, if fewer than max_records are queued, up to `linger`
        more for others (fewer, bigger batches: less CPU per record); takes up to max_records."""
        items = self._items
        if not items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                return []
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        if linger > 0 and len(items) < max_records:
            await asyncio.sleep(linger)
        n = min(max_records, len(items))
        batch = [items.popleft() for _ in range(n)]
        self._bytes -= sum(len(p.record.value) for p in batch)
        return batch

    def put_back(self, items: list[Pending]) -> None:
        """Returns a batch taken by take_batch to the front, in order, past the bound if need be (it was
        within it when taken): a failed publish loses nothing, and nothing overtakes it."""
        self._items.extendleft(reversed(items))
        self._bytes += sum(len(p.record.value) for p in items)

    def take_all(self) -> list[Pending]:
        out = list(self._items)
        self._items.clear()
        self._bytes = 0
        return out

    def qbytes(self) -> int:
        return self._bytes


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
                 max_batch: int = 2000, publish_timeout: float = 5.0, fsync_interval: float = 0.2,
                 linger: float = 0.0, report: bool = True) -> None:
        self.queue = queue
        self._publisher = publisher
        self.spool = spool
        self._max_batch = max_batch
        self._publish_timeout = publish_timeout
        self._fsync_interval = fsync_interval
        self._linger = linger
        self.direct = spool is None or spool.pending_bytes() == 0
        self._started = False
        self._backoff = 0.05
        self.dropped = 0
        self._last_drop_log = -1e9
        self._failures = 0
        # Catch-up reads at most this many records a step (a bounded pause for the handlers).
        self._catch_up_batch = min(max_batch, 1000)
        self._chunk: tuple[list[Record], Position] | None = None  # read from the spool, not yet acked
        self._report = report  # False for a helper forwarder (replaying a former worker's spool)

    # --- called by request handlers: never awaits ---
    def submit(self, record: Record) -> bool:
        """Takes a record the edge is about to answer for. False when it could not be kept: the spool is
        at its bound or the disk refused the write (with a spool), or the queue is full (without)."""
        position = None
        if self.spool is not None:
            position = self.spool.append(record)
            if position is None:
                self.dropped += 1
                metrics.SPOOL_DROPPED.inc()
                now = time.monotonic()
                if now - self._last_drop_log >= 10.0:  # one line per 10 s, not one per hit
                    self._last_drop_log = now
                    log.error("spool refused a hit (%d bytes pending of %d; %d dropped so far)",
                              self.spool.pending_bytes(), self.spool.max_bytes, self.dropped)
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
        if self._report:
            metrics.FORWARDER_MODE.set(0)

    async def _publish(self, records: list[Record]) -> bool:
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that lands as the
            # publish completes (CPython gh-86296), and `run` then went on forwarding after shutdown
            # cancelled it, holding the edge's exit for good.
            if not self._started:
                async with asyncio.timeout(self._publish_timeout):
                    await self._publisher.start()
                self._started = True
            async with asyncio.timeout(self._publish_timeout):
                await self._publisher.publish(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport's errors are many; each means "not acknowledged"
            metrics.PUBLISH_ERRORS.inc()
            self._failures += 1
            log.warning("publish of %d records failed: %r", len(records), exc)
            # Also after a failed start: a half-started producer is replaced, never restarted.
            await self._publisher.reset()
            self._started = False
            return False
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        for topic, n in counts.items():
            metrics.PUBLISHED.labels(topic).inc(n)
        self._backoff = 0.05
        return True

    async def _pause(self) -> None:
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, 2.0)

    async def _step_direct(self) -> None:
        batch = await self.queue.take_batch(self._max_batch, timeout=0.1, linger=self._linger)
        if not batch or not self.direct:
            return
        try:
            published = await self._publish([p.record for p in batch])
        except asyncio.CancelledError:
            # Shutdown (or drain's deadline) interrupted the publish: the batch may or may not have
            # reached Kafka. Acking a later batch would cover it, so go back to the spool's last ack.
            if self.spool is not None:
                self._enter_catch_up("publish interrupted")
            else:
                self.queue.put_back(batch)
            raise
        if published:
            if self.spool is not None and batch[-1].position is not None:
                self.spool.ack(batch[-1].position)
        elif self.spool is not None:
            self._enter_catch_up("publish failed")
        else:
            self.queue.put_back(batch)  # no spool: keep them in memory, at the front
            await self._pause()

    async def _step_catch_up(self) -> None:
        assert self.spool is not None
        if self._chunk is None or self._chunk[1] <= self.spool.acked:
            # Read once per chunk, not once per attempt: through an outage the same chunk is retried
            # every few seconds, and re-reading it would block the event loop each time.
            read = self.spool.read_from(self.spool.acked, self._catch_up_batch)
            if not read:
                # No await between the read and the switch: no handler can append in between.
                self._chunk = None
                self.direct = True
                if self._report:
                    metrics.FORWARDER_MODE.set(1)
                    log.info("forwarder: spool caught up; direct mode")
                return
            self._chunk = ([Record(r.topic, r.key, r.value, REPLAYED_HEADERS) for r, _ in read], read[-1][1])
        records, end = self._chunk
        if await self._publish(records):
            self.spool.ack(end)
            self._chunk = None
            metrics.REPLAYED.inc(len(records))
        else:
            await self._pause()

    async def run(self) -> None:
        metrics.FORWARDER_MODE.set(1 if self.direct else 0)
        while True:
            if self.direct:
                await self._step_direct()
            else:
                await self._step_catch_up()
            self.update_gauges()

    async def replay_all(self) -> None:
        """Publishes the whole spool in order (catch-up steps until it is empty), for a spool nobody
        appends to any more; returns once everything is acknowledged."""
        while not self.direct:
            await self._step_catch_up()

    def update_gauges(self) -> None:
        if not self._report:
            return
        metrics.QUEUE_DEPTH.set(self.queue.qsize())
        if self.spool is not None:
            metrics.SPOOL_BYTES.set(self.spool.pending_bytes())
            metrics.SPOOL_SEGMENTS.set(self.spool.segment_count())

    async def sync_spool(self) -> None:
        """fsync the spool every `fsync_interval`, in a worker thread: a machine crash loses at most
        that window; a killed process loses nothing (the page cache holds every write)."""
        while self.spool is not None:
            await asyncio.sleep(self._fsync_interval)
            try:
                await asyncio.to_thread(self.spool.take_sync_work().run)
            except Exception:  # an fsync loop that died would leave the disk to fill: log, go on
                log.exception("spool sync failed; trying again in %.3f s", self._fsync_interval)

    async def drain(self, timeout: float) -> None:
        """After `run` was cancelled: publish what is left within `timeout`, stopping early once a
        publish fails (Kafka down: waiting would only delay the exit); what is not published stays in
        the spool (fsynced) and is replayed by the next start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.direct and self.queue.qsize() == 0:
                break
            remaining = max(0.1, deadline - time.monotonic())
            failures = self._failures
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await (self._step_direct() if self.direct else self._step_catch_up())
            if self._failures != failures and self.spool is not None:
                break  # the transport is failing: the spool keeps the rest; no point holding up the exit
        left = self.queue.qsize() if self.spool is None else self.spool.pending_bytes()
        if left:
            log.warning("shutdown: %d %s not published; %s", left, "records" if self.spool is None else "bytes",
                        "lost (no spool)" if self.spool is None else "kept in the spool for the next start")
        if self.spool is not None:
            self.spool.take_sync_work().run()
        self.update_gauges()
