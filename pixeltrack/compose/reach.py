"""What a production command checks it can reach before it creates anything: Kafka, a ClickHouse server.

A refused start leaves nothing behind (no chDB folder, no schema) and says why in one line, without the
client libraries' own log lines (aiokafka logs an ERROR for each address it cannot connect to)."""

from __future__ import annotations

import asyncio
import logging

from pixeltrack.errors import CommandError

PROBE_TIMEOUT_MS = 10_000  # a broker that accepts the connection but does not answer: refused after this


def kafka_unreachable(bootstrap: str) -> str:
    """The one line that says no broker answered at `bootstrap`, and what to do."""
    return (f"cannot reach Kafka at {bootstrap}: start it (`make kafka`, see docs/production.md) or set "
            "PIXELTRACK_KAFKA_BOOTSTRAP")


def refuse_unreachable_kafka(bootstrap: str, timeout_ms: int = PROBE_TIMEOUT_MS) -> None:
    """CommandError when no broker of `bootstrap` answers a metadata request; aiokafka's own ERROR line
    for it is muted while it asks."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    async def probe() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
        try:
            await client.bootstrap()
        finally:
            await client.close()
            await asyncio.sleep(0)  # the closed connections' transports let their sockets go before the loop ends

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(asyncio.wait_for(probe(), timeout_ms / 1000 + 1))
    except (KafkaError, OSError, TimeoutError):
        raise CommandError(kafka_unreachable(bootstrap)) from None
    finally:
        kafka_log.setLevel(level)


def refuse_unreachable_clickhouse(dsn: str) -> None:
    """CommandError-like ClickHouseUnavailable (one line, no credentials) when a ClickHouse server DSN
    does not answer; a chdb:// DSN is a folder opened later (opening it would create it)."""
    if dsn.startswith("chdb://"):
        return
    from processors.clickhouse import connect

    connect(dsn, database=None).close()
