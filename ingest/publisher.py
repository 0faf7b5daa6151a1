"""Where the edge's records go: Kafka in production, the in-process bus in the embedded wiring."""

from __future__ import annotations

import asyncio
import contextlib
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
    async def reset(self) -> None:
        """After a failed or timed-out publish: drop the connection state; `start` comes next."""
    def healthy(self) -> bool: ...


class KafkaPublisher:
    """aiokafka producer with acks=all and idempotence. Runs only in the forwarder task: `send()` can
    block on a full batch or missing metadata, which must never stall a request handler."""

    def __init__(self, bootstrap: str, client_id: str, linger_ms: int = 5, compression: str = "lz4",
                 request_timeout_ms: int = 5_000) -> None:
        self._config: dict[str, object] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "compression_type": None if compression == "none" else compression,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": request_timeout_ms,
        }
        self._producer = AIOKafkaProducer(**self._config)
        self._healthy = False

    async def start(self) -> None:
        await self._producer.start()
        self._healthy = True

    async def publish(self, records: Sequence[Record]) -> None:
        try:
            futures = [await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers) or None)
                       for r in records]
            await asyncio.gather(*futures)
        except Exception:
            self._healthy = False
            raise
        self._healthy = True

    async def stop(self) -> None:
        await self._producer.stop()

    async def reset(self) -> None:
        # A producer that failed (or hung: idempotent sends can wait forever on a dead broker) is
        # replaced, not reused; stopping it is bounded so a wedged one cannot block the forwarder.
        self._healthy = False
        old, self._producer = self._producer, AIOKafkaProducer(**self._config)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 2.0)

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

    async def reset(self) -> None:
        return None

    def healthy(self) -> bool:
        return True
