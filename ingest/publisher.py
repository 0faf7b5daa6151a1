"""Where the edge's records go: Kafka in production, the in-process bus in the embedded wiring."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from schemas.records import Record


class Publisher(Protocol):
    """A destination for batches of records. `publish` returns once every record is acknowledged
    (durably, for Kafka: acks=all) or raises; a raise means none of the batch may be assumed sent."""

    async def start(self) -> None: ...
    async def publish(self, records: Sequence[Record]) -> None: ...
    async def stop(self) -> None: ...
    def healthy(self) -> bool: ...


class KafkaPublisher:
    """aiokafka producer with acks=all and idempotence. Runs only in the forwarder task: `send()` can
    block on a full batch or missing metadata, which must never stall a request handler."""

    def __init__(self, bootstrap: str, client_id: str, linger_ms: int = 5, compression: str = "lz4",
                 request_timeout_ms: int = 10_000) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            compression_type=None if compression == "none" else compression,
            max_batch_size=256 * 1024,
            request_timeout_ms=request_timeout_ms,
        )
        self._healthy = False

    async def start(self) -> None:
        await self._producer.start()
        self._healthy = True

    async def publish(self, records: Sequence[Record]) -> None:
        try:
            futures = [await self._producer.send(r.topic, r.value, key=r.key) for r in records]
            await asyncio.gather(*futures)
        except Exception:
            self._healthy = False
            raise
        self._healthy = True

    async def stop(self) -> None:
        await self._producer.stop()

    def healthy(self) -> bool:
        return self._healthy


class QueuePublisher:
    """The embedded wiring's transport: records go onto an asyncio queue read by the local runner."""

    def __init__(self, queue: asyncio.Queue[Record]) -> None:
        self._queue = queue

    async def start(self) -> None:
        return None

    async def publish(self, records: Sequence[Record]) -> None:
        for record in records:
            await self._queue.put(record)

    async def stop(self) -> None:
        return None

    def healthy(self) -> bool:
        return True
