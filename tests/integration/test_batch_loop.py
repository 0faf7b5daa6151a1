"""The one batch loop over its two transports (real broker, chDB): the same order of a batch's steps
(classified events published, then the insert, then the commit), and the processor's own dead letters
written in the batch that made them, never sent round through hits.dlq."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pixeltrack.compose.build import build_processor
from processors.batch import TableRows
from processors.kafka_runner import KafkaRunner
from processors.local_runner import LocalRunner
from processors.pipeline import DEAD_LETTER_COLUMNS, EVENT_COLUMNS
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_local_runner import bus_of, sim_hits
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka
SIGN = EVENT_COLUMNS.index("sign")
JUNK = b"{not json"


@dataclass(frozen=True, slots=True)
class Insert:
    token: str
    classified: int  # the batch's classified events (one per decision: its events rows of sign +1)
    published: int  # classified events out when the insert began (acknowledged by the broker, or handed on)
    letters: list[tuple[str, str, str, str]]  # the batch's dead_letters rows: stage, reason, src_topic, id


class NotingWriter(ClickHouseWriter):
    """The real writer; notes each insert, with how many classified events were out as it began."""

    def __init__(self, dsn: str, database: str, published: Callable[[], Awaitable[int]]) -> None:
        super().__init__(dsn, database)
        self.inserts: list[Insert] = []
        self._published = published

    async def write(self, batches: Sequence[TableRows], token: str, attempts: int = 4) -> int:
        tables = {t.table: t.rows for t in batches}
        col = {c: i for i, c in enumerate(DEAD_LETTER_COLUMNS)}
        self.inserts.append(Insert(
            token, sum(1 for r in tables["events"] if r[SIGN] == 1), await self._published(),
            [(r[col["stage"]], r[col["reason"]], r[col["src_topic"]], r[col["id"]]) for r in tables["dead_letters"]]))
        return await super().write(batches, token, attempts)


def check_order(inserts: list[Insert]) -> None:
    """Every batch's classified events were out before its insert began, and none of the next batch's."""
    assert len(inserts) >= 3, inserts
    assert sum(i.classified for i in inserts) > 0
    assert [i.published for i in inserts] == list(itertools.accumulate(i.classified for i in inserts))


async def end_offsets(bootstrap: str, topic: str) -> int:
    """Records in `topic` (all partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        if not parts:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def run_kafka(s: Settings, keyring: Keyring, bootstrap: str, topics: Topics, db: ClickHouseDb,
                    records: list[Record]) -> NotingWriter:
    """`records` produced (one partition: the junk lands in a batch with hits) and consumed by a KafkaRunner."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(r.topic, r.value, partition=0) for r in records])
    finally:
        await producer.stop()
    watcher = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await watcher.start()
    classified = [TopicPartition(topics.events_classified, p) for p in range(4)]

    async def published() -> int:
        return sum((await watcher.end_offsets(classified)).values())

    writer = NotingWriter(db.dsn, db.database, published)
    runner = KafkaRunner(bootstrap, f"g-{topics.prefix}", topics, build_processor(s, keyring), writer,
                         max_records=100, max_ms=50)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: runner.records_done >= len(records) or task.done(), timeout=90,
                         what="every record written and committed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await watcher.stop()
        await writer.close()
    assert runner.records_done == len(records)
    return writer


async def run_bus(s: Settings, keyring: Keyring, db: ClickHouseDb, records: list[Record]) -> tuple[NotingWriter, int]:
    """`records` taken off the bus by a LocalRunner whose classified events go to a list (as to the
    embedded triggers); returns the writer and the records the runner took."""
    handed_on: list[Record] = []

    async def on_classified(batch: list[Record]) -> None:
        handed_on.extend(batch)

    async def published() -> int:
        return len(handed_on)

    writer = NotingWriter(db.dsn, db.database, published)
    bus = bus_of(records)
    runner = LocalRunner(bus, build_processor(s, keyring), writer, max_records=100, max_ms=20,
                         on_classified=on_classified)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: (bus.empty() and runner.records_done >= len(records)) or task.done(), timeout=90,
                         what="every record written")
        await asyncio.sleep(0.3)  # a letter sent round would be back on the bus by now
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await runner.drain()
        await writer.close()
    return writer, runner.records_done


@pytest.mark.parametrize("transport", ["kafka", "bus"])
async def test_both_transports_publish_a_batchs_classified_events_before_its_insert(
        transport: str, settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The module's one order, seen from the writer: as each insert begins, exactly the classified events
    of that batch and the ones before it are out (published to events.classified and acknowledged, or
    handed to the embedded triggers): those of this batch already, those of the next not yet."""
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "publish_classified": True})
    hits = [Record(kafka_topics.hits_raw, r.key, r.value) for r in sim_hits(keyring, "order", 150, seed=8)]
    if transport == "kafka":
        writer = await run_kafka(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, hits)
    else:
        writer, _ = await run_bus(s, keyring, clickhouse, hits)
    check_order(writer.inserts)
    classified = sum(i.classified for i in writer.inserts)
    assert clickhouse.rows("SELECT count() FROM events WHERE sign = 1") == [(classified,)]


@pytest.mark.parametrize("transport", ["kafka", "bus"])
async def test_a_dead_letter_the_processor_makes_is_written_in_its_own_batch(
        transport: str, settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """A record that does not decode, among hits: its letter is a row of the insert of the batch that
    held it, at the record's own position, and nothing goes to hits.dlq (Kafka) or back onto the bus."""
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "publish_classified": True})
    hits = [Record(kafka_topics.hits_raw, r.key, r.value) for r in sim_hits(keyring, "letters", 80, seed=9)]
    assert len(hits) > 200
    records = [*hits[:130], Record(kafka_topics.hits_raw, None, JUNK), *hits[130:]]
    if transport == "kafka":
        writer = await run_kafka(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, records)
        assert await end_offsets(kafka_bootstrap, kafka_topics.hits_dlq) == 0  # no round trip
        letter_id = f"{kafka_topics.hits_raw}:0:130"  # its record's position: partition 0, offset 130
        # the batch that held offset 130 of partition 0 is the one whose insert carried the letter
        (holder,) = [i for i in writer.inserts if any(
            int(a) <= 130 <= int(b) for part in i.token.removeprefix("kafka:").split(",")
            for name, p, span in [part.rsplit("/", 2)] if name == kafka_topics.hits_raw and p == "0"
            for a, b in [span.split("-")])]
    else:
        writer, taken = await run_bus(s, keyring, clickhouse, records)
        assert taken == len(records)  # the runner took exactly what was put on the bus: no letter came back
        # the bus numbers records in order from the run's start: the 131st record of the 2nd batch of 100
        holder = writer.inserts[1]
        first = int(holder.token.rsplit(":", 1)[1].split("-")[0])
        letter_id = f"{kafka_topics.hits_raw}:-1:{first + 30}"
    assert holder.letters == [("processor", "undecodable", kafka_topics.hits_raw, letter_id)]
    assert [i for i in writer.inserts if i.letters] == [holder]
    assert clickhouse.rows("SELECT stage, reason, src_topic, id FROM dead_letters") == holder.letters
    assert clickhouse.rows("SELECT stage, reason, letters, stored FROM dead_letter_counts") == [
        ("processor", "undecodable", 1, 1)]
