"""`forget` in serve's trigger files: the services purge their journal and dead-letter file of the recipient,
drop what they hold of them, and write nothing naming them afterwards (a delivery under way included)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from processors.triggers.engine import TriggerEngine
from processors.triggers.recipient_service import RecipientEventService
from processors.triggers.rules import parse_rules
from processors.triggers.service import DLQ_FILE, STATE_FILE, purge_journals
from processors.triggers.webhook import RetryPolicy
from schemas.classified import ClassifiedEvent
from schemas.consents import Consent
from schemas.records import Record
from schemas.topics import Topics
from tests.plugins.waiting import eventually

from .events import NOW, SECRET, event, make_rules
from .receiver import Receiver
from .test_service import records, running, service

T = Topics()


def holding(folder: Path, needle: str) -> list[str]:
    """The files under `folder` whose bytes contain `needle`."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def click(hit_id: str, recipient: str) -> ClassifiedEvent:
    return event(hit_id, "click", ts=time.time(), link="https://shop.example.com/pricing", recipient=recipient,
                 message=f"m-{recipient}")


async def test_the_trigger_service_forgets_a_recipient_also_while_delivering_to_them(tmp_path: Path) -> None:
    receiver = await Receiver(SECRET).start()
    receiver.always = 500
    retry = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=1.0)
    try:
        async with running(service(receiver.url, tmp_path, retry=retry)) as s:
            opens = [event(f"o-{who}", recipient=who, message=f"m-{who}", ts=time.time()) for who in ("erin", "olaf")]
            await s.feed(records([click("c-erin", "erin"), click("c-olaf", "olaf"), *opens]))
            await s.feed([Record("events.classified", b"m", b'{"tenant":"acme","recipient":"erin","kind":')])
            await eventually(lambda: len(receiver.calls) >= 2, 10, "both deliveries tried")
            assert holding(tmp_path, "erin")
            assert s.engine.due == 4  # first-open and tell-sales, each's
            removed = await s.forget("acme", "erin")
            assert removed == 4  # its two actions' DUE lines, the window its click closed, its undecodable event
            assert holding(tmp_path, "erin") == []
            assert s.engine.due == 2
            # the deliveries under way give up: the letters and DEAD records written are olaf's only
            await eventually(lambda: s.dead_lettered == 4, 10, "all given up")
    finally:
        await receiver.stop()
    assert holding(tmp_path, "erin") == []
    assert {p.rsplit("/", 1)[1] for p in holding(tmp_path, "olaf")} == {STATE_FILE, DLQ_FILE}
    for name in (STATE_FILE, DLQ_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == sorted([STATE_FILE, DLQ_FILE])


def test_the_engine_drops_a_recipients_held_events_windows_and_due_actions() -> None:
    engine = TriggerEngine(make_rules(), settle_seconds=60)
    for who in ("erin", "olaf"):
        engine.feed(event(f"o1-{who}", recipient=who, ts=NOW), NOW)
        engine.feed(event(f"o2-{who}", recipient=who, ts=NOW + 1), NOW)
    engine.advance(NOW + 61)  # settled: first-open due, call-them counting
    engine.feed(event("o3-erin", recipient="erin", ts=NOW + 70), NOW + 70)  # held
    assert (engine.held, engine.due, engine.counting) == (1, 2, 2)
    assert engine.forget("acme", "erin") == 3
    assert (engine.held, engine.due, engine.counting) == (0, 1, 1)
    assert [a.payload["recipient"] for a in engine.due_actions()] == ["olaf"]
    assert engine.forget("other-tenant", "olaf") == 0
    step = engine.advance(NOW + 10_000)
    assert all(a.payload["recipient"] == "olaf" for a in step.actions)


async def test_the_recipient_event_service_forgets_and_journals_nothing_of_them_afterwards(tmp_path: Path) -> None:
    receiver = await Receiver(SECRET).start()
    rules = parse_rules(f'[webhooks.crm]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n[recipient_events]\n')

    def consent(who: str, ts: float) -> Record:
        return Record(T.consents, who.encode(), Consent("", who, "denied", ts, "preferences").encode())

    stop = asyncio.Event()
    s = RecipientEventService(rules, T, state_dir=tmp_path, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    task = asyncio.create_task(s.run(stop))
    try:
        await s.take([consent("erin", NOW), consent("olaf", NOW), Record(T.consents, b"x", b'{"recipient":"erin"')])
        await eventually(lambda: s.delivered == 2, 10, "both delivered")
        assert holding(tmp_path, "erin")
        assert await s.forget("", "erin") == 3  # DUE, FIRED and the undecodable record
        assert holding(tmp_path, "erin") == []
        # a later change of theirs still reaches the sender, and leaves no line
        await s.take([consent("erin", NOW + 5)])
        await eventually(lambda: s.delivered == 3, 10, "the later change delivered")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await receiver.stop()
    assert [c.payload["recipient"] for c in receiver.accepted] == ["erin", "olaf", "erin"]
    assert holding(tmp_path, "erin") == []
    assert holding(tmp_path, "olaf") == [str(tmp_path / STATE_FILE)]


def test_purging_a_folder_no_service_runs_in(tmp_path: Path) -> None:
    """A line a crash cut, and what a rewrite cut short left (*.tmp), go too; the file is replaced, 0600."""
    folder = tmp_path / "triggers"
    folder.mkdir()
    state = folder / STATE_FILE
    state.write_bytes(b'{"key":"k1","status":"fired","rule":"r","tenant":"","recipient":"olaf"}\n'
                      b'{"key":"k2","status":"fired","rule":"r","tenant":"","recipient":"erin"}\n'
                      b'{"key":"k3","status":"due","rule":"r","tenant":"","recipie')
    (folder / DLQ_FILE).write_bytes(b'{"kind":"event","raw":"{\\"tenant\\":\\"\\",\\"recipient\\":\\"erin\\",\\"st"}\n')
    (folder / "triggers-state.tmp").write_bytes(b"erin")
    state.chmod(0o644)
    inode = state.stat().st_ino
    assert purge_journals(folder, "", "erin") == 2
    assert purge_journals(folder, "acme", "olaf") == 0  # another tenant's olaf
    assert purge_journals(tmp_path / "missing", "", "erin") == 0
    assert holding(folder, "erin") == []
    assert state.read_bytes().startswith(b'{"key":"k1"')
    assert state.stat().st_ino != inode
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert sorted(os.listdir(folder)) == sorted([STATE_FILE, DLQ_FILE])
