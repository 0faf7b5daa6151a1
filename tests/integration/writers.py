"""The real ClickHouse writer with faults added at its insert: slow inserts, failing inserts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from processors.pipeline import BatchOutput, HitProcessor, SourceRecord
from processors.step import write_batch
from processors.writer import ClickHouseWriter


class SlowWriter(ClickHouseWriter):
    """The real writer, each insert into events held `delay` seconds longer (a busy server), noting
    when inserts run in `log` and in `inserting`."""

    def __init__(self, dsn: str, database: str, log: list[tuple[str, int]], delay: float = 0.3) -> None:
        super().__init__(dsn, database)
        self.log = log
        self.inserting = False
        self._delay = delay

    def _insert(self, client: Any, table: str, columns: Sequence[str], block: bytes, dedup_token: str) -> None:
        if table != "events":
            super()._insert(client, table, columns, block, dedup_token)
            return
        self.inserting = True
        self.log.append(("insert", 0))
        time.sleep(self._delay)
        super()._insert(client, table, columns, block, dedup_token)
        self.inserting = False
        self.log.append(("inserted", 0))


class FailingWriter(ClickHouseWriter):
    """The real writer whose inserts into events fail while `failing` is set (a full disk), counting
    the failed tries."""

    def __init__(self, dsn: str, database: str) -> None:
        super().__init__(dsn, database, retry_delay=0.01)
        self.failing = False
        self.failures = 0

    def _insert(self, client: Any, table: str, columns: Sequence[str], block: bytes, dedup_token: str) -> None:
        if table == "events" and self.failing:
            self.failures += 1
            raise OSError(28, "No space left on device")
        super()._insert(client, table, columns, block, dedup_token)


async def process_and_write(processor: HitProcessor, writer: ClickHouseWriter, records: Sequence[SourceRecord],
                            token: str) -> BatchOutput:
    """One batch as the batch loop takes it, without a transport: looked up, processed, inserted under
    `token` (its dead letters among its rows); returns once ClickHouse has them."""
    out = processor.process(records, await writer.lookup(processor.lookups(records)))
    await write_batch(writer, out, token)
    return out


class SlowPositionsWriter(ClickHouseWriter):
    """The real writer, each answer about the stored Kafka positions held `delay` seconds longer (a
    busy server answering a new partition owner)."""

    def __init__(self, dsn: str, database: str, delay: float = 2.0) -> None:
        super().__init__(dsn, database)
        self._delay = delay

    def positions_sync(self) -> dict[tuple[str, int], int]:
        time.sleep(self._delay)
        return super().positions_sync()


class PositionlessWriter(ClickHouseWriter):
    """The real writer that cannot say which Kafka positions ClickHouse holds (the server away when a
    processor is given its partitions)."""

    def positions_sync(self) -> dict[tuple[str, int], int]:
        raise OSError(111, "Connection refused")
