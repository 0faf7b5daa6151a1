"""A real single-node Kafka broker (KRaft) for the whole test session, and per-test topics."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"


class Broker:
    """The session's broker; `stop` and `start` (same data, same port) serve fault tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bootstrap = ""

    def start(self) -> str:
        out = subprocess.run([str(KAFKA_SH), "start", str(self.folder)], check=True, capture_output=True,
                             text=True, timeout=180)
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "stop", str(self.folder)], check=True, timeout=60)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Started once per session from the jars deploy/kafka/pom.xml resolves (`make kafka-jars`)."""
    external = os.environ.get("PIXELTRACK_TEST_KAFKA")
    if external:
        broker = Broker(Path("/nonexistent"))
        broker.bootstrap = external
        yield broker
        return
    broker = Broker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap


async def create_topics(bootstrap: str, names: list[str], partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


@pytest.fixture
async def kafka_topics(kafka_bootstrap: str) -> Topics:
    """Fresh topics (hits.raw, hits.dlq, sends, conversions) under a unique prefix, 4 partitions each."""
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    await create_topics(kafka_bootstrap, [topics.hits_raw, topics.hits_dlq, topics.sends, topics.conversions,
                                          topics.unsubscribes, topics.events_classified])
    return topics
