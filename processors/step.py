"""One batch through the pipeline and into ClickHouse: the step both runners share."""

from __future__ import annotations

import time
from collections.abc import Sequence

from processors import metrics
from processors.pipeline import BatchOutput, HitProcessor, SourceRecord
from processors.writer import ClickHouseWriter


async def process_and_write(processor: HitProcessor, writer: ClickHouseWriter, records: Sequence[SourceRecord],
                            token: str) -> BatchOutput:
    """Looks up what the batch needs, processes it, and inserts its rows under the dedup `token`.
    Returns once ClickHouse has the rows; the caller then publishes dead letters and acknowledges."""
    context = await writer.lookup(processor.lookups(records))
    out = processor.process(records, context)
    started = time.perf_counter()
    await writer.write(out.tables(), token)
    metrics.BATCH_SECONDS.labels("insert").observe(time.perf_counter() - started)
    return out
