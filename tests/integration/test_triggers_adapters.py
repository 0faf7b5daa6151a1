"""The trigger core's two adapters (Kafka's TriggerRunner, the embedded TriggerService), fed the same events,
deliver the same webhooks in the same order and keep the same state and dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from processors.triggers.records import CLOSED, FIRED, StateRecord
from processors.triggers.runner import TriggerRunner
from processors.triggers.service import DLQ_FILE, STATE_FILE, StateJournal, TriggerService
from processors.triggers.webhook import RetryPolicy
from schemas.records import Record
from schemas.topics import Topics
from tests.integration.test_triggers import read_all
from tests.plugins.kafka import create_topics
from tests.plugins.waiting import eventually
from tests.unit.processors.triggers.events import SECRET, event, make_rules
from tests.unit.processors.triggers.receiver import Receiver

pytestmark = pytest.mark.kafka
SETTLE = 0.3
RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)


def inputs() -> list[bytes]:
    """Three opens (one by a machine), a pricing click, and a record that does not decode, for one message."""
    t = time.time()
    events = [event("o1", "open", ts=t), event("o2", "open", ts=t + 1),
              event("o3", "open", ts=t + 2, verdict="machine"),
              event("c1", "click", ts=t + 3, link="https://shop.example.com/pricing")]
    return [e.encode() for e in events[:2]] + [b"{not json"] + [e.encode() for e in events[2:]]


def webhooks(receiver: Receiver) -> list[tuple[str, str, dict[str, Any]]]:
    """(rule, idempotency key, body without its decision time) of each accepted delivery, in order."""
    return [(r.rule, r.key, {k: v for k, v in r.payload.items() if k != "decided_at"}) for r in receiver.accepted]


def kept(records: list[StateRecord]) -> dict[str, tuple[Any, ...]]:
    """The latest record per key, without the times the adapters' clocks stamped."""
    latest: dict[str, StateRecord] = {}
    for rec in records:
        latest[rec.key] = rec
    return {k: (r.status, r.rule, r.recipient, r.window, r.opens, r.attempts, r.reason,
                {k2: v for k2, v in (r.payload or {}).items() if k2 != "decided_at"})
            for k, r in latest.items()}


async def test_both_adapters_deliver_and_keep_the_same(kafka_bootstrap: str, kafka_topics: Topics,
                                                       tmp_path: Path) -> None:
    values = inputs()
    # one delivery at a time in both, so the order of the webhooks is the order of the decisions
    embedded_receiver = await Receiver(SECRET).start()
    try:
        service = TriggerService(make_rules(embedded_receiver.url), state_dir=tmp_path, settle_seconds=SETTLE,
                                 tick_seconds=0.02, retry=RETRY, max_in_flight=1)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await service.feed([Record("events.classified", b"m-1", v) for v in values])
        await eventually(lambda: service.delivered == 2 and service.engine.held == 0, 10, "the embedded webhooks")
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await embedded_receiver.stop()

    kafka_receiver = await Receiver(SECRET).start()
    try:
        await create_topics(kafka_bootstrap, [kafka_topics.events_classified])
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(kafka_topics.events_classified, v, key=b"m-1")
                                   for v in values])
        finally:
            await producer.stop()
        runner = TriggerRunner(kafka_bootstrap, f"g-{uuid.uuid4().hex[:8]}", kafka_topics,
                               make_rules(kafka_receiver.url), settle_seconds=SETTLE, retry=RETRY, poll_ms=50,
                               max_in_flight=1)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await eventually(lambda: (runner.delivered == 2 and runner.events_read == len(values)
                                  and runner.held == 0) or task.done(), 30, "the Kafka webhooks")
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await kafka_receiver.stop()

    assert [rule for rule, _, _ in webhooks(embedded_receiver)] == ["first-open", "tell-sales"]
    assert webhooks(kafka_receiver) == webhooks(embedded_receiver)

    journal = StateJournal(tmp_path / STATE_FILE).load(time.time())
    topic = [StateRecord.decode(r.value) for r in await read_all(kafka_bootstrap, runner.topics.state) if r.value]
    assert kept(topic) == kept(journal)
    assert sorted(status for status, *_ in kept(journal).values()) == [CLOSED, FIRED, FIRED]

    embedded_letters = [orjson.loads(line) for line in (tmp_path / DLQ_FILE).read_bytes().splitlines()]
    kafka_letters = [orjson.loads(r.value) for r in await read_all(kafka_bootstrap, runner.topics.dlq) if r.value]
    assert [(d["kind"], d["reason"], d["raw"]) for d in kafka_letters] == \
        [(d["kind"], d["reason"], d["raw"]) for d in embedded_letters] == [("event", "undecodable", "{not json")]
