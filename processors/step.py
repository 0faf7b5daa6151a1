"""One batch through the pipeline and into ClickHouse: the steps both runners share."""

from __future__ import annotations

import time
from collections.abc import Sequence

from processors import metrics
from processors.pipeline import BatchOutput, HitProcessor, SourceRecord
from processors.writer import ClickHouseWriter


async def write_batch(writer: ClickHouseWriter, out: BatchOutput, token: str) -> None:
    """Inserts a processed batch's rows under the dedup `token`; returns once ClickHouse has them."""
    started = time.perf_counter()
    await writer.write(out.tables(), token)
    metrics.BATCH_SECONDS.labels("insert").observe(time.perf_counter() - started)


async def process_and_write(processor: HitProcessor, writer: ClickHouseWriter, records: Sequence[SourceRecord],
                            token: str) -> BatchOutput:
    """Looks up what the batch needs, processes it, and inserts its rows under the dedup `token`.
    Returns once ClickHouse has the rows; the caller then publishes dead letters and acknowledges."""
    out = processor.process(records, await writer.lookup(processor.lookups(records)))
    await write_batch(writer, out, token)
    return out
