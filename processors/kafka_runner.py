"""The production runner: an aiokafka consumer group feeding the pipeline, commits after inserts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from processors import metrics
from processors.batch_loop import Batch, BatchLoop
from processors.pipeline import BatchOutput, HitProcessor
from processors.step import WRITE_FINISH_TIMEOUT
from processors.writer import ClickHouseWriter
from schemas.aio import finish_within
from schemas.records import Record
from schemas.runtime import BatchGc
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
    aiokafka makes an assignment active before it calls this, and fetches from the committed (or
    reset) offsets while it runs: the new partitions are paused until they are positioned (a paused
    partition's fetched records are dropped, never returned). If ClickHouse cannot say its positions,
    they stay paused and the transport's next fetch raises the error (the runner ends, the batch
    reading resumes in the next run), rather than reading from a position that may be behind.
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
        self.failed: BaseException | None = None  # why the last assignment could not be positioned

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
        consumer = self._consumer
        if assigned:
            consumer.pause(*assigned)  # before any await: nothing fetched from the old position is returned
        if self._sends_first is not None:
            self._sends_first.settling = True  # its rounds leave the conversions paused meanwhile
        try:
            stored = await self._writer.positions()
            for tp in assigned:
                written = stored.get((tp.topic, tp.partition))
                if written is None:
                    continue
                committed = await consumer.committed(tp)
                if committed is None or committed <= written:
                    log.info("resuming %s/%d at %d after ClickHouse (committed %s)", tp.topic, tp.partition,
                             written + 1, committed)
                    consumer.seek(tp, written + 1)
        except Exception as exc:
            log.error("partitions %s not resumed: ClickHouse's positions are unknown (%s: %s)",
                      sorted(f"{tp.topic}/{tp.partition}" for tp in assigned), type(exc).__name__, exc)
            self.failed = exc
            return
        still = assigned & consumer.assignment()  # a rebalance during the awaits may have moved some
        held = set()
        if self._sends_first is not None:
            held, self._sends_first.settling = self._sends_first.held(still), False
        if still - held:
            consumer.resume(*(still - held))  # conversions wait for their sends (SendsFirst.apply)

    def check(self) -> None:
        """Raises why the partitions could not be positioned, if they could not."""
        if self.failed is not None:
            raise self.failed


class SendsFirst:
    """Holds back the conversions and deliveries partitions while a sends partition of this consumer is
    behind.

    A conversion or delivery event that names only its message is attributed from its send
    (processors.pipeline, processors.deliveries), and Kafka reads partitions side by side: reading a
    topic from the start (a replay, a new deployment, catching up after an outage), the small
    conversions and deliveries topics run ahead of the large sends topic, and their records would become
    unattributed dead letters although their sends are further down the sends partitions. They are read
    once every sends partition this consumer holds has been read to within `slack` records of its high
    watermark. (A send on another consumer's partition is found in ClickHouse once that consumer has
    written it.)"""

    def __init__(self, topics: Topics, slack: int = 0) -> None:
        """`slack`: records a sends partition may lag by and still count as read (a batch: under a steady
        stream of sends the high watermark is usually a little ahead, which is no backlog)."""
        self._topics = topics
        self._slack = slack
        self.settling = False  # set while a new assignment is being positioned: nothing is resumed

    def held(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """The partitions of a new assignment that stay paused for now (its conversions and deliveries: no
        sends partition fetched yet)."""
        held = (self._topics.conversions, self._topics.deliveries)
        return {tp for tp in assigned if tp.topic in held}

    async def apply(self, consumer: AIOKafkaConsumer) -> None:
        """Pauses or resumes the conversions and deliveries partitions by how far the sends partitions have
        been read."""
        try:
            behind = False
            for tp in [tp for tp in consumer.assignment() if tp.topic == self._topics.sends]:
                high = consumer.highwater(tp)
                if high is None or high - await consumer.position(tp) > self._slack:
                    behind = True
                    break
            # Read again after the awaits: a rebalance may have moved partitions meanwhile.
            held = (self._topics.conversions, self._topics.deliveries)
            conversions = {tp for tp in consumer.assignment() if tp.topic in held}
            paused = consumer.paused() & conversions
            if behind and paused != conversions:
                consumer.pause(*(conversions - paused))
            elif not behind and paused and not self.settling:
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


class KafkaTransport:
    """The batch loop's transport over Kafka (processors.batch_loop): fetches from the consumer group,
    holding conversions back behind their sends (SendsFirst) and watching for lost brokers
    (MetadataWatch); publishes classified events with the output producer; commits offsets."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, sends_first: SendsFirst,
                 watch: MetadataWatch, max_records: int, max_ms: int) -> None:
        self._consumer = consumer
        self.resume: ResumeAfterClickHouse | None = None  # the group's listener, once subscribed
        self._producer = producer
        self._sends_first = sends_first
        self._watch = watch
        self._max_records = max_records
        self._max_ms = max_ms

    async def fetch(self, stop: asyncio.Event) -> Batch[dict[TopicPartition, tuple[int, int]]] | None:
        consumer = self._consumer
        if self.resume is not None:
            self.resume.check()
        await self._sends_first.apply(consumer)
        batches = await consumer.getmany(timeout_ms=self._max_ms, max_records=self._max_records)
        self._watch.check(known_brokers(consumer), asyncio.get_running_loop().time())
        if self.resume is not None:
            self.resume.check()  # a rebalance during the wait could not position its partitions
        if not batches:
            return None
        records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition)) for r in batches[tp]]
        ranges = {tp: (msgs[0].offset, msgs[-1].offset) for tp, msgs in batches.items()}
        return Batch(records, batch_token(ranges), ranges)

    async def publish(self, out: BatchOutput) -> None:
        futures = await send_batches(self._producer, out.classified, out.classified_partitions)
        if futures:
            await asyncio.gather(*futures)

    async def commit(self, batch: Batch[dict[TopicPartition, tuple[int, int]]]) -> None:
        consumer, ranges = self._consumer, batch.positions
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


class KafkaRunner:
    """Consumes hits.raw, hits.dlq, sends, conversions, unsubscribes, deliveries, consents and aggregate_sends
    through the batch loop (processors.batch_loop, which says the order of a batch's steps): processes each
    batch while the
    previous one is inserted; publishes a batch's classified events, inserts it with its dead letters,
    and only then commits its offsets, one batch at a time and in order: at-least-once into Kafka
    offsets and topics, exactly-once into ClickHouse. A failing insert ends the runner (the batch is
    read again by the next run)."""

    def __init__(self, bootstrap: str, group: str, topics: Topics, processor: HitProcessor,
                 writer: ClickHouseWriter, max_records: int = 5000, max_ms: int = 500,
                 client_id: str = "pixeltrack-processor",
                 after_insert: Callable[[int], Awaitable[None]] | None = None,
                 brokers_lost_after: float = 60.0, sends_slack: int | None = None,
                 gc_schedule: BatchGc | None = None) -> None:
        """`after_insert(batch_number)` runs after a batch's insert and before its commit: a fault
        injection point for tests (raising there is a crash between insert and commit). `sends_slack`:
        see SendsFirst (default: a batch, `max_records`). `gc_schedule`: kept after each batch is
        processed (schemas.runtime; `pixeltrack process` passes one)."""
        self._bootstrap = bootstrap
        self._group = group
        self._topics = topics
        self._writer = writer
        self._max_records = max_records
        self._max_ms = max_ms
        self._client_id = client_id
        self._brokers_lost_after = brokers_lost_after  # seconds without a broker in the metadata: raise
        self._sends_slack = max_records if sends_slack is None else sends_slack
        self._processor = processor
        self._gc = gc_schedule
        self._after_insert = after_insert
        self._loop: BatchLoop[dict[TopicPartition, tuple[int, int]]] | None = None

    @property
    def batches_done(self) -> int:
        """Batches inserted and committed."""
        return self._loop.batches_done if self._loop is not None else 0

    @property
    def records_done(self) -> int:
        """Records whose batch was inserted and committed."""
        return self._loop.records_done if self._loop is not None else 0

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
            transport = KafkaTransport(consumer, producer, sends_first, MetadataWatch(self._brokers_lost_after),
                                       self._max_records, self._max_ms)
            # One loop a run, counting on from the last run's figures (a runner restarted by a test).
            loop = BatchLoop(transport, self._processor, self._writer, gc_schedule=self._gc,
                             after_insert=self._after_insert)
            if self._loop is not None:
                loop.batches_done, loop.records_done = self._loop.batches_done, self._loop.records_done
            self._loop = loop
            transport.resume = ResumeAfterClickHouse(consumer, self._writer, loop.all_written, sends_first=sends_first)
            consumer.subscribe([t.hits_raw, t.hits_dlq, t.sends, t.conversions, t.unsubscribes, t.deliveries,
                                t.consents, t.aggregate_sends], listener=transport.resume)
            try:
                await consumer.start()
                await loop.run(stop)  # the batch in flight is let finish before the group is left
            finally:
                await consumer.stop()
        finally:
            try:
                await finish_within(producer.stop(), 10)  # bounded: a flush can wait on a dead broker
            except TimeoutError:
                log.warning("output producer did not stop within 10 s")
