"""Recipient events in production: a consumer group on consents, unsubscribes and deliveries → webhooks.

Each record is mapped to one action (recipient_events.py) and delivered at once by the triggers'
Dispatcher (signed, retried with backoff, at most `max_in_flight` attempts at a time). A record's
offset is committed only once its action ended: delivered (2xx), or given up and its dead letter
acknowledged by triggers.dlq. So the topic itself is the outbox: a crash or a rebalance before the
commit means the next owner reads the record again and delivers it under the same idempotency key and
body; nothing decided is lost and receivers see one key per change. Records of keys this process
delivered already (an edge's spool replayed) are not delivered again while it remembers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError

from processors.triggers.dispatch import Dispatcher
from processors.triggers.kafka_parts import CommitPoints, commit_points, create_topics, dlq_topic, wait_for_topics
from processors.triggers.recipient_events import RecipientEventMapper
from processors.triggers.records import Action, TriggerDeadLetter
from processors.triggers.rules import RuleSet
from processors.triggers.runner import TriggerTopics
from processors.triggers.webhook import Delivery, RetryPolicy, WebhookClient
from schemas.topics import Topics

log = logging.getLogger(__name__)

class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: RecipientEventRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._runner._lock:
            for tp in assigned:
                self._runner._parts.setdefault(tp, CommitPoints())


async def check_topics(bootstrap: str, topics: Topics, dlq: str, create_dlq: bool = True,
                       wait: float = 10.0) -> None:
    """The three input topics must exist (waited for up to `wait` seconds: a topics job may have just
    made them); triggers.dlq is created when missing and `create_dlq`. RuntimeError names what is missing.
    Only topics known to exist are described: a metadata request naming a missing one could create it
    with the broker's defaults."""
    inputs = [topics.consents, topics.unsubscribes, topics.deliveries]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = await wait_for_topics(admin, inputs, wait)
        missing = [t for t in inputs if t not in existing]
        if missing:
            raise RuntimeError(f"topics {missing} do not exist: create them first (docs/deploy.md)")
        if dlq not in existing:
            if not create_dlq:
                raise RuntimeError(f"topic {dlq!r} does not exist: create it (docs/triggers.md)")
            brokers = len((await admin.describe_cluster())["brokers"])
            await create_topics(admin, [dlq_topic(dlq, 1, max(1, min(3, brokers)))])
    finally:
        await admin.close()


class RecipientEventRunner:
    """Consumes consents, unsubscribes and deliveries in a consumer group and sends each recipient event
    to its tenant's webhook (the rules file's [recipient_events] table). See the module docstring for
    the guarantees. Memory: at most `max_pending` actions waiting on their delivery (past it the
    partitions pause until they drain) and `remember` delivered keys."""

    def __init__(self, bootstrap: str, group: str, topics: Topics, rules: RuleSet, *,
                 retry: RetryPolicy | None = None, max_in_flight: int = 32, max_pending: int = 10_000,
                 remember: int = 100_000, client_id: str = "pixeltrack-recipient-events", create_dlq: bool = True,
                 poll_ms: int = 100, max_poll_records: int = 500, shutdown_grace: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if rules.recipient_events is None:
            raise ValueError(f"{rules.source}: no [recipient_events] table")
        self._bootstrap = bootstrap
        self._group = group
        self.topics = topics
        self._dlq = TriggerTopics(topics.prefix).dlq
        self._rules = rules
        self._mapper = RecipientEventMapper(topics, rules.recipient_events)
        self._retry = retry or RetryPolicy()
        self._max_in_flight = max_in_flight
        self._max_pending = max_pending
        self._remember = remember
        self._client_id = client_id
        self._create_dlq = create_dlq
        self._poll_ms = poll_ms
        self._max_poll_records = max_poll_records
        self._grace = shutdown_grace
        self._clock = clock
        self._lock = asyncio.Lock()
        self._parts: dict[TopicPartition, CommitPoints] = {}
        self._waiting: dict[str, list[tuple[TopicPartition, int]]] = {}  # key → records its delivery ends
        self._actions: dict[str, tuple[Action, TopicPartition]] = {}  # key → action, the tag it runs under
        self._ended: OrderedDict[str, None] = OrderedDict()  # keys delivered or dead-lettered here
        self._dispatcher: Dispatcher | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.records_read = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.undecodable = 0
        self.repeats = 0

    @property
    def pending(self) -> int:
        """Actions submitted and not yet ended."""
        return len(self._waiting)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; then waits up to shutdown_grace for running deliveries (the others are read
        again by the group's next owner), commits what ended and leaves the group."""
        await check_topics(self._bootstrap, self.topics, self._dlq, self._create_dlq)
        producer = self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all", enable_idempotence=True)
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=self._group, client_id=self._client_id,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self._max_poll_records)
        async with contextlib.AsyncExitStack() as stack:
            await producer.start()
            stack.push_async_callback(producer.stop)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            self._dispatcher = Dispatcher(WebhookClient(session, self._retry), self._rules, self._on_delivered,
                                          self._max_in_flight)
            consumer.subscribe(list(self._mapper.names), listener=_Rebalance(self))
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            try:
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=self._poll_ms, max_records=self._max_poll_records)
                    async with self._lock:
                        await self._step(batches)
                        offsets = commit_points(self._parts.items())
                    await self._commit(offsets)
                    self._backpressure()
            finally:
                await self._dispatcher.close(self._grace)
                async with self._lock:
                    offsets = commit_points(self._parts.items())
                await self._commit(offsets)
                self._parts.clear()

    async def _step(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        letters: list[TriggerDeadLetter] = []
        done: list[tuple[CommitPoints, int]] = []
        now = self._clock()
        for tp, records in batches.items():
            part = self._parts.get(tp)
            if part is None:
                continue  # revoked since the fetch
            for r in records:
                self.records_read += 1
                part.read.append(r.offset)
                try:
                    action = self._mapper.action(tp.topic, r.value)
                except ValueError as exc:
                    raw = (r.value or b"")[:512].decode("utf-8", "replace")
                    detail = f"{tp.topic}/{tp.partition}/{r.offset}: {exc}"[:500]
                    letters.append(TriggerDeadLetter("event", "undecodable", detail, now, raw=raw))
                    done.append((part, r.offset))
                    continue
                if action is None:
                    done.append((part, r.offset))
                elif action.key in self._ended:
                    self.repeats += 1
                    done.append((part, r.offset))
                else:
                    self._submit(action, tp, r.offset)
        if letters:
            self.undecodable += len(letters)
            for letter in letters:
                log.warning("recipient event dead letter: %s %s", letter.reason, letter.detail)
            await self._send_letters(letters)
        for part, offset in done:
            part.done.add(offset)

    def _submit(self, action: Action, tp: TopicPartition, offset: int) -> None:
        waiting = self._waiting.setdefault(action.key, [])
        waiting.append((tp, offset))
        if len(waiting) == 1:
            self._actions[action.key] = (action, tp)
            assert self._dispatcher is not None
            self._dispatcher.submit(action, tp)

    async def _on_delivered(self, action: Action, delivery: Delivery, tag: Hashable) -> None:
        """An action ended: its dead letter first when given up, then its records are done."""
        if delivery.ok:
            self.delivered += 1
        else:
            webhook = self._rules.webhooks.get(action.webhook)
            letter = TriggerDeadLetter(
                "action", delivery.reason, delivery.detail[:500], self._clock(), key=action.key, rule=action.rule,
                webhook=action.webhook, url=webhook.url if webhook else "", attempts=delivery.attempts,
                first_attempt_at=delivery.first_attempt_at, last_status=delivery.status, payload=action.payload)
            log.warning("recipient event dead letter: %s %s %s", action.rule, delivery.reason, action.key)
            await self._send_letters([letter])
            self.dead_lettered += 1
        self._ended[action.key] = None
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)
        self._actions.pop(action.key, None)
        for tp, offset in self._waiting.pop(action.key, []):
            part = self._parts.get(tp)
            if part is not None:
                part.done.add(offset)

    async def _send_letters(self, letters: list[TriggerDeadLetter]) -> None:
        producer = self._producer
        assert producer is not None
        futures = [await producer.send(self._dlq, letter.encode(), key=letter.key.encode() or None)
                   for letter in letters]
        await asyncio.gather(*futures)


    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved: their next owner reads from the last commit and delivers what it
            # reads under the same keys.
            log.warning("commit failed (%s); the next owner re-reads from the last commit", exc)

    def _backpressure(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        if len(self._waiting) >= self._max_pending:
            consumer.pause(*assigned)
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        """Commits what ended, stops the deliveries of the partitions going away (their records are read
        again by the next owner) and forgets them."""
        async with self._lock:
            gone = {tp: self._parts.pop(tp) for tp in revoked if tp in self._parts}
            offsets = commit_points(gone.items())
        await self._commit(offsets)
        if self._dispatcher is None:
            return
        for tp in gone:
            await self._dispatcher.cancel(tp)
        for key in list(self._waiting):
            left = [(tp, o) for tp, o in self._waiting[key] if tp not in gone]
            action, tag = self._actions[key]
            if not left:
                del self._waiting[key]
                del self._actions[key]
            else:
                self._waiting[key] = left
                if tag in gone:  # its delivery was cancelled with its partition: another record still waits
                    self._actions[key] = (action, left[0][0])
                    self._dispatcher.submit(action, left[0][0])
