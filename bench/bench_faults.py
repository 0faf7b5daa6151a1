"""The edge through Kafka outages, full length, on a real broker (deploy/kafka/kafka.sh in a temp folder).

1. Exactly once: a steady load (--eo-rate req/s, every request a different pixel) on the edge; the broker
   is stopped for --eo-outage seconds (20) and started again. A processor (KafkaRunner + ClickHouseWriter
   on chDB, restarted if it stops with an error) runs throughout. Then: every hit that got an answer is in
   ClickHouse exactly once (sum(sign) = 1 and one hit id per message; no hit id twice with sign = 1,
   revision 0), and nothing that was not answered is.
2. Memory and latency through a long outage: --rss-rate req/s (5,000) while the broker is down for
   --rss-outage seconds (60), then until the spool has drained into Kafka. The edge's RSS is sampled
   every half second; the p99 latency of the requests sent during the outage is reported; every
   answered hit must be in Kafka afterwards (end offsets of hits.raw).

3. Failover: the same books as 1, on a three-node cluster (deploy/kafka/cluster.sh: replication factor 3,
   min.insync.replicas 2) at --fo-rate req/s (1000); the node leading most hits.raw partitions is killed
   (SIGKILL) and started again --fo-down seconds (10) later; the processor consumes throughout. Reported:
   answered, missing, duplicated and the edge's p99 latency while the node was down.

Servers pinned to core 0, load generator and broker(s) on core 1; all traffic to 127.0.0.1. The last line:

    eo_answered=… eo_missing=… eo_duplicated=… eo_p99_outage_ms=… rss_rate=… rss_max_mb=… \
rss_p99_outage_ms=… rss_answered=… rss_in_kafka=… fo_answered=… fo_missing=… fo_duplicated=… \
fo_p99_failover_ms=…

Run: .venv/bin/python bench/bench_faults.py   (make bench-faults)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

import edge_rig as rig
from loadgen import ConstantRate, get_requests

from tests.plugins.kafka import Cluster, create_topics, partition_leaders

DATABASE = "bench_faults"


def processor_main(bootstrap: str, prefix: str, dsn: str, key_spec: str, stop: Any, progress: Any) -> None:
    """A processor in its own process (chDB lets one process open a path): consumes until `stop` is set,
    reporting how many messages ClickHouse holds on `progress`."""
    from pixeltrack.compose.build import build_processor
    from processors.clickhouse import migrate
    from processors.kafka_runner import KafkaRunner
    from processors.writer import ClickHouseWriter
    from schemas.settings import Settings
    from schemas.topics import Topics

    migrate(dsn, DATABASE, 3650)
    settings = Settings(_env_file=None, signing_keys=key_spec, topic_prefix=prefix)  # type: ignore[call-arg]

    async def main() -> None:
        writer = ClickHouseWriter(dsn, DATABASE)
        done = asyncio.Event()
        topics = Topics(prefix)

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(1.0)
                _, rows = await writer.query("SELECT uniqExact(message_id), count() FROM events")
                progress.put(tuple(rows[0]))
            done.set()

        watcher = asyncio.create_task(watch())
        crashes = 0
        while not done.is_set():
            runner = KafkaRunner(bootstrap, "bench-faults", topics, build_processor(settings, settings.keyring()),
                                 writer, max_records=5000, max_ms=300)
            try:
                await runner.run(done)
            except Exception as exc:  # the broker went away under it: start again, as a supervisor would
                crashes += 1
                print(f"processor: stopped with {exc!r}; starting again", flush=True)
                await asyncio.sleep(1.0)
        await watcher
        await writer.close()
        print(f"processor: done ({crashes} restarts)", flush=True)

    rig.run_async(main())


class Fault(Protocol):
    """What goes down under load and comes back: the single broker, or one node of the cluster."""

    def stop(self) -> None: ...
    def start(self) -> object: ...


class BenchCluster(Cluster):
    """The three-node cluster, niced like the single broker (rig.Broker) but free to run on both cores:
    three brokers, a controller quorum, the processor and the load generator on the load core alone
    starve the controller (heartbeats time out, a failover took 8 s instead of 3 and the restarted node
    20 s to come back), which measures the machine, not the failover."""

    def _run(self, *args: str, timeout: float) -> str:
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 2)))  # the JVMs inherit it
        try:
            return super()._run(*args, timeout=timeout)
        finally:
            os.sched_setaffinity(0, mine)

    def _nice(self, node: int) -> None:
        rig.yield_to_load(int((self.folder / f"node{node}" / "broker.pid").read_text()))

    def start(self) -> str:
        bootstrap = super().start()
        for node in (1, 2, 3):
            self._nice(node)
        return bootstrap

    def start_node(self, node: int) -> None:
        super().start_node(node)
        self._nice(node)


class LeaderKill:
    """The fault of the failover: SIGKILL to the node leading most partitions of `topic`; start it again."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.cluster = cluster
        self.topic = topic
        self.node = 0

    def stop(self) -> None:
        leaders = asyncio.run(partition_leaders(self.cluster.bootstrap, self.topic))
        led = [leader for leader, _ in leaders.values()]
        self.node = max(set(led), key=led.count)
        self.cluster.stop_node(self.node, "KILL")
        rig.log(f"  {time.strftime('%H:%M:%S')} killed node {self.node}, leader of {led.count(self.node)} of "
                f"{len(led)} {self.topic} partitions")

    def start(self) -> None:
        self.cluster.start_node(self.node)


async def load_with_outage(port: int, requests: list[bytes], rate: float, before: float, outage: float,
                           after: float, broker: Fault, edge_pid: int,
                           rss: list[tuple[float, float]]) -> tuple[ConstantRate, float, float]:
    """Runs the load; stops the broker `before` s in, starts it `outage` s later; samples the edge's RSS.
    Returns the generator and the outage window (perf_counter times)."""
    window: dict[str, float] = {}

    async def timeline() -> None:
        await asyncio.sleep(before)
        await asyncio.to_thread(broker.stop)
        window["down"] = time.perf_counter()
        rig.log(f"  stopped at +{before:.0f}s")
        await asyncio.sleep(outage)
        window["up"] = time.perf_counter()
        await asyncio.to_thread(broker.start)
        rig.log(f"  back after {time.perf_counter() - window['down']:.0f}s down")

    async def sample() -> None:
        while True:
            rss.append((time.perf_counter(), rig.rss_mb(edge_pid)))
            await asyncio.sleep(0.5)

    total = before + outage + after + 12  # + the broker's stop and start
    gen = ConstantRate("127.0.0.1", port, requests, rate=rate, duration=total, connections=128)
    sampler = asyncio.create_task(sample())
    events = asyncio.create_task(timeline())
    await gen.run()
    await events
    sampler.cancel()
    return gen, window["down"], window["up"]


def wait_drained(port: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (rig.metric(port, "pixeltrack_edge_spool_bytes") == 0
                and rig.metric(port, "pixeltrack_edge_forwarder_direct") == 1):
            break
        time.sleep(1.0)
    return rig.metric(port, "pixeltrack_edge_spool_bytes")


async def end_offsets(bootstrap: str, topic: str) -> int:
    """Records on `topic` (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        offsets = await consumer.end_offsets(parts)
        return int(sum(offsets.values()))
    finally:
        await consumer.stop()


def exactly_once(args: argparse.Namespace, tmp: Path, broker: rig.Broker, key_spec: str, keyring: Any) -> str:
    prefix = "eo."
    rig.run_async(rig.create_topics(broker.bootstrap, [f"{prefix}hits.raw", f"{prefix}hits.dlq"]))
    rig.log(f"exactly-once: {args.eo_rate:.0f} req/s, broker down {args.eo_outage:.0f}s")
    answered, missing, duplicated, p99 = books_through(tmp, broker.bootstrap, broker, "eo", args.eo_rate,
                                                       args.eo_outage, key_spec, keyring)
    return f"eo_answered={answered} eo_missing={missing} eo_duplicated={duplicated} eo_p99_outage_ms={p99:.2f}"


def failover(args: argparse.Namespace, tmp: Path, key_spec: str, keyring: Any) -> str:
    cluster = BenchCluster(tmp / "kafka-cluster")
    rig.log(f"failover: starting a three-node cluster in {cluster.folder}")
    started = time.monotonic()
    try:
        cluster.start()
        rig.log(f"  cluster up in {time.monotonic() - started:.1f}s: {cluster.bootstrap}")
        prefix = "fo."
        rig.run_async(create_topics(cluster.bootstrap, [f"{prefix}hits.raw", f"{prefix}hits.dlq"], replication=3))
        rig.log(f"failover: {args.fo_rate:.0f} req/s, the hits.raw leader killed for {args.fo_down:.0f}s")
        answered, missing, duplicated, p99 = books_through(
            tmp, cluster.bootstrap, LeaderKill(cluster, f"{prefix}hits.raw"), "fo", args.fo_rate, args.fo_down,
            key_spec, keyring)
        # When the edge's forwarder fell back to its spool and when it was direct again, from its log.
        for line in (tmp / "fo-edge.log").read_text(errors="replace").splitlines():
            if "forwarder:" in line or "publish of" in line:
                rig.log(f"  edge: {line}")
    finally:
        try:
            cluster.stop()
        except (subprocess.SubprocessError, OSError) as exc:
            rig.log(f"kafka cluster: stop failed: {exc}")
    return f"fo_answered={answered} fo_missing={missing} fo_duplicated={duplicated} fo_p99_failover_ms={p99:.2f}"


def books_through(tmp: Path, bootstrap: str, fault: Fault, run: str, rate: float, outage: float, key_spec: str,
                  keyring: Any) -> tuple[int, int, int, float]:
    """A steady load on an edge with `fault` on for `outage` s, a processor into chDB throughout; then the
    books: (answered, missing, duplicated, p99 ms of the requests sent while the fault was on)."""
    prefix = f"{run}."
    seconds = 5 + outage + 12 + 10
    n = int(rate * (seconds + 15))
    rig.log(f"  minting {n} pixels, one message each")
    paths = rig.pixel_paths(keyring, n, run=run)
    messages = [f"{run}-m{i}" for i in range(n)]
    dsn = f"chdb://{tmp / f'{run}-chdb'}"
    ctx = multiprocessing.get_context("spawn")
    stop, progress = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=processor_main, args=(bootstrap, prefix, dsn, key_spec, stop, progress))
    proc.start()
    port = rig.free_port()
    edge = rig.start_edge(rig.edge_env(key_spec, bootstrap, tmp / f"{run}-spool", prefix), port,
                          tmp / f"{run}-edge.log")
    try:
        rss: list[tuple[float, float]] = []
        gen, down, up = rig.run_async(load_with_outage(  # type: ignore[misc]
            port, get_requests(paths), rate, 5, outage, 10, fault, edge.pid, rss))
        o = gen.outcome
        answered = {messages[i] for i in o.ok_requests}
        p99 = o.percentile(99, since=down, until=up) * 1000
        p99_before = o.percentile(99, until=down) * 1000
        rig.log(f"  sent {o.sent} answered {o.answered} (200: {len(o.ok_requests)}) errors {o.errors} "
                f"unsent {o.unsent}; p99 before the outage {p99_before:.2f} ms, during it {p99:.2f} ms, "
                f"max RSS {max(r for _, r in rss):.0f} MB")
        left = wait_drained(port, 180)
        rig.log(f"  spool drained ({left:.0f} bytes left); replayed "
                f"{rig.metric(port, 'pixeltrack_edge_replayed_total'):.0f} records")
        deadline = time.monotonic() + 300
        stored = (0, 0)
        while time.monotonic() < deadline and stored[0] < len(answered) and proc.is_alive():
            try:
                stored = progress.get(timeout=5)
            except Exception:
                continue
        rig.log(f"  processor: {stored[0]} messages, {stored[1]} event rows in ClickHouse")
        time.sleep(3)  # a late duplicate, if any, would land now
    finally:
        stop.set()
        proc.join(120)
        if proc.is_alive():
            proc.kill()
        rig.stop(edge)

    from processors.clickhouse import connect

    client = connect(dsn, DATABASE)
    try:
        rows = client.query("SELECT message_id, sum(sign), uniqExact(hit_id) FROM events GROUP BY message_id")
        per_message = {str(m): (int(s), int(u)) for m, s, u in rows.result_rows}
        twice = client.query("SELECT count() FROM (SELECT hit_id FROM events WHERE sign = 1 AND revision = 0 "
                             "GROUP BY hit_id HAVING count() > 1)").result_rows[0][0]
    finally:
        client.close()
    missing = len(answered - per_message.keys())
    duplicated = sum(1 for m in answered if per_message.get(m, (1, 1)) != (1, 1)) + int(twice)
    unanswered_stored = len(per_message.keys() - answered)
    rig.log(f"  ClickHouse: {len(per_message)} messages; answered {len(answered)}, missing {missing}, "
            f"duplicated {duplicated}, stored but not answered {unanswered_stored} (requests cut off by the "
            f"end of the run)")
    return len(answered), missing, duplicated, p99


def long_outage(args: argparse.Namespace, tmp: Path, broker: rig.Broker, key_spec: str, keyring: Any) -> str:
    prefix = "rss."
    rig.run_async(rig.create_topics(broker.bootstrap, [f"{prefix}hits.raw", f"{prefix}hits.dlq"]))
    paths = rig.pixel_paths(keyring, 50_000, run="rss")
    port = rig.free_port()
    edge = rig.start_edge(rig.edge_env(key_spec, broker.bootstrap, tmp / "rss-spool", prefix), port,
                          tmp / "rss-edge.log")
    try:
        rig.log(f"long outage: {args.rss_rate:.0f} req/s, broker down {args.rss_outage:.0f}s, edge RSS sampled")
        rss: list[tuple[float, float]] = []
        gen, down, up = rig.run_async(load_with_outage(  # type: ignore[misc]
            port, get_requests(paths), args.rss_rate, 5, args.rss_outage, 25, broker, edge.pid, rss))
        o = gen.outcome
        p99 = o.percentile(99, since=down, until=up) * 1000
        p50 = o.percentile(50, since=down, until=up) * 1000
        before = max((r for t, r in rss if t < down), default=float("nan"))
        during = max((r for t, r in rss if down <= t <= up), default=float("nan"))
        peak = max(r for _, r in rss)
        rig.log(f"  sent {o.sent} answered {o.answered} (200: {len(o.ok_requests)}) errors {o.errors} unsent "
                f"{o.unsent}; during the outage p50 {p50:.2f} ms p99 {p99:.2f} ms")
        rig.log(f"  RSS: {before:.0f} MB before, max {during:.0f} MB during the outage, max {peak:.0f} MB "
                f"overall (catch-up included)")
        t0 = rss[0][0]
        rig.log("  RSS timeline (s:MB): " + " ".join(f"{t - t0:.0f}:{r:.0f}" for t, r in rss[::10]))
        left = wait_drained(port, 300)
        rss_after = rig.rss_mb(edge.pid)
        in_kafka = rig.run_async(end_offsets(broker.bootstrap, f"{prefix}hits.raw"))
        rig.log(f"  spool drained ({left:.0f} bytes left), RSS {rss_after:.0f} MB; hits.raw holds {in_kafka} "
                f"records for {len(o.ok_requests)} answered (replays may add copies)")
    finally:
        rig.stop(edge)
    return (f"rss_rate={args.rss_rate:.0f} rss_max_mb={peak:.0f} rss_p99_outage_ms={p99:.2f} "
            f"rss_answered={len(o.ok_requests)} rss_in_kafka={in_kafka}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eo-rate", type=float, default=1000.0)
    p.add_argument("--eo-outage", type=float, default=20.0)
    p.add_argument("--rss-rate", type=float, default=5000.0)
    p.add_argument("--rss-outage", type=float, default=60.0)
    p.add_argument("--fo-rate", type=float, default=1000.0)
    p.add_argument("--fo-down", type=float, default=10.0)
    p.add_argument("--only", choices=["eo", "rss", "fo"], help="run one part")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs)")
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench_faults pins the edge and the load to different cores: it needs 2")
    os.sched_setaffinity(0, {int(rig.LOAD_CORE)})
    tmp = Path(tempfile.mkdtemp(prefix="pixeltrack-bench-faults-"))
    broker = rig.Broker(tmp / "kafka")
    parts: list[str] = []
    try:
        key_spec, keyring = rig.bench_keys()
        if args.only != "fo":
            rig.log(f"kafka: starting a broker in {tmp / 'kafka'}")
            broker.start()
        if args.only in (None, "eo"):
            parts.append(exactly_once(args, tmp, broker, key_spec, keyring))
        if args.only in (None, "rss"):
            parts.append(long_outage(args, tmp, broker, key_spec, keyring))
        if args.only != "fo":
            broker.stop()  # the single broker's core is the cluster's next
        if args.only in (None, "fo"):
            parts.append(failover(args, tmp, key_spec, keyring))
    finally:
        try:
            broker.stop()
        except (subprocess.SubprocessError, OSError) as exc:
            rig.log(f"kafka: stop failed: {exc}")
        if args.keep:
            rig.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rig.log(" ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
