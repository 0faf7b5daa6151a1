"""The production runner: an aiokafka consumer group feeding the pipeline, commits after inserts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from processors import metrics
from processors.gc_tuning import BatchGc
from processors.pipeline import BatchOutput, HitProcessor
from processors.step import WRITE_FINISH_TIMEOUT, ErasureWatch, let_finish, write_batch
from processors.writer import ClickHouseWriter
from schemas.aio import finish_within
from schemas.records import Record
from schemas.topics import Topics

log = logging.getLogger(__name__)



def batch_token(ranges: dict[TopicPartition, tuple[int, int]]) -> str:
    """Deterministic insert dedup token for a batch: its topic-partition offset ranges."""
    return "kafka:" + ",".join(f"{tp.topic}/{tp.partition}/{a}-{b}" for tp, (a, b) in sorted(
        ranges.items(), key=lambda kv: (kv[0].topic, kv[0].partition)))


async def send_batches(producer: AIOKafkaProducer, records: list[Record], partitions: list[int]
                       ) -> list[asyncio.Future[object]]:
    """Sends records in whole batches, one per topic-partition: per record, `send()` costs tens of
    microseconds of Python; a batch append costs a few. A record goes to its source partition
    (modulo the topic's partition count), which keeps one message's events on one partition like
    hits.raw's key does."""
    if not records:
        return []
    topic = records[0].topic
    known = producer.client.cluster.partitions_for_topic(topic)
    if not known:
        await producer.client.force_metadata_update()
        known = producer.client.cluster.partitions_for_topic(topic) or {0}
    count = len(known)
    futures: list[asyncio.Future[object]] = []
    batches: dict[int, Any] = {}
    for record, source in zip(records, partitions, strict=True):
        p = source % count
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = producer.create_batch()
        if batch.append(key=record.key, value=record.value, timestamp=None) is None:
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=p))
            batch = batches[p] = producer.create_batch()
            batch.append(key=record.key, value=record.value, timestamp=None)
    for p, batch in batches.items():
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=p))
    return futures


class ResumeAfterClickHouse(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, seek each partition past the highest offset ClickHouse already holds.

    Kafka's committed offset can lag ClickHouse (a crash between insert and commit); ClickHouse is
    the truth for what was written, so nothing is inserted twice whatever the new batch boundaries.
    Before partitions are given up, every batch already fetched is inserted and committed (aiokafka
    runs a rebalance beside the consumer's own work, and waits for this callback before rejoining),
    so their next owner reads positions that include it; bounded by `finish_timeout`.
    """

    def __init__(self, consumer: AIOKafkaConsumer, writer: ClickHouseWriter,
                 all_written: asyncio.Event | None = None, finish_timeout: float = WRITE_FINISH_TIMEOUT,
                 sends_first: SendsFirst | None = None) -> None:
        self._consumer = consumer
        self._writer = writer
        self._all_written = all_written
        self._finish_timeout = finish_timeout
        self._sends_first = sends_first

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._all_written is None or self._all_written.is_set():
            return
        try:
            async with asyncio.timeout(self._finish_timeout):
                await self._all_written.wait()
        except TimeoutError:
            log.warning("rebalance: a fetched batch is still not written after %.0f s; giving the partitions up",
                        self._finish_timeout)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._sends_first is not None:
            self._sends_first.hold(self._consumer)  # before the first fetch of the new assignment
        stored = await self._writer.positions()
        for tp in assigned:
            written = stored.get((tp.topic, tp.partition))
            if written is None:
                continue
            committed = await self._consumer.committed(tp)
            if committed is None or committed <= written:
                log.info("resuming %s/%d at %d after ClickHouse (committed %s)", tp.topic, tp.partition,
                         written + 1, committed)
                self._consumer.seek(tp, written + 1)


class SendsFirst:
    """Holds back the conversions partitions while a sends partition of this consumer is behind.

    A conversion that names only its message is attributed from its send (processors.pipeline), and
    Kafka reads partitions side by side: reading a topic from the start (a replay, a new deployment,
    catching up after an outage), the small conversions topic runs ahead of the large sends topic, and
    its conversions would become unattributed dead letters although their sends are further down the
    sends partitions. Conversions are read once every sends partition this consumer holds has been
    read to within `slack` records of its high watermark. (A send on another consumer's partition is found in ClickHouse
    once that consumer has written it.)"""

    def __init__(self, topics: Topics, slack: int = 0) -> None:
        """`slack`: records a sends partition may lag by and still count as read (a batch: under a steady
        stream of sends the high watermark is usually a little ahead, which is no backlog)."""
        self._topics = topics
        self._slack = slack

    def hold(self, consumer: AIOKafkaConsumer) -> None:
        """Pauses the conversions partitions (a new assignment: no sends partition fetched yet)."""
        conversions = [tp for tp in consumer.assignment() if tp.topic == self._topics.conversions]
        if conversions:
            consumer.pause(*conversions)

    async def apply(self, consumer: AIOKafkaConsumer) -> None:
        """Pauses or resumes the conversions partitions by how far the sends partitions have been read."""
        try:
            behind = False
            for tp in [tp for tp in consumer.assignment() if tp.topic == self._topics.sends]:
                high = consumer.highwater(tp)
                if high is None or high - await consumer.position(tp) > self._slack:
                    behind = True
                    break
            # Read again after the awaits: a rebalance may have moved partitions meanwhile.
            conversions = {tp for tp in consumer.assignment() if tp.topic == self._topics.conversions}
            paused = consumer.paused() & conversions
            if behind and paused != conversions:
                consumer.pause(*(conversions - paused))
            elif not behind and paused:
                consumer.resume(*paused)
        except (IllegalStateError, AssertionError):  # aiokafka's answers about a revoked partition
            return  # the next round sees the new assignment


class BrokersLost(KafkaError):  # type: ignore[misc]
    """The consumer's cluster metadata has held no broker for too long (see MetadataWatch)."""


class MetadataWatch:
    """After a broker restart aiokafka can be left with cluster metadata that names no broker at all,
    and then retries "Unable to update metadata from []" forever without consuming or failing (aiokafka
    issue 267). A runner that sees no broker for `timeout` seconds raises BrokersLost, so the process
    exits and its supervisor starts a fresh one (new clients bootstrap from the configured servers)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._since: float | None = None

    def check(self, brokers: int, now: float) -> None:
        if brokers:
            self._since = None
            return
        if self._since is None:
            self._since = now
        elif now - self._since >= self.timeout:
            raise BrokersLost(f"no broker in the cluster metadata for {now - self._since:.0f} s")


def known_brokers(consumer: AIOKafkaConsumer) -> int:
    """How many brokers the consumer's client knows (aiokafka keeps them in its cluster metadata)."""
    client = getattr(consumer, "_client", None)
    cluster = getattr(client, "cluster", None)
    return len(cluster.brokers()) if cluster is not None else 1


class KafkaRunner:
    """Consumes hits.raw, hits.dlq, sends, conversions and unsubscribes; processes each batch while the
    previous one is inserted; produces a batch's dead letters and classified events, inserts it, and
    only then commits its offsets, one batch at a time and in order: at-least-once into Kafka offsets
    and topics, exactly-once into ClickHouse."""

    def __init__(self, bootstrap: str, group: str, topics: Topics, processor: HitProcessor,
                 writer: ClickHouseWriter, max_records: int = 5000, max_ms: int = 500,
                 client_id: str = "pixeltrack-processor",
                 after_insert: Callable[[int], Awaitable[None]] | None = None,
                 brokers_lost_after: float = 60.0, sends_slack: int | None = None,
                 gc_schedule: BatchGc | None = None) -> None:
        """`after_insert(batch_number)` runs after a batch's insert and before its commit: a fault
        injection point for tests (raising there is a crash between insert and commit). `sends_slack`:
        see SendsFirst (default: a batch, `max_records`). `gc_schedule`: kept after each batch is
        processed (processors.gc_tuning; `pixeltrack process` passes one)."""
        self._bootstrap = bootstrap
        self._group = group
        self._topics = topics
        self._processor = processor
        self._writer = writer
        self._max_records = max_records
        self._max_ms = max_ms
        self._client_id = client_id
        self._after_insert = after_insert
        self._brokers_lost_after = brokers_lost_after  # seconds without a broker in the metadata: raise
        self._sends_slack = max_records if sends_slack is None else sends_slack
        self.batches_done = 0
        self.records_done = 0  # records whose batch was inserted and committed
        self._writing: asyncio.Task[None] | None = None  # the previous batch's insert, publish and commit
        self._erasures = ErasureWatch(processor, writer)
        self._gc = gc_schedule
        self._unwritten = 0  # batches fetched and not yet committed
        self._all_written = asyncio.Event()
        self._all_written.set()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=self._group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self._max_records,
            fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024)
        # Large batches: a partition takes one batch at a time, so small ones would queue behind each
        # other's round trips when a whole insert's classified events go out together.
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, client_id=self._client_id + "-out",
                                    acks="all", enable_idempotence=True, max_batch_size=1024 * 1024,
                                    linger_ms=5, compression_type="lz4")
        try:
            # A start that fails (the broker away) still opened connections: stop() in `finally` closes
            # them, so a runner restarted through an outage leaves no socket behind.
            await producer.start()
            t = self._topics
            sends_first = SendsFirst(t, slack=self._sends_slack)
            consumer.subscribe([t.hits_raw, t.hits_dlq, t.sends, t.conversions, t.unsubscribes],
                               listener=ResumeAfterClickHouse(consumer, self._writer, self._all_written,
                                                              sends_first=sends_first))
            try:
                await consumer.start()
                watch = MetadataWatch(self._brokers_lost_after)
                loop = asyncio.get_running_loop()
                while not stop.is_set():
                    await sends_first.apply(consumer)
                    batches = await consumer.getmany(timeout_ms=self._max_ms, max_records=self._max_records)
                    if self._writing is not None and self._writing.done():
                        await self._written()  # a failed write ends the runner now, not a batch later
                    if batches:
                        await self._handle(consumer, producer, batches)
                    watch.check(known_brokers(consumer), loop.time())
                await self._written()  # stopping: the last batch is inserted and committed first
            finally:
                task, self._writing = self._writing, None
                await let_finish(task, WRITE_FINISH_TIMEOUT)  # before leaving the group (see let_finish)
                await consumer.stop()
        finally:
            try:
                await finish_within(producer.stop(), 10)  # bounded: a flush can wait on a dead broker
            except TimeoutError:
                log.warning("output producer did not stop within 10 s")

    async def _written(self) -> None:
        """Waits for the previous batch's insert, publish and commit; raises what failed it."""
        if self._writing is not None:
            task, self._writing = self._writing, None
            await task

    async def _handle(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                      batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Processes a batch while the previous one is still being inserted (ClickHouse's work and ours
        overlap: the insert waits on the writer's thread or on the server, not on this loop), then, once
        that one is committed, starts this one's insert. Inserts and commits stay one at a time, in
        order, each batch's commit after its own insert."""
        records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
        ranges = {tp: (msgs[0].offset, msgs[-1].offset) for tp, msgs in batches.items()}
        self._unwritten += 1
        self._all_written.clear()
        try:
            # ClickHouse's answers cannot include the batch in flight; the processor remembers what that
            # batch held (its hit ids, sends and conversion keys) and answers for it from memory.
            await self._erasures.refresh()
            out = self._processor.process(records, await self._writer.lookup(self._processor.lookups(records)))
            if self._gc is not None:
                self._gc.after_batch()
            await self._written()
        except BaseException:
            self._settled()
            raise
        self._writing = asyncio.create_task(self._write(consumer, producer, records, ranges, out),
                                            name="pixeltrack-processor-write")
        # Let it hand its insert to the writer's thread now: the next getmany may return without
        # suspending (records already fetched), and the next batch would be processed first.
        await asyncio.sleep(0)

    async def _write(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, records: list[Any],
                     ranges: dict[TopicPartition, tuple[int, int]], out: BatchOutput) -> None:
        try:
            # Dead letters and classified events go out before the insert: a crash after the insert is
            # never re-read (the next owner resumes after what ClickHouse holds), so anything sent after
            # it would be lost; a crash before it re-sends them with the batch (at least once: dead
            # letters' ids are their records' positions, classified events carry hit ids and revisions).
            futures = [await producer.send(r.topic, r.value, key=r.key) for r in out.to_dlq]
            futures += await send_batches(producer, out.classified, out.classified_partitions)
            if futures:
                await asyncio.gather(*futures)
            await write_batch(self._writer, out, batch_token(ranges))
            if self._after_insert is not None:
                await self._after_insert(self.batches_done)
            # Offsets are committed only after the insert returned and the dead letters were acknowledged.
            try:
                await consumer.commit({tp: b + 1 for tp, (_, b) in ranges.items()})
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions: the next owner resumes after ClickHouse's positions.
                log.warning("commit failed after insert (%s); positions in ClickHouse cover it", exc)
            assigned = consumer.assignment()
            for tp in ranges:
                # Only partitions still ours: aiokafka asserts on a revoked one (a rebalance that
                # outwaited this batch).
                high = consumer.highwater(tp) if tp in assigned else None
                if high is not None:
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - ranges[tp][1] - 1))
            self.batches_done += 1
            self.records_done += len(records)
        finally:
            self._settled()  # also when it failed: the runner then ends, and a rebalance must not wait on

    def _settled(self) -> None:
        """A fetched batch is committed, or will never be (the runner is ending)."""
        self._unwritten -= 1
        if not self._unwritten:
            self._all_written.set()
