"""A KafkaRunner running in the test's event loop for the length of a block (the real processor, the real writer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pixeltrack.compose.build import build_processor
from processors.kafka_runner import KafkaRunner
from processors.writer import ClickHouseWriter
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.clickhouse import ClickHouseDb


@asynccontextmanager
async def running_processor(settings: Settings, keyring: Keyring, bootstrap: str, topics: Topics, db: ClickHouseDb,
                            group: str = "", max_records: int = 500,
                            stop_within: float = 30) -> AsyncIterator[KafkaRunner]:
    """The processor of `settings` consuming `topics` in `group` (default: one of the topics' own) into `db`;
    stopped, its last batch written, when the block ends."""
    writer = ClickHouseWriter(db.dsn, db.database)
    runner = KafkaRunner(bootstrap, group or f"g-{topics.prefix}", topics, build_processor(settings, keyring), writer,
                         max_records=max_records, max_ms=100)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_within)
        await writer.close()
