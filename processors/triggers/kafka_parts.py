"""What both trigger runners need of Kafka: their topics made or waited for, and which offsets may be committed."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

_TOPIC_ALREADY_EXISTS = 36
_DLQ_RETENTION_MS = 30 * 86400 * 1000


async def wait_for_topics(admin: AIOKafkaAdminClient, names: Iterable[str], wait: float) -> set[str]:
    """The topics that exist, once every one of `names` does or `wait` seconds have passed (topics created
    moments ago, by a topics job: their metadata is still spreading). Only lists topics: a metadata
    request naming a missing topic creates it with the broker's defaults where auto-creation is on."""
    wanted = set(names)
    existing = set(await admin.list_topics())
    deadline = time.monotonic() + wait
    while not wanted <= existing and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        existing = set(await admin.list_topics())
    return existing


def dlq_topic(name: str, partitions: int, replication_factor: int) -> NewTopic:
    """triggers.dlq as the runners create it: dead letters kept 30 days."""
    return NewTopic(name, partitions, replication_factor, topic_configs={"retention.ms": str(_DLQ_RETENTION_MS)})


async def create_topics(admin: AIOKafkaAdminClient, missing: list[NewTopic]) -> None:
    """Creates `missing` (one already made by another process meanwhile is fine); RuntimeError names a
    topic that could not be."""
    resp = await admin.create_topics(missing)
    for name, code, *rest in resp.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"creating topic {name!r} failed (error {code}: {rest[0] if rest else ''})")


class CommitPoints:
    """One assigned partition's offsets consumed and not yet committed, and which of them are done (their
    effects durable): a runner commits up to the first one still in flight, never past it."""

    __slots__ = ("done", "read")

    def __init__(self) -> None:
        self.read: deque[int] = deque()  # consumed, in order
        self.done: set[int] = set()      # of those, the ones whose effects are durable

    def commit_point(self) -> int | None:
        """The offset to commit (one past the last record before the first one still in flight), if it moved."""
        moved = None
        while self.read and self.read[0] in self.done:
            offset = self.read.popleft()
            self.done.discard(offset)
            moved = offset + 1
        return moved


def commit_points(parts: Iterable[tuple[TopicPartition, CommitPoints]]) -> dict[TopicPartition, int]:
    """The offsets to commit of the partitions whose commit point moved."""
    out = {}
    for tp, part in parts:
        offset = part.commit_point()
        if offset is not None:
            out[tp] = offset
    return out
