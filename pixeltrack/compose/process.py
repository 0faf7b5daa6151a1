"""`pixeltrack process`: the Kafka processor's wiring (checks and schema first), its shutdown held to a bound."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from pixeltrack.compose.build import build_processor
from pixeltrack.errors import CommandError
from pixeltrack.serve_state import serve_owning
from processors.kafka_runner import KafkaRunner
from processors.writer import ClickHouseWriter
from schemas.aio import end_within
from schemas.runtime import stop_on_signals, tune_gc_for_batches
from schemas.settings import Settings
from schemas.topics import Topics

# A stop's whole shutdown (the batch in hand inserted and committed, the group left, the clients
# closed), inside the 60 s grace period that deploy/ gives processors. Each step has a timeout of its
# own but an insert into a server that stopped answering can wait longer.
STOP_BOUND = 50.0
SAFE_TO_END = "a restart resumes after what ClickHouse holds; nothing is counted twice"


def banner(settings: Settings) -> str:
    """What a processor connects to, said at its start: Kafka, its topics, ClickHouse (no credentials)."""
    from processors.clickhouse import public_dsn

    t = Topics(settings.topic_prefix)
    names = [t.hits_raw, t.hits_dlq, t.sends, t.conversions, t.unsubscribes, t.deliveries, t.consents,
             t.aggregate_sends]
    return (f"pixeltrack process: Kafka {settings.kafka_bootstrap}{settings.kafka_bootstrap_origin()} (group "
            f"{settings.consumer_group}), topics "
            f"{', '.join(names)} "
            f"(prefix {settings.topic_prefix!r}); ClickHouse {public_dsn(settings.clickhouse_dsn)} "
            f"database {settings.clickhouse_database}")


async def run_processor(settings: Settings, stop: asyncio.Event, writer: ClickHouseWriter | None = None,
                        bound: float = STOP_BOUND, end_process: Callable[[int], object] = os._exit) -> None:
    """Consumes until `stop` is set, then shuts down within `bound` seconds, or logs what it still
    waits on and ends the process (`end_process`). A runner that fails ends it with the error."""
    processor = build_processor(settings, settings.keyring())  # first: it raises on missing keys
    writer = writer or ClickHouseWriter(settings.clickhouse_dsn, settings.clickhouse_database)
    runner = KafkaRunner(settings.kafka_bootstrap, settings.consumer_group, Topics(settings.topic_prefix),
                         processor, writer, settings.batch_max_records, settings.batch_max_ms,
                         gc_schedule=tune_gc_for_batches())
    run = asyncio.create_task(runner.run(stop), name="pixeltrack-processor")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()

    async def finish() -> None:
        try:
            await run
        finally:
            await writer.close()

    await end_within(finish(), bound, SAFE_TO_END, end_process)


def prepare(settings: Settings) -> None:
    """What a processor checks and opens before it consumes, each failure one line: the signing keys, a
    chDB folder a running serve holds (refused: chDB is one process's at a time), a ClickHouse server and
    Kafka answering (before the schema or a chDB folder is created), the schema (migrated when
    migrate_on_start, else ClickHouse reached once), the metrics port."""
    from pixeltrack.compose.reach import refuse_unreachable_clickhouse, refuse_unreachable_kafka
    from processors.clickhouse import connect, migrate

    settings.keyring()  # the missing-keys error first, before anything is opened or created
    info = serve_owning(settings.clickhouse_dsn)
    if info is not None:
        raise CommandError(f"{settings.clickhouse_dsn} belongs to the running serve (pid {info.pid}, "
                           f"{info.dashboard_url}/): its own processors write there; a separate processor needs a "
                           "ClickHouse server (--clickhouse http://HOST:8123, see docs/production.md)")
    refuse_unreachable_clickhouse(settings.clickhouse_dsn)
    refuse_unreachable_kafka(settings.kafka_bootstrap)
    if settings.migrate_on_start:
        migrate(settings.clickhouse_dsn, settings.clickhouse_database, settings.retention_days,
                settings.dead_letter_retention_days)
    else:
        connect(settings.clickhouse_dsn, settings.clickhouse_database).close()  # unreachable: one line, now
    if settings.processor_metrics_port:
        from pixeltrack.compose.serve import refuse_taken_port

        refuse_taken_port(settings.processor_metrics_host, settings.processor_metrics_port,
                          "PIXELTRACK_PROCESSOR_METRICS_HOST/PORT (port 0: no metrics)")


async def run_until_signalled(settings: Settings) -> None:
    """run_processor until SIGINT/SIGTERM, its /metrics served meanwhile (pixeltrack/compose/metrics.py)."""
    from pixeltrack.compose.metrics import metrics_limits, start_metrics

    stop = asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)
    metrics = None
    if settings.processor_metrics_port:
        metrics = await start_metrics(settings.processor_metrics_host, settings.processor_metrics_port,
                                      metrics_limits(settings))
    try:
        await run_processor(settings, stop)
    finally:
        if metrics is not None:
            await metrics.cleanup()
