"""Exactly once into ClickHouse on real Kafka: a crash between insert and commit, and a full re-read."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pixeltrack.compose.build import build_processor
from processors.batch import TableRows
from processors.clickhouse import migrate
from processors.kafka_runner import KafkaRunner
from processors.local_runner import LocalRecord
from processors.writer import ClickHouseWriter
from schemas.classified import ClassifiedEvent
from schemas.records import Record
from schemas.sends import Conversion, Send
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_analytics import RECOUNTED, TRUTH_COLUMNS, recount, summary
from tests.integration.writers import PositionlessWriter, SlowPositionsWriter, SlowWriter
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import load_patterns, simulate
from tests.plugins.stand_in import with_process
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "labelled-hits.jsonl"
AGGREGATE_QUERIES = (
    "SELECT * FROM campaign_summary ORDER BY variant",
    "SELECT * FROM link_stats ORDER BY variant, link",
    "SELECT * FROM client_stats ORDER BY ALL",
    "SELECT * FROM campaign_hourly ORDER BY ALL",
)


class Crash(Exception):
    """Stands for the process dying between the insert and the commit."""


async def run_until(runner: KafkaRunner, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: done() or task.done(), timeout=90, what="processor caught up")
    finally:
        stop.set()
        with contextlib.suppress(Crash):
            await asyncio.wait_for(task, 30)


async def produce_hits(bootstrap: str, topics: Topics, keyring: Keyring, campaign: str, sends: int,
                       seed: int) -> list[Record]:
    """A simulated campaign's hits (every recipient engaged), produced to hits.raw; returns them."""
    sim = simulate(load_patterns(FIXTURE), campaign, n_sends=sends, engaged_share=1.0, seed=seed)
    hits = [r for r in sim.records(keyring, topics) if r.topic == topics.hits_raw]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(r.topic, r.value, key=r.key) for r in hits])
    finally:
        await producer.stop()
    return hits


def snapshot(db: ClickHouseDb) -> list[list[tuple[object, ...]]]:
    return [db.rows(q) for q in AGGREGATE_QUERIES]


async def test_crash_between_insert_and_commit_then_reread(settings: Settings, keyring: Keyring,
                                                           kafka_bootstrap: str, kafka_topics: Topics,
                                                           clickhouse: ClickHouseDb) -> None:
    sim = simulate(load_patterns(FIXTURE), "eo", 3000, engaged_share=0.5, seed=5, bounce_share=0.05)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(r.topic, r.value, key=r.key) for r in sim.records(keyring, kafka_topics)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    n_hits, n_sends, n_conv, n_deliveries = len(sim.hits), len(sim.sends), len(sim.conversions), len(sim.deliveries)
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)

    def complete() -> bool:
        got = clickhouse.rows("SELECT (SELECT count() FROM hits), (SELECT uniqExact(message_id) FROM sends), "
                              "(SELECT count() FROM conversions FINAL), (SELECT count() FROM deliveries)")
        return got[0] == (n_hits, n_sends, n_conv, n_deliveries)

    crashed: list[int] = []

    def crash_on(batch: int) -> Callable[[int], Awaitable[None]]:
        async def hook(done: int) -> None:
            if done == batch and not crashed:
                crashed.append(done)
                raise Crash
        return hook

    group = f"g-{kafka_topics.prefix}"
    try:
        # 1. the first processor dies after inserting its third batch, before committing it
        first = KafkaRunner(kafka_bootstrap, group, kafka_topics, build_processor(s, keyring), writer,
                            max_records=400, max_ms=100, after_insert=crash_on(2))
        await run_until(first, lambda: bool(crashed))
        assert crashed == [2]
        # 2. a new processor in the same group resumes: nothing is counted twice
        second = KafkaRunner(kafka_bootstrap, group, kafka_topics, build_processor(s, keyring), writer,
                             max_records=400, max_ms=100)
        await run_until(second, complete)
        before = snapshot(clickhouse)
        got = summary(clickhouse, "eo")
        for variant, truth in sim.truth.items():
            assert {c: got[variant][c] for c in TRUTH_COLUMNS} == {c: getattr(truth, c) for c in TRUTH_COLUMNS}
        assert {v: {c: got[v][c] for c in RECOUNTED} for v in got} == recount(clickhouse, "eo")
        assert clickhouse.rows("SELECT count() FROM (SELECT hit_id FROM events WHERE sign = 1 AND revision = 0 "
                               "GROUP BY hit_id HAVING count() > 1)") == [(0,)]

        # 3. the same Kafka data consumed again from the start (a new group: offsets reset), by a
        # processor that learns ClickHouse's positions slowly (a busy server): meanwhile its consumer
        # has fetched from offset 0, and none of those records may be processed
        slow = SlowPositionsWriter(clickhouse.dsn, clickhouse.database, delay=2.0)
        try:
            third = KafkaRunner(kafka_bootstrap, group + "-again", kafka_topics, build_processor(s, keyring), slow,
                                max_records=400, max_ms=100)
            stop = asyncio.Event()
            task = asyncio.create_task(third.run(stop))
            await asyncio.sleep(6)
            stop.set()
            await asyncio.wait_for(task, 30)
        finally:
            await slow.close()
        assert third.records_done == 0
        assert snapshot(clickhouse) == before
        assert complete()
    finally:
        await writer.close()


async def test_partitions_whose_stored_positions_are_unknown_are_not_read(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """A processor given partitions while ClickHouse cannot say what it holds reads nothing from them
    (their committed offsets may be behind it) and ends with the error, for its supervisor to retry."""
    hits = await produce_hits(kafka_bootstrap, kafka_topics, keyring, "blind", 50, seed=3)
    assert hits
    writer = PositionlessWriter(clickhouse.dsn, clickhouse.database)
    runner = KafkaRunner(kafka_bootstrap, f"g-blind-{kafka_topics.prefix}", kafka_topics,
                         build_processor(settings.model_copy(update={"topic_prefix": kafka_topics.prefix}), keyring),
                         writer, max_records=100, max_ms=50)
    try:
        with pytest.raises(OSError, match="Connection refused"):
            await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    finally:
        await writer.close()
    assert runner.records_done == 0
    assert clickhouse.rows("SELECT count() FROM hits") == [(0,)]


async def test_same_batch_token_inserts_once(clickhouse: ClickHouseDb) -> None:
    """An insert retried with its token (e.g. after a lost answer) is stored once, aggregates too."""
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        rows = TableRows("sends", ("tenant", "campaign", "variant", "message_id", "recipient_id", "sent_at",
                                   "mailbox_domain", "links", "src_topic", "src_partition", "src_offset"),
                         [("", "tok", "A", f"m{i}", f"r{i}", 1_790_000_000.123, "", 0, "sends", 0, i)
                          for i in range(100)])
        for _ in range(3):
            await writer.write([rows], "kafka:sends/0/0-99")
        await writer.write([rows], "kafka:sends/0/0-99-other")  # a different token is a different batch
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT count() FROM sends") == [(200,)]
    assert clickhouse.rows("SELECT delivered FROM campaign_summary WHERE campaign = 'tok'") == [(100,)]


async def test_a_batch_is_processed_while_the_previous_one_is_inserted_and_commits_stay_in_order(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The processor's work and ClickHouse's overlap; inserts and commits stay one at a time and in
    order, each batch's commit after its own insert; a stop commits the last batch."""
    hits = await produce_hits(kafka_bootstrap, kafka_topics, keyring, "overlap", 400, seed=11)
    log: list[tuple[str, int]] = []
    writer = SlowWriter(clickhouse.dsn, clickhouse.database, log)
    processor = build_processor(settings.model_copy(update={"topic_prefix": kafka_topics.prefix}), keyring)
    overlapped: list[bool] = []
    process = processor.process

    def noting_process(records: Any, ctx: Any = None) -> Any:
        overlapped.append(writer.inserting)
        log.append(("process", len(records)))
        return process(records, ctx)

    processor = with_process(processor, noting_process)

    async def before_commit(batch: int) -> None:
        log.append(("commit", batch))

    runner = KafkaRunner(kafka_bootstrap, f"g-overlap-{kafka_topics.prefix}", kafka_topics, processor, writer,
                         max_records=100, max_ms=50, after_insert=before_commit)
    try:
        await run_until(runner, lambda: runner.records_done >= len(hits))
    finally:
        await writer.close()
    assert runner.records_done == len(hits)
    assert any(overlapped), f"no batch was processed while the previous one was being inserted: {log}"
    # One insert at a time, each followed by its own commit before the next insert starts.
    writes = [e for e in log if e[0] != "process"]
    assert writes == [step for k in range(runner.batches_done)
                      for step in (("insert", 0), ("inserted", 0), ("commit", k))]
    assert clickhouse.rows("SELECT count(), uniqExact(hit_id) FROM events WHERE sign = 1 AND revision = 0") == [
        (len(hits), len(hits))]


async def test_a_processor_joining_mid_stream_counts_nothing_twice(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """A second processor joins the group while the first has batches fetched, processed and being
    inserted: the partitions it takes over resume after what the first wrote, never before."""
    hits = await produce_hits(kafka_bootstrap, kafka_topics, keyring, "join", 600, seed=5)
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    group = f"g-join-{kafka_topics.prefix}"
    writers = [SlowWriter(clickhouse.dsn, clickhouse.database, []) for _ in range(2)]
    first, second = (KafkaRunner(kafka_bootstrap, group, kafka_topics, build_processor(s, keyring), w,
                                 max_records=60, max_ms=50) for w in writers)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(first.run(stop))]

    def stored() -> int:
        return int(clickhouse.rows("SELECT uniqExact(hit_id) FROM events")[0][0])

    try:
        await eventually(lambda: first.batches_done >= 2, timeout=60, what="the first processor under way")
        tasks.append(asyncio.create_task(second.run(stop)))
        await eventually(lambda: stored() >= len(hits) or any(t.done() for t in tasks), timeout=120,
                         what="every hit stored")
        assert second.records_done > 0, "the second processor never took a partition"
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for w in writers:
            await w.close()
    assert stored() == len(hits)
    assert clickhouse.rows("SELECT count() FROM (SELECT hit_id FROM events WHERE sign = 1 AND revision = 0 "
                           "GROUP BY hit_id HAVING count() > 1)") == [(0,)]


class FlakySendsWriter(ClickHouseWriter):
    """The real writer whose first insert into `sends` fails (a lost connection), and says so."""

    def __init__(self, dsn: str, database: str, failed: Callable[[], None]) -> None:
        super().__init__(dsn, database, retry_delay=2.0)  # a long pause before the retry
        self._failed = failed
        self.failures = 0

    def _insert(self, client: Any, table: str, columns: Sequence[str], block: bytes, dedup_token: str) -> None:
        if table == "sends" and not self.failures:
            self.failures += 1
            self._failed()
            raise ConnectionError("connection reset")
        super()._insert(client, table, columns, block, dedup_token)


async def test_a_conversion_fetched_while_its_send_is_retried_is_still_attributed(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The next batch's ClickHouse lookup waits for the batch in flight, retries included: a conversion
    naming only its message finds the send that batch carries."""
    send = Send("", "retry", "B", "m-retry", "r-retry", 1_790_000_000.0, "example.com", 1)
    conversion = Conversion("", "order-1", 1_790_000_100.0, 25.0, "EUR", message="m-retry")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    loop = asyncio.get_running_loop()
    failed = asyncio.Event()
    writer = FlakySendsWriter(clickhouse.dsn, clickhouse.database, lambda: loop.call_soon_threadsafe(failed.set))
    runner = KafkaRunner(kafka_bootstrap, f"g-retry-{kafka_topics.prefix}", kafka_topics,
                         build_processor(settings.model_copy(update={"topic_prefix": kafka_topics.prefix}), keyring),
                         writer, max_records=100, max_ms=50)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await (await producer.send(kafka_topics.sends, send.encode(), key=b"m-retry"))
        await asyncio.wait_for(failed.wait(), 60)  # the send's batch is now waiting to retry its insert
        await (await producer.send(kafka_topics.conversions, conversion.encode(), key=b"m-retry"))
        await eventually(lambda: clickhouse.rows("SELECT count() FROM conversions")[0][0] > 0
                         or clickhouse.rows("SELECT count() FROM dead_letters")[0][0] > 0 or task.done(),
                         timeout=60, what="the conversion stored or refused")
    finally:
        stop.set()
        await producer.stop()
        await asyncio.wait_for(task, 30)
        await writer.close()
    assert writer.failures == 1
    assert clickhouse.rows("SELECT campaign, variant, recipient_id, value FROM conversions") == [
        ("retry", "B", "r-retry", 25.0)]


class Boom(Exception):
    """Stands for the processor failing on a batch."""


async def test_a_runner_ending_on_an_error_lets_the_batch_in_flight_finish_and_commit(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The insert on the writer's thread cannot be cancelled: the runner waits for it and commits it
    before leaving the group, so the partitions' next owner resumes after it."""
    await produce_hits(kafka_bootstrap, kafka_topics, keyring, "boom", 200, seed=3)
    writer = SlowWriter(clickhouse.dsn, clickhouse.database, [])
    processor = build_processor(settings.model_copy(update={"topic_prefix": kafka_topics.prefix}), keyring)
    sizes: list[int] = []
    process = processor.process

    def failing_second(records: Any, ctx: Any = None) -> Any:
        sizes.append(len(records))
        if len(sizes) == 2:
            raise Boom
        return process(records, ctx)

    processor = with_process(processor, failing_second)
    group = f"g-boom-{kafka_topics.prefix}"
    runner = KafkaRunner(kafka_bootstrap, group, kafka_topics, processor, writer, max_records=50, max_ms=50)
    try:
        with pytest.raises(Boom):
            await asyncio.wait_for(runner.run(asyncio.Event()), 60)
    finally:
        await writer.close()
    assert runner.records_done == sizes[0]  # the first batch was written while the second failed
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(kafka_topics.hits_raw, p)) for p in range(4)]
    finally:
        await consumer.stop()
    assert sum(c or 0 for c in committed) == sizes[0]
    assert clickhouse.rows("SELECT count() FROM events WHERE revision = 0") == [(sizes[0],)]


class FailsOnceAfterEventsWriter(ClickHouseWriter):
    """The real writer whose first insert into conversions fails after events and sends landed (a
    lost connection mid-batch): the retry re-sends every table with the same tokens."""

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__(dsn, database, retry_delay=0.01)
        self.failed = False

    def _insert(self, client: Any, table: str, columns: Sequence[str], block: bytes, dedup_token: str) -> None:
        if table == "conversions" and not self.failed:
            self.failed = True
            raise ConnectionError("connection reset")
        super()._insert(client, table, columns, block, dedup_token)


async def test_a_batch_retried_after_a_partial_insert_is_counted_once_in_every_aggregate(
        settings: Settings, keyring: Keyring, clickhouse: ClickHouseDb) -> None:
    """The events of a batch land, its conversions fail, the retry sends it all again with the same
    tokens: the tables and the aggregates their materialized views feed count it once (each view's
    target table needs its own deduplication window); the same rows under another token count again."""
    sim = simulate(load_patterns(FIXTURE), "retry", 300, engaged_share=1.0, seed=12)
    processor = build_processor(settings, keyring)
    out = processor.process([LocalRecord(r.topic, 0, i, r.value) for i, r in
                             enumerate(sim.records(keyring, Topics()))])
    assert all(t.rows for t in (out.events, out.sends, out.conversions))
    once = FailsOnceAfterEventsWriter(clickhouse.dsn, clickhouse.database)
    try:
        await once.write(out.tables(), "kafka:retry/0/0-999")
    finally:
        await once.close()
    assert once.failed
    counted_once = snapshot(clickhouse)
    got = summary(clickhouse, "retry")
    for variant, truth in sim.truth.items():
        assert {c: got[variant][c] for c in TRUTH_COLUMNS} == {c: getattr(truth, c) for c in TRUTH_COLUMNS}
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        await writer.write(out.tables(), "kafka:retry/0/0-999")  # a replay of the same batch
        assert snapshot(clickhouse) == counted_once
        await writer.write(out.tables(), "kafka:retry/0/0-999-other")  # another batch
    finally:
        await writer.close()
    assert summary(clickhouse, "retry") != got


async def test_migrate_gives_an_older_table_the_settings_its_ddl_now_has(clickhouse: ClickHouseDb) -> None:
    """An install made before a table's SETTINGS changed gets them on its next migrate."""
    def window() -> int:
        return int(clickhouse.rows("SELECT value FROM system.merge_tree_settings WHERE 0")[0][0]) if False else int(
            clickhouse.rows(f"SELECT extract(engine_full, 'non_replicated_deduplication_window = (\\\\d+)') "
                            f"FROM system.tables WHERE database = '{clickhouse.database}' "
                            "AND name = 'message_totals'")[0][0] or 0)

    assert window() == 10000
    client = clickhouse.client()
    try:  # an install from before the setting came: neither it nor its record in schema_migrations
        client.command("ALTER TABLE message_totals MODIFY SETTING non_replicated_deduplication_window = 0")
        client.command("ALTER TABLE schema_migrations DELETE WHERE name LIKE 'settings:%'",
                       settings={"mutations_sync": 2})
    finally:
        client.close()
    assert window() == 0
    migrate(clickhouse.dsn, clickhouse.database, retention_days=3650)
    assert window() == 10000


async def test_a_batch_of_sends_over_more_than_a_hundred_months_is_inserted(clickhouse: ClickHouseDb) -> None:
    """A backfill of sends spans years; ClickHouse refuses an insert touching more than 100 partitions
    (months) by default, which would fail the batch at every retry."""
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        rows = TableRows("sends", ("tenant", "campaign", "variant", "message_id", "recipient_id", "sent_at",
                                   "mailbox_domain", "links", "src_topic", "src_partition", "src_offset"),
                         [("", "backfill", "A", f"m{i}", f"r{i}", 1_500_000_000.0 + i * 31 * 86_400, "", 0, "sends",
                           0, i) for i in range(150)])
        await writer.write([rows], "kafka:sends/0/0-149", attempts=1)
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT count(), uniqExact(toYYYYMM(sent_at)) FROM sends") == [(150, 150)]


async def test_a_crash_after_the_insert_keeps_the_batchs_dead_letters_and_classified_events(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The processor dies right after a batch's insert, before its commit: the next one resumes after
    what ClickHouse holds and never reads that batch again, so its dead letters and classified events
    must have gone out already (they went out after the insert, and were lost)."""
    hits = await produce_hits(kafka_bootstrap, kafka_topics, keyring, "dl", 20, seed=13)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await (await producer.send(kafka_topics.hits_raw, b"{not json", key=b"junk"))
    finally:
        await producer.stop()
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "publish_classified": True})
    crashed: list[int] = []

    class CrashAfterInsert(ClickHouseWriter):
        async def write(self, batches: Sequence[TableRows], token: str, attempts: int = 4) -> int:
            written = await super().write(batches, token, attempts)
            if not crashed:  # the process dies the moment the insert returned
                crashed.append(written)
                raise Crash
            return written

    writer = CrashAfterInsert(clickhouse.dsn, clickhouse.database)
    group = f"g-dl-{kafka_topics.prefix}"
    try:
        first = KafkaRunner(kafka_bootstrap, group, kafka_topics, build_processor(s, keyring), writer,
                            max_records=1000, max_ms=300)
        await run_until(first, lambda: bool(crashed))
        second = KafkaRunner(kafka_bootstrap, group, kafka_topics, build_processor(s, keyring), writer,
                             max_records=1000, max_ms=300)
        await run_until(second, lambda: bool(clickhouse.rows("SELECT count() FROM dead_letters")[0][0]))
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT stage, reason FROM dead_letters FINAL") == [("processor", "undecodable")]
    consumer = AIOKafkaConsumer(kafka_topics.events_classified, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        got: set[str] = set()
        deadline = time.monotonic() + 10
        while len(got) < len(hits) and time.monotonic() < deadline:
            for ms in (await consumer.getmany(timeout_ms=500)).values():
                got.update(ClassifiedEvent.decode(m.value).hit_id for m in ms)
    finally:
        await consumer.stop()
    assert len(got) == len(hits)


async def test_migrate_gives_an_older_materialized_view_the_query_its_ddl_now_has(clickhouse: ClickHouseDb) -> None:
    """CREATE MATERIALIZED VIEW IF NOT EXISTS keeps an existing view's query: migrate sets it in place."""
    def query() -> str:
        return str(clickhouse.rows(f"SELECT as_select FROM system.tables WHERE database = '{clickhouse.database}' "
                                   "AND name = 'message_totals_from_events'")[0][0])

    assert "bitAnd(link_flags, 2) = 0" in query()
    client = clickhouse.client()
    try:  # an install from before the query changed: neither it nor its record in schema_migrations
        client.command("ALTER TABLE message_totals_from_events MODIFY QUERY " + query().replace(
            " AND (bitAnd(link_flags, 2) = 0)", "").replace(" AND bitAnd(link_flags, 2) = 0", ""))
        client.command("ALTER TABLE schema_migrations DELETE WHERE name LIKE 'query:%'",
                       settings={"mutations_sync": 2})
    finally:
        client.close()
    assert "bitAnd" not in query()
    migrate(clickhouse.dsn, clickhouse.database, retention_days=3650)
    assert "bitAnd(link_flags, 2) = 0" in query()


async def test_migrate_applies_a_changed_retention_to_existing_tables(clickhouse: ClickHouseDb) -> None:
    """PIXELTRACK_RETENTION_DAYS changed after the tables were made: the next migrate sets it."""
    def days() -> dict[str, str]:
        return {str(name): str(d) for name, d in clickhouse.rows(
            "SELECT name, extract(engine_full, 'toIntervalDay\\\\((\\\\d+)\\\\)') FROM system.tables "
            f"WHERE database = '{clickhouse.database}' AND engine_full LIKE '%TTL%toIntervalDay%'")}

    assert set(days().values()) == {"3650"}
    migrate(clickhouse.dsn, clickhouse.database, retention_days=30, dead_letter_retention_days=7)
    assert days() == {"events": "30", "dead_letter_counts": "30", "sends": "30", "conversions": "30",
                      "deliveries": "30", "site_visits": "30", "dead_letters": "7"}


async def test_migrate_adds_the_columns_a_release_added_to_existing_tables(clickhouse: ClickHouseDb) -> None:
    """An install from before sends.recipient_key (and the view counting recipients by it): the next
    migrate adds the column where it belongs and the view's new query then works."""
    client = clickhouse.client()
    try:
        client.command("ALTER TABLE campaign_sends_hourly_mv MODIFY QUERY SELECT tenant, campaign, variant, "
                       "toStartOfHour(sent_at) AS hour, uniqExactState(message_id) AS delivered, "
                       "uniqExactState(recipient_id) AS recipients FROM sends GROUP BY tenant, campaign, variant, hour")
        client.command("ALTER TABLE sends DROP COLUMN recipient_key")
        client.command("ALTER TABLE schema_migrations DELETE WHERE name LIKE 'query:%'", settings={"mutations_sync": 2})
    finally:
        client.close()
    assert "recipient_key" not in [r[0] for r in clickhouse.rows(f"DESCRIBE TABLE {clickhouse.database}.sends")]
    migrate(clickhouse.dsn, clickhouse.database, retention_days=3650, dead_letter_retention_days=3650)
    columns = [r[0] for r in clickhouse.rows(f"DESCRIBE TABLE {clickhouse.database}.sends")]
    assert columns[columns.index("recipient_id") + 1] == "recipient_key"
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(1_790_000_000, UTC)
    client = clickhouse.client()
    try:
        client.insert("sends", [("", "c", "A", "m-1", "r-1", "k" * 64, at), ("", "c", "A", "m-2", "r-2", "k" * 64, at)],
                      column_names=["tenant", "campaign", "variant", "message_id", "recipient_id", "recipient_key",
                                    "sent_at"])
    finally:
        client.close()
    # one recipient by its key (two ids with one key here): the view counts keys, not ids
    assert clickhouse.rows("SELECT uniqExactMerge(delivered), uniqExactMerge(recipients) FROM campaign_sends_hourly") \
        == [(2, 1)]


async def test_a_replay_from_the_start_attributes_conversions_whose_sends_come_later_in_the_topic(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """Read from the start in small batches, the small conversions topic runs ahead of the large sends
    topic: conversions naming only their message must wait for their sends, not become unattributed
    dead letters."""
    sends = [Send("", "replay", "A", f"m{i}", f"r{i}", 1_790_000_000.0 + i, "example.com", 1) for i in range(1500)]
    conversions = [Conversion("", f"order-{i}", 1_790_100_000.0, 10.0, "EUR", message=f"m{i}")
                   for i in range(1400, 1500)]  # the last sends' messages
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(kafka_topics.sends, s.encode(), key=s.message.encode()) for s in sends]
        futures += [await producer.send(kafka_topics.conversions, c.encode(), key=c.message.encode())
                    for c in conversions]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    runner = KafkaRunner(kafka_bootstrap, f"g-replay-{kafka_topics.prefix}", kafka_topics, build_processor(s, keyring),
                         writer, max_records=100, max_ms=50, sends_slack=0)  # a backlog of a few batches here
    try:
        await run_until(runner, lambda: runner.records_done >= len(sends) + len(conversions))
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT reason, count() FROM dead_letters GROUP BY reason") == []
    assert clickhouse.rows("SELECT count(), countIf(campaign = 'replay' AND variant = 'A') FROM conversions") == [
        (100, 100)]
