"""Recipient events in the embedded wiring (`pixeltrack serve`): fed what the edge and the API publish,
each action journalled before it is delivered.

The in-process sibling of recipient_runner.py, on the triggers' own pieces: records are mapped by
recipient_events.py, each new action is written DUE (with its body) to a journal (service.py's
StateJournal, in its own folder) before it is delivered by the Dispatcher, and FIRED or DEAD (after its
dead letter) once it ended. A restart delivers what is still DUE under the same key and body, and never
again what FIRED or went DEAD within the rules' `remember`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import aiohttp

from processors.triggers.dispatch import Dispatcher
from processors.triggers.recipient_events import RecipientEventMapper
from processors.triggers.records import DEAD, DUE, FIRED, Action, StateRecord, TriggerDeadLetter, action_record
from processors.triggers.rules import RuleSet
from processors.triggers.service import _LocalFiles
from processors.triggers.webhook import Delivery, RetryPolicy, WebhookClient
from schemas.records import Record
from schemas.topics import Topics

log = logging.getLogger(__name__)


class RecipientEventService:
    """Wire it as

        service = RecipientEventService(rules, Topics(prefix), state_dir=data_dir / "recipient-events")
        publisher = a publisher that also awaits service.take(records)   (pixeltrack/compose/serve.py)
        task = asyncio.create_task(service.run(stop))

    `take` returns once the new actions are journalled (they are delivered while `run` runs, queued
    before). Without `state_dir` nothing is journalled (tests); nothing naming a recipient `erased(tenant,
    recipient)` says was erased is journalled either (see forget)."""

    def __init__(self, rules: RuleSet, topics: Topics, *, state_dir: Path | None, retry: RetryPolicy | None = None,
                 max_in_flight: int = 16, shutdown_grace: float = 5.0, clock: Callable[[], float] = time.time,
                 erased: Callable[[str, str], bool] | None = None) -> None:
        if rules.recipient_events is None:
            raise ValueError(f"{rules.source}: no [recipient_events] table")
        self._rules = rules
        self._mapper = RecipientEventMapper(topics, rules.recipient_events)
        self.topics = frozenset(self._mapper.names)
        self._retry = retry or RetryPolicy()
        self._max_in_flight = max_in_flight
        self._grace = shutdown_grace
        self._clock = clock
        self._files = _LocalFiles(state_dir, clock, erased)
        self._known: set[str] = set()  # keys decided (due, fired or dead) within `remember`
        self._queued: list[Action] = []
        self._dispatcher: Dispatcher | None = None
        self.delivered = 0
        self.dead_lettered = 0
        self.undecodable = 0
        if self._files.journal is not None:
            for rec in self._files.journal.load(clock()):
                self._known.add(rec.key)
                if rec.status == DUE and rec.payload is not None:
                    self._queued.append(Action(rec.key, rec.rule, rec.webhook, rec.payload))

    @property
    def due(self) -> int:
        """Actions journalled and not yet ended (queued or being delivered)."""
        return len(self._queued) + (self._dispatcher.pending if self._dispatcher is not None else 0)

    async def take(self, records: Sequence[Record]) -> None:
        """Journals the actions of the recipient events among `records` (others are ignored), sets aside
        the records that do not decode, then delivers the new actions."""
        now = self._clock()
        new: list[Action] = []
        letters: list[TriggerDeadLetter] = []
        for r in records:
            if r.topic not in self.topics:
                continue
            try:
                action = self._mapper.action(r.topic, r.value)
            except ValueError as exc:
                letters.append(TriggerDeadLetter("event", "undecodable", f"{r.topic}: {exc}"[:500], now,
                                                 raw=r.value[:512].decode("utf-8", "replace")))
                continue
            if action is not None and action.key not in self._known:
                self._known.add(action.key)
                new.append(action)
        if new:
            await self._files.keep([(0, self._record(a, DUE, now)) for a in new])
        if letters:
            self.undecodable += len(letters)
            await self._files.send(letters)
        for action in new:
            self._submit(action)

    def _record(self, action: Action, status: str, now: float, attempts: int = 0, reason: str = "") -> StateRecord:
        return action_record(action, status, now, now + self._rules.remember, attempts, reason)

    def _submit(self, action: Action) -> None:
        if self._dispatcher is None:
            self._queued.append(action)
        else:
            self._dispatcher.submit(action, 0)

    async def _on_delivered(self, action: Action, delivery: Delivery, tag: Hashable) -> None:
        now = self._clock()
        if delivery.ok:
            self.delivered += 1
            rec = self._record(action, FIRED, now, delivery.attempts)
        else:
            webhook = self._rules.webhooks.get(action.webhook)
            await self._files.send([TriggerDeadLetter(
                "action", delivery.reason, delivery.detail[:500], now, key=action.key, rule=action.rule,
                webhook=action.webhook, url=webhook.url if webhook else "", attempts=delivery.attempts,
                first_attempt_at=delivery.first_attempt_at, last_status=delivery.status, payload=action.payload)])
            log.warning("recipient event dead letter: %s %s %s", action.rule, delivery.reason, action.key)
            self.dead_lettered += 1
            rec = self._record(action, DEAD, now, delivery.attempts, delivery.reason)
        await self._files.keep([(0, rec)])

    async def forget(self, tenant: str, recipient: str) -> int:
        """Erases a recipient `pixeltrack forget` erased (through serve's admin endpoint): actions of theirs
        not yet handed to a delivery are dropped, nothing naming them is journalled any more (a change of
        theirs that arrives later is still delivered, as the processors still record an unsubscribe, but
        leaves no line), and the journal and dead-letter file are purged of them. Returns the lines removed."""
        who = (tenant, recipient)
        self._queued = [a for a in self._queued if (a.payload.get("tenant", ""), a.payload.get("recipient")) != who]
        return await self._files.forget(tenant, recipient)

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until `stop`, then waits up to shutdown_grace for running deliveries (the others stay
        due in the journal)."""
        async with aiohttp.ClientSession() as session:
            self._dispatcher = Dispatcher(WebhookClient(session, self._retry), self._rules, self._on_delivered,
                                          self._max_in_flight)
            queued, self._queued = self._queued, []
            for action in queued:
                self._dispatcher.submit(action, 0)
            try:
                await stop.wait()
            finally:
                await self._dispatcher.close(self._grace)
                self._dispatcher = None
