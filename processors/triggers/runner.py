"""Triggers in production: an aiokafka consumer group on events.classified, state kept in a compacted topic.

The Kafka adapter of the trigger core (core.py): its input is a consumer group (pause when an engine is
full, commit what the core acknowledged), its state store the compacted triggers.state topic (loaded
when a partition is assigned) and its letter sink triggers.dlq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError

from processors.triggers.core import Incoming, TriggerCore
from processors.triggers.engine import DEFAULT_SETTLE_SECONDS, EngineLimits, TriggerEngine
from processors.triggers.kafka_parts import CommitPoints, commit_points, create_topics, dlq_topic, wait_for_topics
from processors.triggers.records import StateRecord, TriggerDeadLetter
from processors.triggers.rules import RuleSet
from processors.triggers.webhook import RetryPolicy
from schemas.topics import Topics

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class TriggerTopics:
    """The triggers' own topics, under the installation's prefix."""

    prefix: str = ""

    @property
    def state(self) -> str:
        """StateRecord values, key = idempotency key; compacted; partition p holds the state of the
        messages of events.classified partition p (so it moves with the partition)."""
        return f"{self.prefix}triggers.state"

    @property
    def dlq(self) -> str:
        """TriggerDeadLetter values: actions given up on and unreadable events, with a reason."""
        return f"{self.prefix}triggers.dlq"


async def ensure_topics(bootstrap: str, events_topic: str, topics: TriggerTopics, remember_seconds: float,
                        replication_factor: int | None = None, create: bool = True, wait: float = 10.0) -> int:
    """Checks the triggers' topics and, with `create`, creates the missing ones: triggers.state (compact
    + delete after `remember`, as many partitions as events.classified) and triggers.dlq. Returns the
    partition count of events.classified. Raises RuntimeError naming the topic when events.classified
    is missing, a topic is missing and `create` is off, or triggers.state has too few partitions.
    `replication_factor` None: 3, or the number of brokers when there are fewer. A missing
    events.classified is waited for up to `wait` seconds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Only topics known to exist are described: a metadata request naming a missing topic creates it
        # with the broker's defaults (not compacted) where auto.create.topics.enable is on.
        existing = await wait_for_topics(admin, [events_topic], wait)
        if events_topic not in existing:
            raise RuntimeError(f"topic {events_topic!r} does not exist: create it first (docs/deploy.md)")
        (events,) = await admin.describe_topics([events_topic])
        partitions = len(events["partitions"])
        if replication_factor is None:
            replication_factor = max(1, min(3, len((await admin.describe_cluster())["brokers"])))
        wanted = {
            topics.state: NewTopic(topics.state, partitions, replication_factor, topic_configs={
                "cleanup.policy": "compact,delete", "retention.ms": str(int(remember_seconds * 1000))}),
            topics.dlq: dlq_topic(topics.dlq, min(partitions, 6), replication_factor),
        }
        missing = [nt for name, nt in wanted.items() if name not in existing]
        if missing and not create:
            raise RuntimeError(f"topics {[nt.name for nt in missing]} do not exist: create them (docs/triggers.md)")
        if missing:
            await create_topics(admin, missing)
            log.info("created %s", ", ".join(nt.name for nt in missing))
            await _wait_for_leaders(admin, [nt.name for nt in missing])
        (state,) = await admin.describe_topics([topics.state])  # exists now, whoever created it
        if len(state["partitions"]) < partitions:
            raise RuntimeError(f"topic {topics.state!r} has {len(state['partitions'])} partitions, fewer than "
                               f"{events_topic!r} ({partitions}): add partitions to it")
        return partitions
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 15.0) -> None:
    """Waits until every partition of freshly created topics has a leader (clients that look earlier get
    NotLeaderForPartition and back off for seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        await asyncio.sleep(0.1)
    log.warning("topics %s have partitions without a leader after %.0fs", names, timeout)


class _KafkaTopics:
    """The Kafka state store and letter sink: triggers.state (partition p holds partition p's state) and
    triggers.dlq, each write acknowledged by every in-sync replica before it returns."""

    def __init__(self, topics: TriggerTopics) -> None:
        self.topics = topics
        self.producer: AIOKafkaProducer | None = None

    async def keep(self, changes: Sequence[tuple[int, StateRecord]]) -> None:
        producer = self.producer
        assert producer is not None
        futures = [await producer.send(self.topics.state, rec.encode(), key=rec.key.encode(), partition=p)
                   for p, rec in changes]
        if futures:
            await asyncio.gather(*futures)

    async def send(self, letters: Sequence[TriggerDeadLetter]) -> None:
        producer = self.producer
        assert producer is not None
        futures = [await producer.send(self.topics.dlq, letter.encode(), key=letter.key.encode() or None)
                   for letter in letters]
        if futures:
            await asyncio.gather(*futures)


class _Partition:
    """One assigned partition: its engine and the offsets consumed but not yet safe to commit."""

    __slots__ = ("engine", "offsets", "tp")

    def __init__(self, tp: TopicPartition, engine: TriggerEngine) -> None:
        self.tp = tp
        self.engine = engine  # also the core's engine of this partition
        self.offsets = CommitPoints()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: TriggerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner._assign(assigned)


class TriggerRunner:
    """Consumes events.classified in a consumer group and fires the rules' webhooks.

    Durability: each batch's state changes (counting windows, DUE actions with their bodies, closed
    windows) are acknowledged by triggers.state (acks=all) before the batch's offsets are committed, and
    events still settling hold their partition's commit back; so a restart re-reads only what is not yet
    recorded, and the state it loads says what was already decided. Deliveries run apart from the
    consumer loop (a slow receiver does not stop consumption): the DUE record is the outbox, FIRED or
    DEAD (after the dead letter is acknowledged) closes it; an action still DUE at a restart or a
    rebalance is delivered again by the partition's next owner under the same idempotency key.

    Partitions: events.classified is keyed by message id, so one message (the window of every rule) is in
    one partition; partition p's state is kept in triggers.state partition p and loaded when p is
    assigned, so any number of runners in the group keep "once per recipient and window".

    Memory: one TriggerEngine per assigned partition, `limits` split between them (see TriggerEngine for
    the figures), plus at most `max_in_flight` deliveries and one fetch (max_poll_records).
    """

    def __init__(self, bootstrap: str, group: str, topics: Topics, rules: RuleSet, *,
                 settle_seconds: float = DEFAULT_SETTLE_SECONDS, max_attempts: int = 10,
                 retry: RetryPolicy | None = None, limits: EngineLimits | None = None, max_in_flight: int = 32,
                 client_id: str = "pixeltrack-triggers", create_topics: bool = True,
                 replication_factor: int | None = None, poll_ms: int = 100, max_poll_records: int = 1000,
                 shutdown_grace: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        """`retry` overrides the retry policy (its max_attempts wins over `max_attempts`)."""
        self._bootstrap = bootstrap
        self._group = group
        self._events_topic = topics.events_classified
        self.topics = TriggerTopics(topics.prefix)
        self._rules = rules
        self._settle = settle_seconds
        self._limits = limits or EngineLimits()
        self._client_id = client_id
        self._create_topics = create_topics
        self._replication_factor = replication_factor
        self._poll_ms = poll_ms
        self._max_poll_records = max_poll_records
        self._grace = shutdown_grace
        self._clock = clock
        self._kafka = _KafkaTopics(self.topics)
        self.core = TriggerCore(rules, self._kafka, self._kafka, retry or RetryPolicy(max_attempts=max_attempts),
                                max_in_flight, clock)
        self._parts: dict[int, _Partition] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self.events_read = 0

    @property
    def held(self) -> int:
        """Events settling, over the assigned partitions."""
        return self.core.held

    @property
    def due(self) -> int:
        """Actions decided and not yet delivered or dead-lettered, over the assigned partitions."""
        return self.core.due

    @property
    def delivered(self) -> int:
        return self.core.delivered

    @property
    def dead_lettered(self) -> int:
        return self.core.dead_lettered

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set; then waits up to shutdown_grace for running deliveries (the rest stay
        due), commits what is recorded and leaves the group."""
        await ensure_topics(self._bootstrap, self._events_topic, self.topics, self._rules.remember,
                            self._replication_factor, create=self._create_topics)
        producer = self._kafka.producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all", enable_idempotence=True)
        reader = self._reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            client_id=self._client_id + "-state", fetch_max_wait_ms=50)
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=self._group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self._max_poll_records)
        async with contextlib.AsyncExitStack() as stack:
            await producer.start()
            stack.push_async_callback(producer.stop)
            await reader.start()
            stack.push_async_callback(reader.stop)
            self.core.start(await stack.enter_async_context(aiohttp.ClientSession()))
            consumer.subscribe([self._events_topic], listener=_Rebalance(self))
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            try:
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=self._poll_ms, max_records=self._max_poll_records)
                    async with self._lock:
                        await self._step(batches)
                        offsets = self._commit_points(self._parts.values())
                    await self._commit(offsets)
                    self._backpressure()
            finally:
                await self.core.stop(self._grace)
                async with self._lock:
                    offsets = self._commit_points(self._parts.values())
                await self._commit(offsets)
                self._parts.clear()
                self.core.engines.clear()

    # --- the loop ------------------------------------------------------------------------------------

    async def _step(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Hands a fetch to the core (feed, advance, persist, dispatch), then marks what it acknowledged."""
        fed: dict[int, list[Incoming]] = {}
        for tp, records in batches.items():
            part = self._parts.get(tp.partition)
            if part is None:
                continue  # revoked since the fetch
            self.events_read += len(records)
            part.offsets.read.extend(r.offset for r in records)
            fed[tp.partition] = [Incoming(r.value, r.offset, f"{tp.topic}/{tp.partition}/{r.offset}")
                                 for r in records]
        for p, offsets in (await self.core.take(fed, advance=True)).items():
            self._parts[p].offsets.done.update(offsets)

    @staticmethod
    def _commit_points(parts: Iterable[_Partition]) -> dict[TopicPartition, int]:
        return commit_points((part.tp, part.offsets) for part in parts)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved: their next owner re-reads from the last commit; what it re-reads was
            # recorded already, and the engine ignores repeats (counting by hit id, keys decided once).
            log.warning("commit failed (%s); the next owner re-reads from the last commit", exc)

    def _backpressure(self) -> None:
        """Pauses partitions whose engine is over its soft bounds (settling or undelivered)."""
        consumer = self._consumer
        assert consumer is not None
        paused = consumer.paused()
        for part in self._parts.values():
            if part.engine.full and part.tp not in paused:
                consumer.pause(part.tp)
            elif not part.engine.full and part.tp in paused:
                consumer.resume(part.tp)

    # --- rebalancing -------------------------------------------------------------------------------

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        """Commits what is recorded, stops the partitions' deliveries (they stay due) and drops their state."""
        async with self._lock:
            gone = [self._parts.pop(tp.partition) for tp in revoked
                    if tp.topic == self._events_topic and tp.partition in self._parts]
            offsets = self._commit_points(gone)
            for part in gone:
                del self.core.engines[part.tp.partition]
        await self._commit(offsets)
        for part in gone:
            await self.core.cancel(part.tp.partition)

    async def _assign(self, assigned: set[TopicPartition]) -> None:
        """Loads the new partitions' kept state, then delivers their actions still due."""
        async with self._lock:
            now = self._clock()
            new = sorted(tp.partition for tp in assigned
                         if tp.topic == self._events_topic and tp.partition not in self._parts)
            engines = {p: TriggerEngine(self._rules, self._settle, self._limits) for p in new}
            loaded = await self._load_state(engines, now)
            for p, engine in engines.items():
                self._parts[p] = _Partition(TopicPartition(self._events_topic, p), engine)
                self.core.engines[p] = engine
                due = engine.due_actions()
                log.info("partition %d: %d state records loaded, %d actions due", p, loaded[p], len(due))
                self.core.dispatch(due, p)
            share = self._limits.split(len(self._parts))
            for part in self._parts.values():
                part.engine.limits = share

    async def _load_state(self, engines: dict[int, TriggerEngine], now: float) -> dict[int, int]:
        """Reads the triggers.state partitions of `engines` from their start to their current end, each
        into its engine; returns the records loaded per partition."""
        loaded = dict.fromkeys(engines, 0)
        if not engines:
            return loaded
        reader = self._reader
        assert reader is not None
        tps = [TopicPartition(self.topics.state, p) for p in engines]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        idle_deadline = time.monotonic() + 30
        while True:
            behind = [tp for tp in tps if await reader.position(tp) < ends[tp]]
            if not behind:
                return loaded
            batches = await reader.getmany(*behind, timeout_ms=200, max_records=5000)
            if not batches:
                if time.monotonic() > idle_deadline:
                    raise RuntimeError(f"reading {self.topics.state} stalled before the offsets {ends}")
                continue
            idle_deadline = time.monotonic() + 30
            for tp, batch in batches.items():
                records = []
                for r in batch:
                    if r.offset >= ends[tp] or r.value is None:
                        continue
                    try:
                        records.append(StateRecord.decode(r.value))
                    except ValueError as exc:
                        log.warning("%s/%d/%d skipped: %s", tp.topic, tp.partition, r.offset, exc)
                engines[tp.partition].restore(records, now)
                loaded[tp.partition] += len(records)
