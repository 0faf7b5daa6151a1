"""A three-node Kafka cluster loses the leader of the hits partitions under load (kill -9) and gets it back:
two edges keep answering, one processor keeps consuming through the leader change, and every answered hit
is in ClickHouse exactly once. Load goes to 127.0.0.1 only, bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.settings import Settings
from tests.integration.edge_harness import (
    EdgeProcess,
    LoadResult,
    fault_keyring,
    free_port,
    pixel_paths,
    steady_load,
)
from tests.integration.test_edge_faults import EXIT_BOUND_S, edge_env, per_message, processor_that_restarts
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.kafka import Cluster, fresh_topics, partition_leaders
from tests.plugins.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RATE_PER_EDGE = 150.0  # requests/s on each of the two edges
LOAD_S = 20.0  # the load's length; the leader is killed KILL_AT_S s in and started again DOWN_S s later
# (or once the processor has moved on, if later)
KILL_AT_S = 4.0
DOWN_S = 5.0
Leaders = dict[int, tuple[int, int]]  # partition -> (leader node id, in-sync replicas)


async def leaders_now(bootstrap: str, topic: str, timeout: float = 20.0) -> Leaders:
    """partition -> (leader, ISR size), retried while the cluster answers with errors or no leader (-1)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            leaders = await partition_leaders(bootstrap, topic)
            if leaders and all(leader >= 0 for leader, _ in leaders.values()):
                return leaders
        except Exception:  # a node just killed may still be tried first; the next attempt goes elsewhere
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: no leader for every partition within {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def until_leaders(bootstrap: str, topic: str, good: Callable[[Leaders], bool], what: str,
                        timeout: float = 30.0) -> Leaders:
    """Polls the partitions' leaders until `good(leaders)` holds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        leaders = await leaders_now(bootstrap, topic)
        if good(leaders):
            return leaders
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f}s: {leaders}")
        await asyncio.sleep(0.3)


async def test_the_hits_leader_killed_under_load_every_answered_hit_once_in_clickhouse(
        tmp_path: Path, settings: Settings, kafka_cluster: Cluster, clickhouse: ClickHouseDb) -> None:
    bootstrap = kafka_cluster.bootstrap
    topics = await fresh_topics(bootstrap, replication=3)
    before = await leaders_now(bootstrap, topics.hits_raw)
    assert {isr for _, isr in before.values()} == {3}, f"hits.raw is not replicated on three nodes: {before}"
    keyring = fault_keyring()
    s = settings.model_copy(update={"topic_prefix": topics.prefix})
    edges = [EdgeProcess(edge_env(bootstrap, topics, tmp_path / f"spool-{i}", f"fo-{i}"), free_port(),
                         log=tmp_path / f"edge-{i}.log") for i in range(2)]
    results = [LoadResult() for _ in edges]
    stop_load = asyncio.Event()
    exit_codes: list[int] = []
    killed: int | None = None
    loads: list[asyncio.Task[None]] = []

    def stored() -> int:
        return int(clickhouse.rows("SELECT count() FROM events")[0][0])

    async with processor_that_restarts(s, keyring, bootstrap, topics, clickhouse) as crashes:
        try:
            for edge in edges:
                await edge.start()
            loads += [asyncio.create_task(steady_load(edge.base, pixel_paths(keyring, f"fo{i}"), rate=RATE_PER_EDGE,
                                                     duration=LOAD_S, result=result, stop=stop_load))
                     for i, (edge, result) in enumerate(zip(edges, results, strict=True))]
            await asyncio.sleep(KILL_AT_S)
            # The node leading most hits partitions (the first such, on a tie) is killed.
            led = Counter(leader for leader, _ in (await leaders_now(bootstrap, topics.hits_raw)).values())
            killed = led.most_common(1)[0][0]
            stored_at_kill = stored()
            await asyncio.to_thread(kafka_cluster.stop_node, killed, "KILL")
            killed_at = time.monotonic()
            # Its partitions are led by the other two nodes once the controller fenced it.
            await until_leaders(bootstrap, topics.hits_raw,
                                lambda ls: all(leader != killed for leader, _ in ls.values()),
                                what=f"leadership moved off node {killed}", timeout=20)
            # The processor goes on while the node is down: what ClickHouse holds grows by a second's load.
            await eventually(lambda: stored() >= stored_at_kill + 2 * RATE_PER_EDGE, timeout=30,
                             what=f"the processor consuming with node {killed} down")
            await asyncio.sleep(max(0.0, killed_at + DOWN_S - time.monotonic()))
            await asyncio.to_thread(kafka_cluster.start_node, killed)
            restarted_at = time.monotonic()
            victim, killed = killed, None
            await asyncio.gather(*loads)
            # The restarted node caught up and is back in every ISR.
            await until_leaders(bootstrap, topics.hits_raw, lambda ls: all(isr == 3 for _, isr in ls.values()),
                                what=f"node {victim} back in the hits partitions' ISRs", timeout=30)
        finally:
            stop_load.set()
            await asyncio.gather(*loads, return_exceptions=True)
            if killed is not None:  # the module's other tests (and the fixture's stop) want all three
                await asyncio.to_thread(kafka_cluster.start_node, killed)
            for edge in edges:
                with contextlib.suppress(AssertionError):
                    if edge.proc is not None and edge.proc.poll() is None:
                        edge.signal(signal.SIGTERM)
                        exit_codes.append(await edge.wait(EXIT_BOUND_S))
                edge.kill()
        answered = {m for r in results for m in r.answered}

        def all_stored() -> bool:
            return answered <= per_message(clickhouse).keys()

        await eventually(all_stored, timeout=60, what="every answered hit in ClickHouse")
        await asyncio.sleep(1.0)  # a late duplicate, if there were one, would land now
    assert exit_codes == [0, 0]
    assert [r.failed for r in results] == [[], []]  # the edges answered every request through the failover
    assert len(answered) >= 0.9 * 2 * RATE_PER_EDGE * LOAD_S
    during = [lat for r in results for at, lat in r.latencies if killed_at <= at <= restarted_at]
    assert len(during) >= RATE_PER_EDGE * DOWN_S
    # One processor, never restarted, kept consuming while a node was down.
    assert crashes == []
    stored_rows = per_message(clickhouse)
    assert {m: v for m, v in stored_rows.items() if m in answered and v != (1, 1)} == {}
    assert stored_rows.keys() <= answered  # every request was answered
    twice = clickhouse.rows("SELECT hit_id FROM events WHERE sign = 1 AND revision = 0 "
                            "GROUP BY hit_id HAVING count() > 1")
    assert twice == []
