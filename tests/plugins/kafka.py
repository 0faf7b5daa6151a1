"""A real single-node Kafka broker (KRaft) for the whole test session, and per-test topics.

The brokers never outlive the test run: each is started in a session of its own (a Ctrl-C at the
terminal reaches pytest, not the script starting it), the fixture stops it in its teardown (pytest runs
teardowns after a KeyboardInterrupt too, one during the start included), and a watcher started first
stops it once the pytest process is gone however it ended (SIGTERM or SIGKILL run no teardown)."""

from __future__ import annotations

import contextlib
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


def stop_when_gone(script: Path, folder: Path) -> subprocess.Popen[bytes]:
    """A watcher, in a session of its own, that runs `script stop folder` once this process has ended;
    the fixture's teardown kills it after stopping the broker itself."""
    return subprocess.Popen(["sh", "-c", 'while kill -0 "$2" 2>/dev/null; do sleep 1; done; exec "$0" stop "$1"',
                             str(script), str(folder), str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def end_watcher(watcher: subprocess.Popen[bytes]) -> None:
    watcher.kill()
    watcher.wait()


class Broker:
    """The session's broker; `stop` and `start` (same data, same port) serve fault tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bootstrap = ""

    def start(self) -> str:
        out = subprocess.run([str(KAFKA_SH), "start", str(self.folder)], check=True, capture_output=True,
                             text=True, timeout=180, start_new_session=True)
        self.bootstrap = out.stdout.strip().splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        subprocess.run([str(KAFKA_SH), "stop", str(self.folder)], check=True, timeout=60, start_new_session=True)


@contextlib.contextmanager
def _running(kafka: Broker | Cluster, script: Path) -> Iterator[None]:
    """Started for the block and stopped after it, a failed start included; a watcher stops it should this
    pytest process die without running its teardown (SIGKILL)."""
    watcher = stop_when_gone(script, kafka.folder)
    try:
        kafka.start()
        yield
    finally:
        kafka.stop()
        end_watcher(watcher)  # not when the stop failed (a second Ctrl-C): then the watcher stops it


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
    with _running(broker, KAFKA_SH):
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap


async def create_topics(bootstrap: str, names: list[str], partitions: int = 4, replication: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replication)
                                   for n in names])
    finally:
        await admin.close()


async def fresh_topics(bootstrap: str, replication: int = 1) -> Topics:
    """Fresh topics (hits.raw, hits.dlq, sends, conversions, unsubscribes, deliveries, consents, events.classified)
    under a unique prefix, 4 partitions each."""
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    await create_topics(bootstrap, [topics.hits_raw, topics.hits_dlq, topics.sends, topics.conversions,
                                    topics.unsubscribes, topics.deliveries, topics.consents,
                                    topics.events_classified, topics.aggregate_sends], replication=replication)
    return topics


@pytest.fixture
async def kafka_topics(kafka_bootstrap: str) -> Topics:
    """Fresh topics under a unique prefix on the session's broker (see fresh_topics)."""
    return await fresh_topics(kafka_bootstrap)


CLUSTER_SH = ROOT / "deploy" / "kafka" / "cluster.sh"


class Cluster:
    """Three KRaft nodes (deploy/kafka/cluster.sh), each broker and controller, for failover tests:
    topics get replication factor 3 and min.insync.replicas 2; any one node can be stopped and started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.bootstrap = ""  # the three nodes' addresses, comma-separated

    def _run(self, *args: str, timeout: float) -> str:
        out = subprocess.run([str(CLUSTER_SH), *args], check=True, capture_output=True, text=True, timeout=timeout,
                             start_new_session=True)
        return out.stdout.strip()

    def start(self) -> str:
        self.bootstrap = self._run("start", str(self.folder), timeout=240).splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        self._run("stop", str(self.folder), timeout=120)

    def node_address(self, node: int) -> str:
        return (self.folder / f"node{node}" / "bootstrap").read_text().strip()

    def stop_node(self, node: int, sig: str = "KILL") -> None:
        self._run("stop-node", str(self.folder), str(node), sig, timeout=60)

    def start_node(self, node: int) -> None:
        self._run("start-node", str(self.folder), str(node), timeout=180)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A three-node cluster for one test module; stopped at its end, a failed start included."""
    cluster = Cluster(tmp_path_factory.mktemp("kafka-cluster"))
    with _running(cluster, CLUSTER_SH):
        yield cluster


async def partition_leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader node id, in-sync replicas) as the cluster's metadata says now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {int(p["partition"]): (int(p["leader"]), len(p["isr"])) for p in described["partitions"]}
