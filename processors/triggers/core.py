"""The one trigger core of both runners: decode, feed/advance, persist, acknowledge, dispatch, record outcomes.

A batch of events.classified records goes through these steps, in this order, whatever carries it
(Kafka's consumer group in `pixeltrack triggers`, the LocalRunner's `feed` in `pixeltrack serve`):

1. decoded; a record that does not decode becomes a dead letter (`undecodable`), never an error;
2. fed to its partition's engine, then every engine is advanced (settled events acted on, deadlines
   checked) when the adapter asks for it;
3. persisted: the engines' state changes are made durable by the adapter's `StateStore` (the compacted
   triggers.state topic, or the journal file), then the letters by its `LetterSink` (triggers.dlq, or
   the dead-letter file);
4. acknowledged: `take` returns the refs (Kafka offsets) whose effects are now durable, so the adapter
   may commit them; the embedded side has no refs and ignores them;
5. dispatched: the new actions go to the Dispatcher (queued until `start` when it is not running yet).

A delivery's outcome is recorded by `_on_delivered`: FIRED, or the dead letter (acknowledged) then
DEAD, in the state store under the action's tag. Until then the action stays DUE in the kept state, so
a crash or a revoke means it is delivered again under the same idempotency key.

Tags: one engine per partition of events.classified, the partition id being the tag under which its
state is kept and its deliveries run; the embedded side is partition 0. Kafka's rebalances add and
drop engines (`engines`); the core never reads a transport itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from processors.triggers import metrics
from processors.triggers.dispatch import Dispatcher
from processors.triggers.engine import Step, TriggerEngine
from processors.triggers.records import DEAD, FIRED, Action, StateRecord, TriggerDeadLetter, action_record
from processors.triggers.rules import RuleSet
from processors.triggers.webhook import Delivery, RetryPolicy, WebhookClient
from schemas.classified import ClassifiedEvent

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """Where kept state goes: `keep` returns once the records are durable, each under its partition."""

    async def keep(self, changes: Sequence[tuple[int, StateRecord]]) -> None: ...


class LetterSink(Protocol):
    """Where dead letters go: `send` returns once they are durable."""

    async def send(self, letters: Sequence[TriggerDeadLetter]) -> None: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """One events.classified record as a transport carried it: `ref` is what acknowledging it means to
    the transport (Kafka's offset; None in-process), `origin` names it in a dead letter's detail."""

    value: bytes | None
    ref: int | None = None
    origin: str = ""


class TriggerCore:
    """The engines of the assigned partitions and what happens around them; adapters supply the
    transport, the state store and the letter sink (see the module docstring for the order)."""

    def __init__(self, rules: RuleSet, store: StateStore, letters: LetterSink, retry: RetryPolicy,
                 max_in_flight: int, clock: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self.engines: dict[int, TriggerEngine] = {}
        self._store = store
        self._letters = letters
        self._retry = retry
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._dispatcher: Dispatcher | None = None
        self._queued: list[tuple[Action, int]] = []
        self.delivered = 0
        self.dead_lettered = 0
        self.undecodable = 0

    @property
    def held(self) -> int:
        """Events settling, over every engine."""
        return sum(e.held for e in self.engines.values())

    @property
    def due(self) -> int:
        """Actions decided and not yet delivered or dead-lettered, over every engine."""
        return sum(e.due for e in self.engines.values())

    # --- deliveries running ------------------------------------------------------------------------

    def start(self, session: aiohttp.ClientSession) -> None:
        """Starts delivering over `session`, the actions queued so far first."""
        self._dispatcher = Dispatcher(WebhookClient(session, self._retry), self.rules, self._on_delivered,
                                      self._max_in_flight)
        queued, self._queued = self._queued, []
        for action, tag in queued:
            self._dispatcher.submit(action, tag)

    async def stop(self, grace: float) -> None:
        """Waits up to `grace` seconds for running deliveries; the others stay due in the kept state."""
        if self._dispatcher is not None:
            await self._dispatcher.close(grace)
            self._dispatcher = None

    async def cancel(self, tag: int) -> None:
        """Stops one partition's deliveries (it moved away); its actions stay due for the next owner."""
        if self._dispatcher is not None:
            await self._dispatcher.cancel(tag)

    def dispatch(self, actions: Sequence[Action], tag: int) -> None:
        """Delivers `actions` under `tag` (queued until `start`)."""
        for action in actions:
            if self._dispatcher is not None:
                self._dispatcher.submit(action, tag)
            else:
                self._queued.append((action, tag))

    # --- the step ----------------------------------------------------------------------------------

    async def take(self, batches: Mapping[int, Sequence[Incoming]], advance: bool) -> dict[int, list[int]]:
        """Decodes and feeds `batches` (partition → records) to their engines, with `advance` then advances
        every engine, persists the changes and letters, and dispatches the new actions. Returns, per
        partition, the refs whose effects are durable now (to acknowledge). Partitions without an engine
        (revoked since the fetch) are skipped."""
        now = self._clock()
        steps: list[tuple[int, Step]] = []
        letters: list[TriggerDeadLetter] = []
        acked: dict[int, list[int]] = {}
        for tag, records in batches.items():
            engine = self.engines.get(tag)
            if engine is None:
                continue
            for r in records:
                try:
                    if r.value is None:
                        raise ValueError("empty record")
                    event = ClassifiedEvent.decode(r.value)
                except ValueError as exc:
                    raw = (r.value or b"")[:512].decode("utf-8", "replace")
                    detail = f"{r.origin}: {exc}" if r.origin else str(exc)
                    letters.append(TriggerDeadLetter("event", "undecodable", detail[:500], now, raw=raw))
                    if r.ref is not None:
                        acked.setdefault(tag, []).append(r.ref)
                    continue
                steps.append((tag, engine.feed(event, now, r.ref)))
        if advance:
            steps += [(tag, engine.advance(now)) for tag, engine in self.engines.items()]
        # Durable before acknowledged or delivered: a crash re-reads what is not recorded, and the kept
        # state says what was already decided.
        await self._store.keep([(tag, c) for tag, s in steps for c in s.changes])
        if letters:
            self.undecodable += len(letters)
            for letter in letters:
                log.warning("trigger dead letter: %s %s %s", letter.kind, letter.reason, letter.detail)
            await self._letters.send(letters)
        for tag, s in steps:
            if s.done:
                acked.setdefault(tag, []).extend(s.done)
        for tag, s in steps:
            for action in s.actions:
                metrics.DECIDED.labels(action.rule).inc()
            self.dispatch(s.actions, tag)
        metrics.SETTLING.set(self.held)
        metrics.DUE.set(self.due)
        return acked

    async def _on_delivered(self, action: Action, delivery: Delivery, tag: Hashable) -> None:
        """Records the outcome: FIRED, or a dead letter (acknowledged) then DEAD, under the action's tag.
        A partition revoked meanwhile has no engine here: its record is still written for the next owner."""
        assert isinstance(tag, int)
        now = self._clock()
        engine = self.engines.get(tag)
        if delivery.ok:
            rec = (engine.mark_fired(action, now, delivery.attempts) if engine is not None
                   else action_record(action, FIRED, now, now + self.rules.remember, delivery.attempts))
            self.delivered += 1
        else:
            webhook = self.rules.webhooks.get(action.webhook)
            letter = TriggerDeadLetter(
                "action", delivery.reason, delivery.detail[:500], now, key=action.key, rule=action.rule,
                webhook=action.webhook, url=webhook.url if webhook else "", attempts=delivery.attempts,
                first_attempt_at=delivery.first_attempt_at, last_status=delivery.status, payload=action.payload)
            log.warning("trigger dead letter: %s %s %s", letter.kind, letter.reason, letter.key)
            await self._letters.send([letter])
            rec = (engine.mark_dead(action, now, delivery.attempts, delivery.reason) if engine is not None
                   else action_record(action, DEAD, now, now + self.rules.remember, delivery.attempts,
                                      delivery.reason))
            self.dead_lettered += 1
        await self._store.keep([(tag, rec)])
