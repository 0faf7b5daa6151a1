"""The embedded runner on chDB: processing overlaps inserts, inserts stay in order, nothing is lost
while inserts fail, and the numbers equal the campaign's truth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pixeltrack.compose.build import build_processor
from processors.local_runner import LocalRunner
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_analytics import FIXTURE, TRUTH_COLUMNS, summary
from tests.integration.writers import FailingWriter, SlowWriter
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import load_patterns, simulate
from tests.plugins.stand_in import with_process
from tests.plugins.waiting import eventually


def bus_of(records: list[Record]) -> asyncio.Queue[Record]:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    for r in records:
        bus.put_nowait(r)
    return bus


def sim_hits(keyring: Keyring, campaign: str, sends: int, seed: int) -> list[Record]:
    """A simulated campaign's hits.raw records, every recipient engaged."""
    sim = simulate(load_patterns(FIXTURE), campaign, sends, engaged_share=1.0, seed=seed)
    return [r for r in sim.records(keyring, Topics()) if r.topic == Topics().hits_raw]


def failing_runner(db: ClickHouseDb, settings: Settings, keyring: Keyring, records: list[Record], max_records: int,
                   retry_max_delay: float) -> tuple[FailingWriter, asyncio.Queue[Record], LocalRunner, asyncio.Event,
                                                    asyncio.Task[None]]:
    """A runner started over `records` whose inserts into events fail (until writer.failing is unset)."""
    writer = FailingWriter(db.dsn, db.database)
    writer.failing = True
    bus = bus_of(records)
    runner = LocalRunner(bus, build_processor(settings, keyring), writer, max_records=max_records, max_ms=20,
                         retry_max_delay=retry_max_delay)
    stop = asyncio.Event()
    return writer, bus, runner, stop, asyncio.create_task(runner.run(stop))


async def test_batches_overlap_inserts_in_order_and_the_numbers_equal_the_truth(
        clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring) -> None:
    """Sends, hits and conversions through the bus in small batches, each insert slowed: a batch is
    processed while the previous one is inserted (conversions in it or not), inserts run one at a time,
    a dead letter loops back and is stored, and the summary equals the truth."""
    sim = simulate(load_patterns(FIXTURE), "local", 1500, engaged_share=0.6, seed=3)
    t = Topics()
    # Sends, then hits with the conversions spread among them: every batch of hits asks ClickHouse
    # about conversions, and overlaps the insert all the same (memory answers for the batch in flight).
    records = list(sim.records(keyring, t))
    conversions = [r for r in records if r.topic == t.conversions]
    hits = [r for r in records if r.topic == t.hits_raw]
    step = len(hits) // len(conversions) + 1
    mixed = [r for i, c in enumerate(conversions) for r in (*hits[i * step:(i + 1) * step], c)]
    records = [r for r in records if r.topic == t.sends] + mixed + hits[len(conversions) * step:]
    assert len(records) == len(list(sim.records(keyring, t)))
    junk = Record(Topics().hits_raw, None, b"{not json")
    log: list[tuple[str, int]] = []
    writer = SlowWriter(clickhouse.dsn, clickhouse.database, log, delay=0.1)
    processor = build_processor(settings, keyring)
    overlapped: list[bool] = []
    process = processor.process

    def noting_process(batch: Any, ctx: Any = None) -> Any:
        log.append(("process", len(batch)))
        out = process(batch, ctx)
        # Noted as it ends: the insert just handed over may not have started when it began.
        overlapped.append(writer.inserting)
        return out

    processor = with_process(processor, noting_process)
    bus = bus_of([*records, junk])
    runner = LocalRunner(bus, processor, writer, max_records=250, max_ms=20)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await eventually(lambda: bus.empty() and runner.batches_written * 250 >= len(records), timeout=120,
                         what="every record written")
        stop.set()
        await asyncio.wait_for(task, 30)
        await runner.drain()  # nothing left: the dead letter was written with its own batch
    finally:
        stop.set()
        await writer.close()
    assert any(overlapped), f"no batch was processed while the previous one was being inserted: {log}"
    assert step < 250  # a conversion in every batch of hits
    inserts = [e for e in log if e[0] != "process"]
    assert inserts == [("insert", 0), ("inserted", 0)] * (len(inserts) // 2)  # one at a time
    got = summary(clickhouse, "local")
    for variant, truth in sim.truth.items():
        want = {c: getattr(truth, c) for c in TRUTH_COLUMNS}
        assert {c: got[variant][c] for c in TRUTH_COLUMNS} == want, variant
    assert sum(t.conversions for t in sim.truth.values()) > 0
    assert clickhouse.rows("SELECT reason FROM dead_letters") == [("undecodable",)]


async def test_a_failing_insert_is_tried_again_until_it_lands_and_nothing_is_lost(
        clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring) -> None:
    """Inserts fail for a while (more tries than the writer's own): the runner keeps the batch, keeps
    taking what arrives, and once inserts work again every hit is stored once."""
    hits = sim_hits(keyring, "disk", 300, seed=4)
    writer, bus, runner, stop, task = failing_runner(clickhouse, settings, keyring, hits[:200], max_records=100,
                                                     retry_max_delay=0.2)
    try:
        await eventually(lambda: writer.failures >= 12, timeout=60, what="three rounds of failed tries")
        for r in hits[200:]:
            bus.put_nowait(r)
        assert not task.done()
        writer.failing = False
        await eventually(lambda: bus.empty() and runner.batches_written * 100 >= len(hits), timeout=60,
                         what="every hit written")
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        stop.set()
        await writer.close()
    assert clickhouse.rows("SELECT count(), uniqExact(hit_id) FROM events WHERE sign = 1 AND revision = 0") == [
        (len(hits), len(hits))]


async def test_a_stop_while_inserts_fail_ends_the_runner_with_the_error(
        clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring) -> None:
    """Stopping cuts the pause short for one last try; if that fails too, `run` raises it (the caller
    reports what was not written) instead of waiting for ever."""
    writer, _, runner, stop, task = failing_runner(clickhouse, settings, keyring, sim_hits(keyring, "stop", 50, seed=6),
                                                   max_records=1000, retry_max_delay=3600)
    try:
        await eventually(lambda: writer.failures >= 4, timeout=60, what="the writer's own tries failed")
        stop.set()
        with pytest.raises(OSError, match="No space left"):
            await asyncio.wait_for(task, 10)
    finally:
        stop.set()
        await writer.close()
    assert runner.batches_written == 0


async def test_dead_letters_of_a_restarted_serve_keep_ids_of_their_own(
        clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring) -> None:
    """A dead letter's id is its record's position; a second run (a restart) must not reuse the first
    run's positions, or its letters replace the first run's in dead_letters."""
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        for _ in range(2):
            bus = bus_of([Record(Topics().hits_raw, None, b"{not json")])
            await LocalRunner(bus, build_processor(settings, keyring), writer).drain()
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT count(), uniqExact(id) FROM dead_letters FINAL") == [(2, 2)]
