"""Triggers on real Kafka with a real HTTP receiver on 127.0.0.1 that verifies every signature."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from processors.behaviour import Classifier
from processors.classify_file import build_classifier
from processors.triggers.records import DEAD, DUE, FIRED, StateRecord, TriggerDeadLetter, idempotency_key
from processors.triggers.runner import TriggerRunner, TriggerTopics, ensure_topics
from processors.triggers.webhook import RetryPolicy
from schemas.classified import ClassifiedEvent
from schemas.tokens import FLAG_UNSUBSCRIBE
from schemas.topics import Topics
from tests.plugins.kafka import create_topics
from tests.plugins.waiting import eventually
from tests.unit.processors.builders import CHROME, UNLISTED_CLOUD, make_hit
from tests.unit.processors.triggers.events import SECRET, event, from_decisions, make_rules
from tests.unit.processors.triggers.receiver import Receiver, free_port

pytestmark = pytest.mark.kafka
SETTLE = 0.5
PRICING = "https://shop.example.com/pricing"
FAST_RETRY = RetryPolicy(max_attempts=40, base_delay=0.05, max_delay=0.2)


@pytest.fixture(scope="module")
def classifier() -> Iterator[Classifier]:
    c = build_classifier()
    yield c
    c._enricher.close()


@pytest.fixture
async def topics(kafka_bootstrap: str, kafka_topics: Topics) -> Topics:
    await create_topics(kafka_bootstrap, [kafka_topics.events_classified])
    return kafka_topics


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    await r.stop()


async def produce(bootstrap: str, topic: str, events: Sequence[ClassifiedEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, e.encode(), key=e.message.encode()) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic, from its start to its end now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert tps, f"{topic} has no partitions"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += records
        return out
    finally:
        await consumer.stop()


def new_runner(bootstrap: str, topics: Topics, url: str, group: str, retry: RetryPolicy = FAST_RETRY,
               grace: float = 5.0) -> TriggerRunner:
    return TriggerRunner(bootstrap, group, topics, make_rules(url), settle_seconds=SETTLE, retry=retry,
                         poll_ms=50, shutdown_grace=grace)


class Running:
    """A runner's task, for waiting on an outcome while failing fast if the runner fails."""

    def __init__(self, runner: TriggerRunner, task: asyncio.Task[None]) -> None:
        self.runner = runner
        self.task = task

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        await eventually(lambda: condition() or self.task.done(), timeout, what)
        if self.task.done():
            self.task.result()  # the runner's own error, if it failed
            raise AssertionError(f"the runner stopped before {what}")

    async def caught_up(self, n_events: int) -> None:
        """The runner read `n_events`, and everything it held has settled and been acted on."""
        await self.until(lambda: self.runner.events_read >= n_events, "the runner read every event")
        await self.until(lambda: self.runner.held == 0, "every event settled")
        await asyncio.sleep(SETTLE)


@contextlib.asynccontextmanager
async def running(runner: TriggerRunner) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield Running(runner, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def person(message: str, recipient: str, link: str = PRICING) -> list[ClassifiedEvent]:
    """A person opens (an hour after send) and clicks a link, as the processors publish it."""
    return [event(f"{message}-open", ts=time.time(), message=message, recipient=recipient),
            event(f"{message}-click", "click", ts=time.time() + 30, message=message, recipient=recipient,
                  link=link)]


async def test_a_scanner_burst_fires_nothing(kafka_bootstrap: str, topics: Topics, receiver: Receiver,
                                             classifier: Classifier) -> None:
    """The real classifier's output for a scanner that fetches the pixel, then follows every link of
    the message (pricing first) within a second: provisional human verdicts, revised to machine."""
    links = [PRICING, "https://shop.example.com/b", "https://blog.example.com/c"]
    sent = time.time() - 60
    hits = [make_hit(9, ip=UNLISTED_CLOUD, ua=CHROME, message="scanned", sent_at=sent)]
    hits += [make_hit(42 + i * 0.3, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=u, message="scanned", sent_at=sent,
                      hit_id=f"scan-{i}") for i, u in enumerate(links)]
    events = from_decisions(d for h in hits for d in classifier.feed(h))
    assert {e.verdict for e in events if e.revision == 0 and e.kind == "click"} == {"human", "machine"}
    assert any(e.revision > 0 for e in events)
    await receiver.start()
    await produce(kafka_bootstrap, topics.events_classified, events)
    runner = new_runner(kafka_bootstrap, topics, receiver.url, f"g-{uuid.uuid4().hex[:8]}")
    async with running(runner) as run:
        await run.caught_up(len(events))
        await asyncio.sleep(SETTLE)
        assert runner.due == 0
    assert receiver.calls == []
    state = [StateRecord.decode(r.value) for r in await read_all(kafka_bootstrap, runner.topics.state) if r.value]
    assert [s for s in state if s.status != "counting"] == []  # nothing decided, nothing closed


async def test_a_persons_pricing_click_fires_exactly_one_signed_webhook(
        kafka_bootstrap: str, topics: Topics, receiver: Receiver) -> None:
    events = person("m-1", "r-1")
    events += [event("again", "click", ts=time.time() + 60, message="m-1", recipient="r-1", link=PRICING),
               event("unsub", "click", message="m-2", recipient="r-2", link=PRICING, flags=FLAG_UNSUBSCRIBE),
               event("scan", "click", message="m-3", recipient="r-3", link=PRICING, verdict="machine")]
    await receiver.start()
    await produce(kafka_bootstrap, topics.events_classified, events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    runner = new_runner(kafka_bootstrap, topics, receiver.url, group)
    async with running(runner) as run:
        await run.until(lambda: runner.delivered == 2, "the webhooks")
        await run.caught_up(len(events))
    assert receiver.bad_signatures == []
    got = {r.rule: r for r in receiver.accepted}
    assert sorted(got) == ["first-open", "tell-sales"]
    assert len(receiver.accepted) == 2
    sales = got["tell-sales"]
    assert sales.key == idempotency_key("tell-sales", "acme", "r-1", "message:m-1")
    assert abs(sales.signed_at - time.time()) < 30
    p = sales.payload
    assert (p["id"], p["recipient"], p["message"], p["tags"], p["hit"]["id"]) == (
        sales.key, "r-1", "m-1", ["pricing"], "m-1-click")

    # Durably recorded, then committed: the state topic says FIRED, the group's offsets cover every event.
    state = [StateRecord.decode(r.value) for r in await read_all(kafka_bootstrap, runner.topics.state) if r.value]
    assert [s.status for s in state if s.key == sales.key] == [DUE, FIRED]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert sum(m.offset for tp, m in committed.items() if tp.topic == topics.events_classified) == len(events)


@pytest.mark.parametrize("failure", ["http_500", "connection_refused"])
async def test_a_failing_receiver_that_recovers_gets_the_webhook_once(
        kafka_bootstrap: str, topics: Topics, receiver: Receiver, failure: str) -> None:
    events = [person("m-1", "r-1")[1]]  # the click only: one action
    if failure == "http_500":
        receiver.fail_with = [500, 500]
        await receiver.start()
    await produce(kafka_bootstrap, topics.events_classified, events)
    runner = new_runner(kafka_bootstrap, topics, receiver.url, f"g-{uuid.uuid4().hex[:8]}")
    async with running(runner) as run:
        if failure == "connection_refused":
            await run.until(lambda: runner.due == 1, "the action decided")
            await asyncio.sleep(0.5)  # a few refused attempts
            await receiver.start()
        await run.until(lambda: runner.delivered == 1, "the delivery")
        await asyncio.sleep(0.5)
    (got,) = receiver.accepted
    assert got.rule == "tell-sales"
    if failure == "http_500":
        assert receiver.calls == [(got.key, 500), (got.key, 500), (got.key, 204)]
        assert got.attempt == 3
    else:
        assert got.attempt > 1
        assert receiver.calls == [(got.key, 204)]


async def test_after_max_attempts_the_action_lands_in_the_dead_letter_topic(
        kafka_bootstrap: str, topics: Topics, receiver: Receiver) -> None:
    receiver.always = 500
    await receiver.start()
    events = [person("m-1", "r-1")[1]]
    await produce(kafka_bootstrap, topics.events_classified, events)
    retry = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)
    runner = new_runner(kafka_bootstrap, topics, receiver.url, f"g-{uuid.uuid4().hex[:8]}", retry=retry)
    async with running(runner) as run:
        await run.until(lambda: runner.dead_lettered == 1, "the dead letter")
    assert len(receiver.calls) == 3
    (record,) = await read_all(kafka_bootstrap, runner.topics.dlq)
    letter = TriggerDeadLetter.decode(record.value)
    key = idempotency_key("tell-sales", "acme", "r-1", "message:m-1")
    assert (letter.kind, letter.reason, letter.attempts, letter.last_status, letter.key, letter.rule, letter.url) == (
        "action", "http_500", 3, 500, key, "tell-sales", receiver.url)
    assert record.key == key.encode()
    assert letter.payload["recipient"] == "r-1"
    state = [StateRecord.decode(r.value) for r in await read_all(kafka_bootstrap, runner.topics.state) if r.value]
    assert [(s.status, s.reason) for s in state if s.key == key] == [(DUE, ""), (DEAD, "http_500")]

    # Given up for good: a runner reading everything again (a new group) does not try again.
    receiver.always = None
    again = new_runner(kafka_bootstrap, topics, receiver.url, f"g-{uuid.uuid4().hex[:8]}")
    async with running(again) as run:
        await run.caught_up(len(events))
    assert len(receiver.calls) == 3


async def test_restarting_the_runner_does_not_fire_again(kafka_bootstrap: str, topics: Topics,
                                                         receiver: Receiver) -> None:
    await receiver.start()
    events = person("m-1", "r-1")
    await produce(kafka_bootstrap, topics.events_classified, events)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = new_runner(kafka_bootstrap, topics, receiver.url, group)
    async with running(first) as run:
        await run.until(lambda: first.delivered == 2, "the webhooks")
    assert len(receiver.accepted) == 2

    # The same group resumes after its commits; a new group re-reads every event from the start and
    # loads the kept state first: neither fires again, not even for a new pricing click in that message.
    more = [event("later", "click", ts=time.time() + 90, message="m-1", recipient="r-1", link=PRICING)]
    await produce(kafka_bootstrap, topics.events_classified, more)
    for g in (group, f"g-{uuid.uuid4().hex[:8]}"):
        runner = new_runner(kafka_bootstrap, topics, receiver.url, g)
        async with running(runner) as run:
            await run.caught_up(len(more) if g == group else len(events) + len(more))
            assert runner.due == 0
    assert len(receiver.accepted) == 2
    assert len(receiver.calls) == 2


async def test_an_action_due_when_the_runner_stops_is_delivered_by_the_next_one(
        kafka_bootstrap: str, topics: Topics) -> None:
    receiver = Receiver(SECRET, port=free_port())  # down: connection refused
    await produce(kafka_bootstrap, topics.events_classified, [person("m-1", "r-1")[1]])
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = new_runner(kafka_bootstrap, topics, receiver.url, group, grace=0.1)
    async with running(first) as run:
        await run.until(lambda: first.due == 1, "the action decided")
    assert first.delivered == 0
    await receiver.start()
    try:
        second = new_runner(kafka_bootstrap, topics, receiver.url, group)
        async with running(second) as run:
            await run.until(lambda: second.delivered == 1, "the delivery by the next runner")
            await asyncio.sleep(0.3)
    finally:
        await receiver.stop()
    assert [(r.rule, r.payload["recipient"]) for r in receiver.accepted] == [("tell-sales", "r-1")]
    assert second.events_read == 0  # the event was committed with its decision: only the state was needed


async def test_topics_are_created_alongside_events_classified(kafka_bootstrap: str, topics: Topics) -> None:
    trigger_topics = TriggerTopics(topics.prefix)
    with pytest.raises(RuntimeError, match=r"triggers\.state.*do not exist"):
        await ensure_topics(kafka_bootstrap, topics.events_classified, trigger_topics, 3600, create=False)
    with pytest.raises(RuntimeError, match=r"nope\.events\.classified' does not exist"):
        await ensure_topics(kafka_bootstrap, "nope.events.classified", trigger_topics, 3600, wait=0.5)
    runner = new_runner(kafka_bootstrap, topics, "http://127.0.0.1:9/hook", f"g-{uuid.uuid4().hex[:8]}")
    async with running(runner) as run:
        await run.until(lambda: bool(runner._parts), "partitions assigned")
    state = TriggerTopics(topics.prefix).state
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([topics.events_classified, state])}
        (answer,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, state,
                                                                 {"cleanup.policy": None, "retention.ms": None})])
    finally:
        await admin.close()
    assert len(described[state]["partitions"]) == len(described[topics.events_classified]["partitions"])
    configs = {c[0]: c[1] for c in answer.resources[0][4]}
    assert configs == {"cleanup.policy": "compact,delete", "retention.ms": str(90 * 86400 * 1000)}

    # a state topic with fewer partitions than events.classified is refused with a clear error
    few = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    await create_topics(kafka_bootstrap, [few.events_classified], partitions=4)
    await create_topics(kafka_bootstrap, [TriggerTopics(few.prefix).state], partitions=2)
    with pytest.raises(RuntimeError, match="has 2 partitions, fewer than"):
        await ensure_topics(kafka_bootstrap, few.events_classified, TriggerTopics(few.prefix), 3600)
