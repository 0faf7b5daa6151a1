"""The embedded wiring: LocalRunner batches in, signed webhooks out, state kept in a journal across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest

from processors.triggers.records import CLOSED, DUE, FIRED, StateRecord
from processors.triggers.service import DLQ_FILE, STATE_FILE, StateJournal, TriggerService
from processors.triggers.webhook import RetryPolicy
from schemas.classified import ClassifiedEvent
from schemas.records import Record
from tests.plugins.waiting import eventually

from .events import SECRET, event, make_rules
from .receiver import Receiver, free_port

SETTLE = 0.2


def records(events: Sequence[ClassifiedEvent]) -> list[Record]:
    return [Record("events.classified", e.message.encode(), e.encode()) for e in events]


def pricing_click(hit_id: str = "c1", *, verdict: str = "human", after: float = 0.0) -> ClassifiedEvent:
    return event(hit_id, "click", ts=time.time() + after, link="https://shop.example.com/pricing", verdict=verdict)


@contextlib.asynccontextmanager
async def running(service: TriggerService) -> AsyncIterator[TriggerService]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def service(url: str, state_dir: Path, retry: RetryPolicy | None = None, shutdown_grace: float = 5.0) -> TriggerService:
    return TriggerService(make_rules(url), state_dir=state_dir, settle_seconds=SETTLE, tick_seconds=0.02,
                          retry=retry, shutdown_grace=shutdown_grace)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


async def test_fires_once_and_not_again_after_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    batch = records([pricing_click("c1"), pricing_click("c2", after=1),
                     pricing_click("c3", verdict="machine")])
    async with running(service(receiver.url, tmp_path)) as s:
        await s.feed(batch)
        await eventually(lambda: len(receiver.accepted) == 1, 10, "the webhook")
        await asyncio.sleep(SETTLE * 2)
    assert [r.rule for r in receiver.accepted] == ["tell-sales"]
    assert s.delivered == 1
    journal = [StateRecord.decode(line) for line in (tmp_path / STATE_FILE).read_bytes().splitlines()]
    assert [(r.rule, r.status) for r in journal] == [("tell-sales", DUE), ("call-them", CLOSED),
                                                     ("tell-sales", FIRED)]

    async with running(service(receiver.url, tmp_path)) as again:
        await again.feed(batch)  # the same events after a restart, and a new pricing click
        await again.feed(records([pricing_click("c9")]))
        await asyncio.sleep(SETTLE * 3)
    assert len(receiver.accepted) == 1


async def test_an_action_due_at_shutdown_is_delivered_after_the_restart(tmp_path: Path) -> None:
    receiver = Receiver(SECRET, port=free_port())  # down: connection refused
    retry = RetryPolicy(max_attempts=50, base_delay=0.05, max_delay=0.1)
    async with running(service(receiver.url, tmp_path, retry=retry, shutdown_grace=0.05)) as s:
        await s.feed(records([pricing_click()]))
        await eventually(lambda: s.engine.due == 1, 5, "the action decided")
    assert s.delivered == 0
    await receiver.start()
    try:
        async with running(service(receiver.url, tmp_path, retry=retry)) as s2:
            assert s2.engine.due == 1
            await eventually(lambda: s2.delivered == 1, 10, "the delivery after the restart")
    finally:
        await receiver.stop()
    assert [(r.rule, r.payload["recipient"]) for r in receiver.accepted] == [("tell-sales", "r-1")]


async def test_given_up_actions_and_unreadable_events_are_dead_lettered(tmp_path: Path, receiver: Receiver) -> None:
    receiver.always = 500
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    async with running(service(receiver.url, tmp_path, retry=retry)) as s:
        await s.feed([*records([pricing_click()]), Record("events.classified", b"m", b"{not json")])
        await eventually(lambda: s.dead_lettered == 1, 10, "the dead letter")
    letters = [orjson.loads(line) for line in (tmp_path / DLQ_FILE).read_bytes().splitlines()]
    assert [(d["kind"], d["reason"]) for d in letters] == [("event", "undecodable"), ("action", "http_500")]
    assert letters[1]["attempts"] == 2
    assert letters[1]["rule"] == "tell-sales"
    assert letters[1]["payload"]["recipient"] == "r-1"
    assert len(receiver.calls) == 2


async def test_state_and_dead_letters_are_owner_only(tmp_path: Path, receiver: Receiver) -> None:
    """They hold recipient ids, action bodies and receivers' answers: files 0600 in a 0700 folder, also
    under a permissive umask, and a file an earlier version left 0644 is narrowed."""
    state_dir = tmp_path / "data" / "triggers"
    state_dir.mkdir(parents=True)
    (state_dir / DLQ_FILE).write_bytes(b"")
    (state_dir / DLQ_FILE).chmod(0o644)
    fresh = tmp_path / "fresh" / "triggers"
    receiver.always = 500
    retry = RetryPolicy(max_attempts=1)
    old_umask = os.umask(0o022)
    try:
        for folder in (state_dir, fresh):
            s = service(receiver.url, folder, retry=retry)
            async with running(s):
                await s.feed(records([pricing_click()]))
                await eventually(lambda: s.dead_lettered == 1, 10, "the dead letter")  # noqa: B023
    finally:
        os.umask(old_umask)
    for folder in (state_dir, fresh):
        assert stat.S_IMODE((folder / STATE_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / DLQ_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_the_journal_keeps_the_last_record_per_key_and_drops_expired_ones(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    journal = StateJournal(path, compact_after=5)

    def rec(key: str, status: str, expires: float) -> StateRecord:
        return StateRecord(key, status, "r", "t", "x", "message:m", 1.0, expires)

    journal.append([rec("a", DUE, 100), rec("b", DUE, 100), rec("a", FIRED, 100)], now=0)
    journal.append([rec("c", FIRED, 5)], now=0)
    with path.open("ab") as f:
        f.write(b'{"cut by a cra')  # a line cut short by a crash
    assert [(r.key, r.status) for r in StateJournal(path).load(now=10)] == [("b", DUE), ("a", FIRED)]
    assert len(path.read_bytes().splitlines()) == 2  # compacted when loaded
    journal.append([rec(f"k{i}", FIRED, 100) for i in range(6)], now=10)  # past compact_after: rewritten
    assert len(path.read_bytes().splitlines()) == 8


async def test_a_full_engine_sets_events_aside_instead_of_holding_up_the_runner(tmp_path: Path) -> None:
    """Over its bounds (here: one due action, its receiver down), feed waits full_wait for room and then
    puts the batch in the dead-letter file (engine_full): pixeltrack serve's analytics never wait on a
    webhook."""
    from processors.triggers.engine import EngineLimits

    down = Receiver(SECRET, port=free_port())  # connection refused
    s = TriggerService(make_rules(down.url), state_dir=tmp_path, settle_seconds=SETTLE, tick_seconds=0.02,
                       retry=RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=1.0),
                       limits=EngineLimits(max_due=1), full_wait=0.2)
    async with running(s):
        await s.feed(records([pricing_click("c1")]))
        await eventually(lambda: s.engine.full, 10, "the action due")
        started = time.monotonic()
        await s.feed(records([pricing_click("c2", after=1), pricing_click("c3", after=2)]))
        assert time.monotonic() - started < 2
    assert s.set_aside == 2
    letters = [orjson.loads(line) for line in (tmp_path / DLQ_FILE).read_bytes().splitlines()]
    assert [(d["kind"], d["reason"]) for d in letters] == [("event", "engine_full")] * 2
