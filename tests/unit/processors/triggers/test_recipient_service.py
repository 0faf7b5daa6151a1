"""Recipient events in `serve`: journalled before delivery, once per change across restarts, to a real
receiver on 127.0.0.1 that verifies every signature."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from processors.triggers.recipient_service import RecipientEventService
from processors.triggers.rules import RuleSet, parse_rules
from processors.triggers.webhook import RetryPolicy
from schemas.consents import Consent
from schemas.records import Record
from schemas.sends import Unsubscribe
from schemas.topics import Topics
from tests.plugins.waiting import eventually
from tests.unit.processors.triggers.receiver import Receiver

SECRET = "serve-recipient-secret-0123"
T = Topics()
TS = 1_796_000_000.5
FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
RECORDS = [
    Record(T.consents, b"r-1", Consent("", "r-1", "denied", TS, "preferences").encode()),
    Record(T.unsubscribes, b"m-1", Unsubscribe("", "h" * 64, "spring", "m-1", TS, "r-1").encode()),
    Record(T.sends, b"m-1", b"{}"),  # not a recipient event: ignored
    Record(T.consents, b"r-2", b"{broken"),  # a dead letter
]


def rules(url: str) -> RuleSet:
    return parse_rules(f'[webhooks.crm]\nurl = "{url}"\nsecret = "{SECRET}"\n[recipient_events]\n')


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


async def running(service: RecipientEventService, until: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(service.run(until))


async def test_each_change_is_delivered_once_also_after_a_restart(receiver: Receiver, tmp_path: Path) -> None:
    first = RecipientEventService(rules(receiver.url), T, state_dir=tmp_path, retry=FAST)
    await first.take(RECORDS)  # before run: journalled and queued
    stop = asyncio.Event()
    task = await running(first, stop)
    await eventually(lambda: len(receiver.accepted) == 2, 10, "two webhooks")
    await first.take(RECORDS)  # the same records again (a batch published twice): nothing new
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert sorted(r.rule for r in receiver.accepted) == ["consent.changed", "recipient.unsubscribed"]
    assert receiver.bad_signatures == []
    assert first.undecodable == 2
    assert (tmp_path / "triggers-dlq.jsonl").read_text().count('"undecodable"') == 2

    again = RecipientEventService(rules(receiver.url), T, state_dir=tmp_path, retry=FAST)
    assert again.due == 0
    await again.take(RECORDS)
    stop = asyncio.Event()
    task = await running(again, stop)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert len(receiver.calls) == 2


async def test_what_was_due_at_a_stop_is_delivered_after_the_restart(receiver: Receiver, tmp_path: Path) -> None:
    receiver.always = 503  # down while the first service runs
    first = RecipientEventService(rules(receiver.url), T, state_dir=tmp_path,
                                  retry=RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.05),
                                  shutdown_grace=0.1)
    await first.take(RECORDS[:1])
    stop = asyncio.Event()
    task = await running(first, stop)
    await eventually(lambda: len(receiver.calls) >= 2, 10, "failed attempts")
    stop.set()
    await task
    assert receiver.accepted == []
    assert first.delivered == 0

    # An attempt sent just before the grace ran out was cancelled in flight: the receiver (on this same
    # loop) may still answer it after it came back up below. Delivery is at least once under one
    # idempotency key, so the restart's own delivery (its attempt 1) is what this test waits for.
    receiver.always = None
    again = RecipientEventService(rules(receiver.url), T, state_dir=tmp_path, retry=FAST)
    assert again.due == 1
    stop = asyncio.Event()
    task = await running(again, stop)
    await eventually(lambda: again.delivered == 1 and again.due == 0, 10, "the delivery after the restart")
    stop.set()
    await task
    (got,) = [r for r in receiver.accepted if r.attempt == 1]  # the first run's attempts were all 503
    assert (got.rule, got.payload["recipient"], got.payload["state"]) == ("consent.changed", "r-1", "denied")
    assert {r.body for r in receiver.accepted} == {got.body}  # a late answer to the first run: the same body
    assert {k for k, _ in receiver.calls} == {got.key}  # every attempt, before and after, under one key
    assert RecipientEventService(rules(receiver.url), T, state_dir=tmp_path, retry=FAST).due == 0  # FIRED kept
