"""The triggers' pure core: classified events and the clock in; webhook actions and state records out.

Longer than 400 lines because TriggerEngine is one pure state machine (held events, counting windows, settle
timers) whose transitions read one another's state; apart, they would share its internals.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.triggers.records import (
    CLOSED,
    COUNTING,
    DEAD,
    DUE,
    FINAL,
    FIRED,
    Action,
    StateRecord,
    action_record,
    idempotency_key,
    window_of,
)
from processors.triggers.rules import FIRST_OPEN, OPENS_WITHOUT_CLICK, TAGGED_CLICK, Rule, RuleSet
from schemas.classified import ClassifiedEvent
from schemas.tokens import FLAG_HONEYPOT, FLAG_UNSUBSCRIBE
from schemas.verdicts import HUMAN

NOT_A_CLICK = FLAG_HONEYPOT | FLAG_UNSUBSCRIBE
"""Link flags whose clicks never count for triggers: unsubscribe links (scanners follow them) and honeypots."""

DEFAULT_SETTLE_SECONDS = 150.0
"""How long an event is held before it is acted on. The classifier revises a provisional human verdict
when behaviour shows, up to its pixel_burst_window (120 s: a scanner's pixel before its link burst)
after the hit; link bursts (2-10 s), scanner-client (60 s) and time-of-click (2 s) windows are shorter.
150 s covers 120 s plus the processors' batching and a margin."""

_SWEEP_EVERY = 1.0  # seconds between expiry sweeps


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Bounds of one engine's memory (see TriggerEngine for the cost of each entry).

    `max_held` and `max_due` are soft: past them `full` is true and the caller stops feeding (the Kafka
    runner pauses its partitions, the embedded service makes its caller wait). `max_windows` and
    `max_marks` are hard: the least recently updated entries are forgotten first.
    """

    max_held: int = 50_000
    """Events waiting out the settle time."""
    max_due: int = 10_000
    """Actions decided and not yet delivered or given up."""
    max_windows: int = 100_000
    """opens_without_click windows still counting."""
    max_marks: int = 500_000
    """Keys of actions fired, given up or closed, kept so that a rule fires once per recipient and window."""

    def __post_init__(self) -> None:
        for name in ("max_held", "max_due", "max_windows", "max_marks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EngineLimits.{name} must be a whole number ≥ 1, got {value!r}")

    def split(self, parts: int) -> EngineLimits:
        """Each of `parts` engines' share (the Kafka runner keeps one engine per partition)."""
        n = max(1, parts)
        return EngineLimits(max(1, self.max_held // n), max(1, self.max_due // n),
                            max(1, self.max_windows // n), max(1, self.max_marks // n))


@dataclass(slots=True)
class Step:
    """What one call produced. The caller makes `changes` durable first (in order), then acknowledges
    `done` (the refs of the events whose effects `changes` hold), then delivers `actions`."""

    actions: list[Action] = field(default_factory=list)
    changes: list[StateRecord] = field(default_factory=list)
    done: list[int] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.actions += other.actions
        self.changes += other.changes
        self.done += other.done


class _Held:
    """An event waiting out the settle time; later revisions of the same hit replace it in place."""

    __slots__ = ("event", "refs", "release_at", "scope")

    def __init__(self, event: ClassifiedEvent, release_at: float, refs: list[int], scope: tuple[str, str, str]):
        self.event = event
        self.release_at = release_at
        self.refs = refs
        self.scope = scope


class _Counting:
    """An opens_without_click window still counting: the person's opens so far (at most min_opens)."""

    __slots__ = ("campaign", "deadline", "due_at", "key", "message", "opens", "recipient", "rule", "sent_at",
                 "tenant", "updated_at", "variant")

    def __init__(self, rule: str, key: str, tenant: str, recipient: str, message: str, campaign: str,
                 variant: str, sent_at: float, updated_at: float) -> None:
        self.rule = rule
        self.key = key
        self.tenant = tenant
        self.recipient = recipient
        self.message = message
        self.campaign = campaign
        self.variant = variant
        self.sent_at = sent_at
        self.updated_at = updated_at
        self.opens: dict[str, float] = {}
        self.deadline: float | None = None  # Nth open + within, once there are N opens
        self.due_at: float | None = None    # when the deadline is checked (deadline + settle, or later)

    @property
    def scope(self) -> tuple[str, str, str]:
        return (self.tenant, self.recipient, self.message)

    def record(self, expires_at: float) -> StateRecord:
        return StateRecord(self.key, COUNTING, self.rule, self.tenant, self.recipient, window_of(self.message),
                           self.updated_at, expires_at, opens=tuple(self.opens.items()), campaign=self.campaign,
                           variant=self.variant, message=self.message, sent_at=self.sent_at)


def _hit(event: ClassifiedEvent) -> dict[str, Any]:
    return {"id": event.hit_id, "kind": event.kind, "ts": event.ts, "link": event.link, "link_id": event.link_id,
            "verdict": event.verdict, "source": event.source, "reasons": list(event.reasons),
            "revision": event.revision}


class TriggerEngine:
    """Rules over classified events: feed events and the time, get actions and the state to keep.

    Settling: an event that could count (an open by a person, a human click on an ordinary link) is
    held until `settle_seconds` after it arrived; a later record of the same hit id with a revision at
    least as high replaces it while it is held, so a scanner's first click, provisional human until its
    burst shows, is acted on as the machine it turned out to be. Events that cannot count (machine,
    duplicate, unsubscribe and honeypot clicks) are applied at once: they only ever un-count.

    At most once: each (rule, tenant, recipient, message) has one idempotency key. Once an action is
    decided (DUE) the key is never decided again; FIRED, DEAD and CLOSED keys are kept as marks for
    `rules.remember` seconds. Feeding the same events again (a replay after a restart) changes nothing:
    opens are counted by hit id.

    Windows (opens_without_click): opens by a person are counted per recipient and message; the Nth one
    sets the deadline (its ts + within). A human click with ts up to the deadline closes the window; at
    deadline + settle_seconds (so that clicks made before the deadline have settled), and once no event
    of that message is still held, the rule fires.

    Pure: no I/O, no clock of its own; every method takes `now` (epoch seconds). `ref`s are opaque ints
    (the Kafka runner passes offsets) handed back in `Step.done` once the event's effects are in
    `Step.changes`.

    Memory (CPython 3.11, realistic id and URL lengths; checked by tests/unit/processors/triggers/
    test_engine_limits.py): a held event ~0.85 KB, a counting window ~1.15 KB (3 opens), a due action
    ~1.35 KB (its body), a mark ~0.25 KB. At the default EngineLimits (50,000 held, 10,000 due,
    100,000 windows, 500,000 marks): 43 + 14 + 115 + 125 ≈ 300 MB at most. In steady state, held ≈
    counting events per second × settle_seconds (e.g. 100/s × 150 s = 15,000, ~13 MB).
    """

    def __init__(self, rules: RuleSet, settle_seconds: float = DEFAULT_SETTLE_SECONDS,
                 limits: EngineLimits | None = None) -> None:
        if not settle_seconds >= 0:
            raise ValueError(f"settle_seconds must be ≥ 0, got {settle_seconds!r}")
        self.rules = rules
        self.settle_seconds = float(settle_seconds)
        self.limits = limits or EngineLimits()
        self._rules_by_name = {r.name: r for r in rules.rules}
        self._open_verdicts = frozenset().union(*(r.verdicts for r in rules.rules if r.type != TAGGED_CLICK))
        self._clicks_matter = any(r.type in (TAGGED_CLICK, OPENS_WITHOUT_CLICK) for r in rules.rules)
        # OrderedDict: removing the oldest entry of a plain dict repeatedly makes next(iter()) walk the
        # deleted slots (quadratic under load).
        self._held: OrderedDict[str, _Held] = OrderedDict()  # hit id → held event, in arrival order
        self._held_scopes: dict[tuple[str, str, str], int] = {}  # (tenant, recipient, message) → held events
        self._counting: OrderedDict[str, _Counting] = OrderedDict()  # least recently updated first
        self._due: dict[str, Action] = {}
        self._marks: OrderedDict[str, float] = OrderedDict()  # key → expires_at, oldest first
        self._deadlines: list[tuple[float, str]] = []  # (due_at, key), stale entries skipped
        self._next_sweep = float("-inf")
        self.evicted_windows = 0
        self.evicted_marks = 0

    # --- sizes -------------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def due(self) -> int:
        return len(self._due)

    @property
    def counting(self) -> int:
        return len(self._counting)

    @property
    def marks(self) -> int:
        return len(self._marks)

    @property
    def full(self) -> bool:
        """True while the soft bounds are exceeded: stop feeding until advance() and deliveries catch up."""
        return len(self._held) >= self.limits.max_held or len(self._due) >= self.limits.max_due

    def due_actions(self) -> list[Action]:
        """Actions decided and not yet marked fired or dead (to deliver after a restore)."""
        return list(self._due.values())

    def next_wakeup(self) -> float | None:
        """The earliest time advance() has something to do (None: nothing scheduled)."""
        times = []
        if self._held:
            times.append(next(iter(self._held.values())).release_at)
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times) if times else None

    # --- input -------------------------------------------------------------------------------------

    def feed(self, event: ClassifiedEvent, now: float, ref: int | None = None) -> Step:
        """Takes one classified event (an original or a revision) at time `now`."""
        step = Step()
        refs = [] if ref is None else [ref]
        held = self._held.get(event.hit_id)
        if held is not None:
            if event.revision >= held.event.revision:
                held.event = event
            held.refs += refs
            return step
        if event.recipient and event.message and self._could_count(event):
            scope = (event.tenant, event.recipient, event.message)
            self._held[event.hit_id] = _Held(event, now + self.settle_seconds, refs, scope)
            self._held_scopes[scope] = self._held_scopes.get(scope, 0) + 1
            return step
        if event.recipient and event.message:
            self._apply(event, now, step)
        step.done += refs
        return step

    def advance(self, now: float) -> Step:
        """Acts on events whose settle time is over and on windows whose deadline has settled."""
        step = Step()
        held = self._held
        while held:
            hit_id, h = next(iter(held.items()))
            if h.release_at > now:
                break
            del held[hit_id]
            left = self._held_scopes[h.scope] - 1
            if left:
                self._held_scopes[h.scope] = left
            else:
                del self._held_scopes[h.scope]
            self._apply(h.event, now, step)
            step.done += h.refs
        self._check_deadlines(now, step)
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + _SWEEP_EVERY
        return step

    def mark_fired(self, action: Action, now: float, attempts: int) -> StateRecord:
        """The action was delivered: its key is final."""
        return self._finish(action, FIRED, now, attempts, "")

    def mark_dead(self, action: Action, now: float, attempts: int, reason: str) -> StateRecord:
        """The action was given up on (and dead-lettered): its key is final too."""
        return self._finish(action, DEAD, now, attempts, reason)

    def restore(self, records: Iterable[StateRecord], now: float) -> None:
        """Loads kept state (triggers.state, oldest first; the latest record per key wins). Due actions
        are then in due_actions(), for the caller to deliver."""
        for rec in records:
            key = rec.key
            self._counting.pop(key, None)
            self._due.pop(key, None)
            self._marks.pop(key, None)
            if rec.expires_at <= now:
                continue
            if rec.status in FINAL:
                self._mark(key, rec.expires_at)
            elif rec.status == DUE:
                self._due[key] = Action(key, rec.rule, rec.webhook, rec.payload or {})
            elif rec.status == COUNTING:
                rule = self._rules_by_name.get(rec.rule)
                if rule is None or rule.type != OPENS_WITHOUT_CLICK:
                    continue  # the rule was removed or changed type: its counting stops
                w = _Counting(rec.rule, key, rec.tenant, rec.recipient, rec.message, rec.campaign, rec.variant,
                              rec.sent_at, rec.updated_at)
                w.opens = dict(sorted(rec.opens, key=lambda o: o[1])[:rule.min_opens])
                self._counting[key] = w
                self._arm(rule, w)
                self._bound_windows(w)

    def forget(self, tenant: str, recipient: str) -> int:
        """Drops what is held of a recipient `pixeltrack forget` erased: events settling, windows counting,
        actions due (an action a delivery already has ends as it will). Marks stay: keys only. Returns the
        entries dropped."""
        held = [hit_id for hit_id, h in self._held.items() if h.scope[:2] == (tenant, recipient)]
        for hit_id in held:
            scope = self._held.pop(hit_id).scope
            self._held_scopes[scope] -= 1
            if not self._held_scopes[scope]:
                del self._held_scopes[scope]
        windows = [k for k, w in self._counting.items() if (w.tenant, w.recipient) == (tenant, recipient)]
        for key in windows:
            del self._counting[key]  # its deadline, if armed, is skipped as stale
        due = [k for k, a in self._due.items()
               if (a.payload.get("tenant", ""), a.payload.get("recipient")) == (tenant, recipient)]
        for key in due:
            del self._due[key]
        return len(held) + len(windows) + len(due)

    # --- rules ---------------------------------------------------------------------------------------

    def _could_count(self, e: ClassifiedEvent) -> bool:
        if e.kind == "open":
            if e.verdict not in self._open_verdicts:
                return False
        elif e.kind != "click" or not self._clicks_matter or e.verdict != HUMAN or e.link_flags & NOT_A_CLICK:
            return False
        return any(r.applies(e.tenant, e.campaign) for r in self.rules.rules)

    def _apply(self, e: ClassifiedEvent, now: float, step: Step) -> None:
        """A settled event (or one that cannot count) against every rule."""
        window = window_of(e.message)
        is_click = e.kind == "click" and e.verdict == HUMAN and not e.link_flags & NOT_A_CLICK
        for rule in self.rules.rules:
            if not rule.applies(e.tenant, e.campaign):
                continue
            key = idempotency_key(rule.name, e.tenant, e.recipient, window)
            if key in self._marks or key in self._due:
                continue
            if rule.type == FIRST_OPEN:
                if e.kind == "open" and e.verdict in rule.verdicts:
                    self._fire(rule, key, e.tenant, e.recipient, e.message, e.campaign, e.variant, e.sent_at,
                               now, step, {"hit": _hit(e)})
            elif rule.type == TAGGED_CLICK:
                if is_click:
                    tags = rule.matched_tags(e.link_id, e.link)
                    if tags:
                        self._fire(rule, key, e.tenant, e.recipient, e.message, e.campaign, e.variant, e.sent_at,
                                   now, step, {"hit": _hit(e), "tags": tags})
            elif is_click:
                self._close(rule, key, e, now, step)
            elif e.kind == "open":
                self._count(rule, key, e, now, step)

    def _count(self, rule: Rule, key: str, e: ClassifiedEvent, now: float, step: Step) -> None:
        w = self._counting.get(key)
        if e.verdict in rule.verdicts:
            if w is None:
                w = _Counting(rule.name, key, e.tenant, e.recipient, e.message, e.campaign, e.variant, e.sent_at,
                              now)
                self._counting[key] = w
                self._bound_windows(w)
            elif e.hit_id in w.opens or len(w.opens) >= rule.min_opens:
                return  # a replay, or opens past the Nth: nothing changes
            w.opens[e.hit_id] = e.ts
        elif w is not None and e.hit_id in w.opens:
            del w.opens[e.hit_id]  # revised after it was counted (past the settle time): no longer a person's
        else:
            return
        w.updated_at = now
        self._counting.move_to_end(key)
        self._arm(rule, w)
        step.changes.append(w.record(now + self.rules.remember))

    def _arm(self, rule: Rule, w: _Counting) -> None:
        if len(w.opens) >= rule.min_opens:
            w.deadline = max(w.opens.values()) + rule.within
            w.due_at = w.deadline + self.settle_seconds
            heapq.heappush(self._deadlines, (w.due_at, w.key))
        else:
            w.deadline = w.due_at = None

    def _close(self, rule: Rule, key: str, e: ClassifiedEvent, now: float, step: Step) -> None:
        """A human click: the window can no longer fire (unless the click came after the deadline)."""
        w = self._counting.get(key)
        if w is not None and w.deadline is not None and e.ts > w.deadline:
            return
        self._counting.pop(key, None)
        expires = now + self.rules.remember
        self._mark(key, expires)
        step.changes.append(StateRecord(key, CLOSED, rule.name, e.tenant, e.recipient, window_of(e.message), now,
                                        expires, campaign=e.campaign, variant=e.variant, message=e.message,
                                        reason="human_click"))

    def _check_deadlines(self, now: float, step: Step) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            due_at, key = heap[0]
            w = self._counting.get(key)
            if w is None or w.due_at != due_at:
                heapq.heappop(heap)  # stale: closed, evicted, re-armed or un-counted since
                continue
            if self._held_scopes.get(w.scope):
                # An event of this message is still settling and may be a click made before the
                # deadline: look again shortly (it is released within settle_seconds).
                w.due_at = now + min(1.0, max(0.05, self.settle_seconds))
                heapq.heapreplace(heap, (w.due_at, key))
                continue
            if len(self._due) >= self.limits.max_due:
                return  # backpressure: decide once deliveries catch up
            heapq.heappop(heap)
            del self._counting[key]
            rule = self._rules_by_name.get(w.rule)
            if rule is None:
                continue
            opens = sorted(w.opens.items(), key=lambda o: o[1])
            self._fire(rule, key, w.tenant, w.recipient, w.message, w.campaign, w.variant, w.sent_at, now, step,
                       {"opens": [{"id": h, "ts": t} for h, t in opens], "deadline": w.deadline,
                        "within_seconds": rule.within})

    def _fire(self, rule: Rule, key: str, tenant: str, recipient: str, message: str, campaign: str, variant: str,
              sent_at: float, now: float, step: Step, extra: dict[str, Any]) -> None:
        payload: dict[str, Any] = {
            "id": key, "rule": rule.name, "type": rule.type, "tenant": tenant, "recipient": recipient,
            "campaign": campaign, "variant": variant, "message": message, "sent_at": sent_at,
            "window": window_of(message), "decided_at": now, **extra}
        action = Action(key, rule.name, rule.webhook, payload)
        self._due[key] = action
        step.actions.append(action)
        step.changes.append(action_record(action, DUE, now, now + self.rules.remember))

    def _finish(self, action: Action, status: str, now: float, attempts: int, reason: str) -> StateRecord:
        self._due.pop(action.key, None)
        expires = now + self.rules.remember
        self._mark(action.key, expires)
        return action_record(action, status, now, expires, attempts, reason)

    # --- bounds --------------------------------------------------------------------------------------

    def _mark(self, key: str, expires_at: float) -> None:
        marks = self._marks
        marks[key] = expires_at
        marks.move_to_end(key)
        while len(marks) > self.limits.max_marks:
            marks.popitem(last=False)
            self.evicted_marks += 1

    def _bound_windows(self, keep: _Counting) -> None:
        counting = self._counting
        while len(counting) > self.limits.max_windows:
            key, first = next(iter(counting.items()))
            if first is keep:
                break
            del counting[key]
            self.evicted_windows += 1

    def _sweep(self, now: float) -> None:
        """Forgets marks and counting windows older than `remember` (both are kept oldest first)."""
        marks = self._marks
        while marks:
            key, expires = next(iter(marks.items()))
            if expires > now:
                break
            del marks[key]
        horizon = now - self.rules.remember
        counting = self._counting
        while counting:
            key, w = next(iter(counting.items()))
            if w.updated_at > horizon or w.due_at is not None:
                break
            del counting[key]
