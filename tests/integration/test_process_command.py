"""`pixeltrack process` on real Kafka and chDB: it stops on its signal within its bound, and past the
bound it ends the process instead of hanging on an insert that does not return."""

from __future__ import annotations

import asyncio
import base64
import time

from pixeltrack.compose.process import run_processor
from schemas.aio import STUCK_EXIT_CODE
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_exactly_once import produce_hits
from tests.integration.writers import SlowWriter
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.waiting import eventually


def processor_settings(keyring: Keyring, bootstrap: str, topics: Topics, db: ClickHouseDb) -> Settings:
    """What PIXELTRACK_* would give a processor: the test's keys, broker, topics and database."""
    keys = ",".join(f"{kid}:{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"
                    for kid, secret in keyring._keys.items())
    return Settings(_env_file=None, spool_dir=None, signing_keys=keys,  # type: ignore[call-arg]
                    signing_key_id=keyring.current,
                    kafka_bootstrap=bootstrap, topic_prefix=topics.prefix, consumer_group=f"g-{topics.prefix}",
                    clickhouse_dsn=db.dsn, clickhouse_database=db.database, batch_max_records=100,
                    batch_max_ms=50)


def stored(db: ClickHouseDb) -> int:
    return int(db.rows("SELECT uniqExact(hit_id) FROM events")[0][0])


async def test_a_stop_ends_it_normally_after_writing_what_it_fetched(
        keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    hits = await produce_hits(kafka_bootstrap, kafka_topics, keyring, "cmd", 150, seed=8)
    ended: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_processor(processor_settings(keyring, kafka_bootstrap, kafka_topics, clickhouse),
                                             stop, end_process=ended.append))
    await eventually(lambda: stored(clickhouse) >= len(hits) or task.done(), timeout=60, what="every hit stored")
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 30)
    assert ended == []
    assert time.monotonic() - started < 15
    assert stored(clickhouse) == len(hits)


async def test_past_its_bound_a_stuck_shutdown_ends_the_process(
        keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    """The stop lands while an insert hangs (a server that stopped answering): the process is ended
    once the bound is past, not held for as long as the insert takes."""
    await produce_hits(kafka_bootstrap, kafka_topics, keyring, "stuck", 50, seed=9)
    writer = SlowWriter(clickhouse.dsn, clickhouse.database, [], delay=6.0)
    ended: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_processor(processor_settings(keyring, kafka_bootstrap, kafka_topics, clickhouse),
                                             stop, writer=writer, bound=1.0, end_process=ended.append))
    await eventually(lambda: writer.inserting or task.done(), timeout=60, what="an insert under way")
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 10)  # returns once end_process was called (here it does not exit)
    assert ended == [STUCK_EXIT_CODE]
    assert 1.0 <= time.monotonic() - started < 3.0
    # The abandoned shutdown goes on in the background here; let it end before the loop closes.
    await eventually(lambda: not any(t.get_name() == "pixeltrack-processor" for t in asyncio.all_tasks()),
                     timeout=60, what="the abandoned runner ended")
