"""Pipeline throughput (Kafka → classify → ClickHouse on one processor core) beside aiokafka's bare
consume rate in the same run, and campaign_summary's time over millions of events.

    .venv/bin/python bench/bench_pipeline.py [--hits 200000] [--events 5000000]

Starts its own single-node Kafka broker (deploy/kafka/kafka.sh, pinned to core 1) and a chDB folder in
a temporary directory; the benchmark process itself is pinned to core 0. The processor runs twice over
the same hits, each time in a consumer group and database of its own: first with everything on core 0
(its event loop, the ClickHouse writer thread and chDB's engine threads share it: the embedded
wiring on one core), then with ClickHouse's work on core 1 (chDB's inserts, which run in the writer's
thread, and its pools; the broker shares that core), the processor alone on core 0 as it is beside a
ClickHouse server. The second pass is the last line's rate: a processor's core, with ClickHouse's work
where a deployment has it, on other machines (deploy/); the first is the embedded wiring (`pixeltrack
serve`), where the engine's work competes for the same core. A rate spans the first batch reaching
the processor to the last one committed; beside it, CPU microseconds per hit by thread (steadier than
the rate on a shared machine), and in the second pass the processor's own share (the event loop, and
the writer's thread outside the inserts).

The summary is an analyst's query, not the processor's work: it runs in a process of its own with
every core of the machine, as it would on a ClickHouse server (the broker stopped), over a chDB folder
of its own. It is timed three ways over the same --events: `live`, the last line's summary_ms, once
the bulk load's merges settled and five pipeline-sized inserts (20,000 events for messages all over
the campaign) then landed, unmerged, as the newest parts always are on a store a pipeline writes to
(FINAL merges every message's rows at read time); `loading`, right after the bulk load, its merges
running beside the query; `merged`, the bulk load's merges settled. `--events 0` skips the summary.
Prints, last: `pipeline_hits_per_s=… raw_consume_per_s=… summary_ms=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import native  # noqa: E402

native.activate()  # first, before the hot modules load: compiled when a current build is there (make native)

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from pixeltrack.compose.build import build_processor  # noqa: E402
from processors.clickhouse import connect, migrate  # noqa: E402
from processors.kafka_runner import KafkaRunner  # noqa: E402
from processors.writer import ClickHouseWriter  # noqa: E402
from schemas.runtime import tune_gc_for_batches  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.tokens import Keyring  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from tests.plugins.simulate import load_patterns, simulate  # noqa: E402
from tests.plugins.stand_in import with_process  # noqa: E402

KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
FIXTURE = ROOT / "tests" / "fixtures" / "labelled-hits.jsonl"

BIG_EVENTS_SQL = """
INSERT INTO events (tenant, hit_id, kind, ts, sent_at, campaign, variant, message_id, recipient_id, link_url,
                    verdict, source, mail_client, device, country, revision, sign, src_topic, src_partition, src_offset)
SELECT '', concat('b', toString(number)), if(r < 20, 'click', 'open'),
       toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalSecond(intDiv(number, 50)),
       toDateTime64('2026-11-01 00:00:00', 3, 'UTC'), 'big', if(m % 2 = 0, 'A', 'B'),
       concat('big-m', toString(m)), concat('r', toString(m)),
       if(r < 20, concat('https://shop.example.com/p', toString(r % 7)), ''),
       multiIf(r < 30, 'machine', r < 45, 'proxy', r < 95, 'human', 'duplicate'),
       multiIf(r < 15, 'apple_mpp', r < 30, 'scanner', r < 45, 'gmail_proxy', 'direct'),
       multiIf(r < 45, 'unknown', r < 70, 'apple_mail', 'gmail_web'), if(r < 45, 'unknown', 'desktop'),
       if(r < 45, '', 'DE'), 0, 1, 'bench', -1, number
FROM (SELECT number, number * {stride:UInt64} % {messages:UInt64} AS m, cityHash64(number) % 100 AS r
      FROM numbers({start:UInt64}, {count:UInt64}))
"""
BIG_SENDS_SQL = """
INSERT INTO sends (tenant, campaign, variant, message_id, recipient_id, sent_at, mailbox_domain, links, src_topic,
                   src_partition, src_offset)
SELECT '', 'big', if(number % 2 = 0, 'A', 'B'), concat('big-m', toString(number)), concat('r', toString(number)),
       toDateTime64('2026-11-01 00:00:00', 3, 'UTC'), 'gmail.com', 7, 'bench', -1, number
FROM numbers({messages:UInt64})
"""


async def produce(bootstrap: str, topics: Topics, keyring: Keyring, n_hits: int) -> int:
    patterns = load_patterns(FIXTURE)
    sim = simulate(patterns, "bench", n_sends=int(n_hits / 2.03) + 1, engaged_share=1.0, seed=1)
    records = [r for r in sim.records(keyring, topics) if r.topic == topics.hits_raw][:n_hits]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                compression_type="lz4", acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(r.topic, r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records)


async def bare_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bare-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000,
                                fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        started = None
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if started is None and batches:
                started = time.perf_counter()
            seen += sum(len(v) for v in batches.values())
        assert started is not None
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def thread_cpu(names: dict[int, str] | None = None) -> dict[str, float]:
    """CPU seconds (user + system) per thread of this process, by name: `names` (thread id → name) for
    the threads of ours, else the name the thread gave itself (chDB's pools: merges, MVs, inserts)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = (names or {}).get(int(task.name)) or stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_split(before: dict[str, float], after: dict[str, float], n: int) -> str:
    """Microseconds of CPU per hit by thread name, largest first, and the total."""
    spent = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    spent = {k: v for k, v in spent.items() if v > 0.005}
    parts = [f"{k}={v / n * 1e6:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1])]
    return f"total={sum(spent.values()) / n * 1e6:.1f} " + " ".join(parts)


class EngineElsewhereWriter(ClickHouseWriter):
    """The writer with ClickHouse's share of the work on another core, as a server's would be on its own
    machine: chDB runs an insert in the calling thread, so the writer's thread moves to `core` for the
    insert and back for the next batch's JSON. `engine_cpu`: CPU seconds spent inside the inserts."""

    def __init__(self, dsn: str, database: str, core: int, home: int) -> None:
        super().__init__(dsn, database)
        self.core, self.home, self.engine_cpu = core, home, 0.0

    def _insert(self, client: Any, table: str, columns: Any, block: bytes, dedup_token: str) -> None:
        os.sched_setaffinity(0, {self.core})  # 0: this thread
        started = time.thread_time()
        try:
            super()._insert(client, table, columns, block, dedup_token)
        finally:
            self.engine_cpu += time.thread_time() - started
            os.sched_setaffinity(0, {self.home})


def keep_engine_threads_on(core: int, ours: set[int], stop: threading.Event) -> threading.Thread:
    """Moves every thread of this process but `ours` (chDB's pools, which it starts as it needs them)
    to `core`, every 0.2 s until `stop`; the mover runs there too."""
    def run() -> None:
        os.sched_setaffinity(0, {core})
        while not stop.is_set():
            for task in Path("/proc/self/task").iterdir():
                tid = int(task.name)
                if tid not in ours:
                    with contextlib.suppress(OSError):  # the thread ended
                        os.sched_setaffinity(tid, {core})
            stop.wait(0.2)
    mover = threading.Thread(target=run, name="bench-engine-mover", daemon=True)
    mover.start()
    return mover


async def pipeline(bootstrap: str, topics: Topics, keyring: Keyring, dsn: str, n: int,
                   engine_core: int | None = None) -> tuple[float, float, str]:
    """The processor over `n` hits.raw records, from the start, in a consumer group and database of its
    own. `engine_core`: ClickHouse's work (chDB's inserts and pools) on that core, off the processor's;
    the CPU split then names the processor's part and the engine's."""
    settings = Settings(_env_file=None, spool_dir=None, topic_prefix=topics.prefix)  # type: ignore[call-arg]
    database = "bench" if engine_core is None else "bench_engine_elsewhere"
    migrate(dsn, database, retention_days=3650)
    writer = (ClickHouseWriter(dsn, database) if engine_core is None
              else EngineElsewhereWriter(dsn, database, engine_core, home=0))
    # Our two threads by id: the event loop (consume, decode, verify, classify, rows, publish) and the
    # writer's (rows to JSON, then chDB's insert, which runs in the calling thread).
    writer_tid = await writer._run(threading.get_native_id)
    names = {threading.get_native_id(): "event_loop",
             writer_tid: "writer(json+chdb_insert)" if engine_core is None else "writer"}
    stop_mover = threading.Event()
    if engine_core is not None:
        keep_engine_threads_on(engine_core, set(names), stop_mover)
    processor = build_processor(settings, keyring)
    batch_gc = tune_gc_for_batches()  # as `pixeltrack process` does
    # The clock and the CPU counts start as the first batch reaches the processor (group join and the
    # first fetch are not throughput) and stop when the last batch is committed. Every hit is counted,
    # and the window holds all their work: the first batch's processing, which nothing overlaps, and
    # the last one's insert, which nothing follows, included (conservative by about a batch).
    first: dict[str, Any] = {}
    process = processor.process

    def noting_process(records: Any, ctx: Any = None) -> Any:
        if not first:
            first.update(at=time.perf_counter(), cpu=thread_cpu(names),
                         engine=writer.engine_cpu if isinstance(writer, EngineElsewhereWriter) else 0.0)
        return process(records, ctx)

    runner = KafkaRunner(bootstrap, f"bench-{uuid.uuid4().hex[:6]}", topics, with_process(processor, noting_process),
                         writer, max_records=20_000, max_ms=1000, gc_schedule=batch_gc)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        while runner.records_done < n:  # the runner's own count: polling ClickHouse would compete for the core
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
                raise RuntimeError("processor stopped early")
        elapsed = time.perf_counter() - first["at"]
        cpu_after = thread_cpu(names)
        # CPU over the same hits: comparable across runs on a shared machine, where the wall-clock
        # rate also measures the neighbours.
        split = cpu_split(first["cpu"], cpu_after, n)
        spent = sum(cpu_after.values()) - sum(first["cpu"].values())
        if isinstance(writer, EngineElsewhereWriter):
            # The processor's own CPU: the event loop, and the writer's thread outside the inserts.
            engine = writer.engine_cpu - first["engine"]
            ours = sum(v - first["cpu"].get(k, 0.0) for k, v in cpu_after.items()
                       if k in ("event_loop", "writer")) - engine
            split = (f"processor={ours / n * 1e6:.1f} (its own core) engine_in_writer_thread="
                     f"{engine / n * 1e6:.1f}; {split}")
        return n / elapsed, spent / n * 1e6, split
    finally:
        stop.set()
        stop_mover.set()
        await task
        await writer.close()


LIVE_INSERTS, LIVE_EVENTS = 5, 20_000  # what a processor inserts in five batches
SPREAD = 7_919  # a prime: a batch's events go to messages all over the campaign, as real opens do


def settle(client: Any) -> float:
    """Waits (bounded) until the engine has run no merge for three seconds; returns the seconds waited."""
    started = time.monotonic()
    deadline, quiet = started + 300, 0
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(1)
        quiet = quiet + 1 if client.query("SELECT count() FROM system.merges").result_rows[0][0] == 0 else 0
    return time.monotonic() - started


def summary_ms(dsn: str, events: int, messages: int) -> dict[str, tuple[float, str]]:
    """campaign_summary's median time over `events` (see the module's docstring), `loading`, `merged`
    and `live`, each with message_totals' parts then."""
    client = connect(dsn, "bench")

    def insert_events(start: int, count: int, stride: int) -> None:
        client.command(BIG_EVENTS_SQL, parameters={"messages": messages, "start": start, "count": count,
                                                   "stride": stride})

    def parts() -> str:
        """message_totals' active parts, by rows: what FINAL merges at read time."""
        rows = client.query("SELECT rows FROM system.parts WHERE active AND database = currentDatabase() "
                            "AND table = 'message_totals' ORDER BY rows DESC").result_rows
        return "+".join(f"{r[0]:,}" for r in rows)

    try:
        client.command(BIG_SENDS_SQL, parameters={"messages": messages})
        step = 1_000_000
        for start in range(0, events, step):
            insert_events(start, min(step, events - start), 1)
        total = client.query("SELECT count() FROM events WHERE campaign = 'big'").result_rows[0][0]
        assert total == events, total
        out: dict[str, tuple[float, str]] = {}

        def measure(state: str, note: str = "") -> None:
            layout = parts() + note  # the parts the query reads, listed before it is timed
            out[state] = (time_summary(client, messages), layout)

        measure("loading")
        waited = settle(client)
        measure("merged", f", after {waited:.0f} s of merges")
        for i in range(LIVE_INSERTS):
            insert_events(events + i * LIVE_EVENTS, LIVE_EVENTS, SPREAD)
        measure("live")
        return out
    finally:
        client.close()


def time_summary(client: Any, messages: int) -> float:
    """Median wall milliseconds of five campaign_summary reads of the big campaign."""
    times = []
    for _ in range(5):
        t = time.perf_counter()
        rows = client.query("SELECT * FROM campaign_summary WHERE campaign = 'big'").result_rows
        times.append((time.perf_counter() - t) * 1000)
    assert len(rows) == 2, rows
    assert sum(r[3] for r in rows) == messages, rows
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=200_000)
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--messages", type=int, default=1_000_000, help="distinct messages among --events")
    ap.add_argument("--summary-only", action="store_true", help=argparse.SUPPRESS)  # the summary's own process
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summary_only:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # not the parent's core 0: before chDB starts
        dsn = f"chdb://{args.dir}"
        migrate(dsn, "bench", retention_days=3650)
        print(json.dumps(summary_ms(dsn, args.events, args.messages)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="pixeltrack-bench-"))
    kafka_dir = tmp / "kafka"
    try:
        bootstrap = subprocess.run(["taskset", "-c", "1", str(KAFKA_SH), "start", str(kafka_dir)], check=True,
                                   capture_output=True, text=True).stdout.strip().splitlines()[-1]
        os.sched_setaffinity(0, {0})
        keyring = Keyring({"b1": b"bench-secret-0123456789abcdef"}, "b1")
        topics = Topics(prefix="bench.")
        dsn = f"chdb://{tmp / 'chdb'}"

        async def run() -> tuple[int, float, tuple[float, float, str], tuple[float, float, str]]:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            await admin.create_topics([NewTopic(t, 4, 1) for t in (
                topics.hits_raw, topics.hits_dlq, topics.sends, topics.conversions, topics.unsubscribes,
                topics.events_classified)])
            await admin.close()
            n = await produce(bootstrap, topics, keyring, args.hits)
            raw = await bare_consume(bootstrap, topics.hits_raw, n)
            one_core = await pipeline(bootstrap, topics, keyring, dsn, n)
            engine_elsewhere = await pipeline(bootstrap, topics, keyring, dsn, n, engine_core=1)
            return n, raw, one_core, engine_elsewhere

        n, raw, (rate, cpu_us, split), (rate2, _, split2) = asyncio.run(run())
        subprocess.run([str(KAFKA_SH), "stop", str(kafka_dir)], check=False)  # the summary needs no broker
        print(f"all on one core (the embedded wiring: chDB's engine shares the processor's core): {rate:,.0f} "
              f"hits/s; {cpu_us:.1f} µs CPU per hit; by thread, µs per hit: {split}")
        print(f"pipeline: {n:,} hits Kafka → decode → verify → classify → ClickHouse, the processor alone on "
              f"core 0 (ClickHouse's work and the broker on core 1, as a ClickHouse server's would be elsewhere): "
              f"{rate2:,.0f} hits/s (bare aiokafka consume: {raw:,.0f} records/s, ratio {rate2 / raw:.2f}); "
              f"CPU µs per hit: {split2}; hot path {native.STATE}")
        if not args.events:  # --events 0: the pipeline alone
            return
        # In a process of its own that takes every core before its chDB starts: chDB sizes its pools
        # (queries, merges) by the cores it sees at start, and this process's saw core 0 only. This
        # process's engine first finishes merging the pipeline's inserts, which would run beside it.
        client = connect(dsn, "bench")
        try:
            settle(client)
        finally:
            client.close()
        child = subprocess.run([sys.executable, __file__, "--summary-only", "--events", str(args.events),
                                "--messages", str(args.messages), "--dir", str(tmp / "summary")],
                               capture_output=True, text=True)
        if child.returncode:
            raise RuntimeError(f"the summary's process failed:\n{child.stderr[-3000:]}")
        ms = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"campaign_summary over {args.events:,} events / {args.messages:,} messages, median of 5 "
              f"(message_totals' parts by rows):")
        for state, what in (("live", f"merged, then {LIVE_INSERTS} inserts of {LIVE_EVENTS:,} events"),
                            ("loading", "right after the bulk load, its merges running"),
                            ("merged", "the bulk load's merges settled")):
            print(f"  {state:8s} {ms[state][0]:6.0f} ms  {what} ({ms[state][1]})")
        print(f"pipeline_hits_per_s={rate2:.0f} raw_consume_per_s={raw:.0f} summary_ms={ms['live'][0]:.0f}")
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(kafka_dir)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
