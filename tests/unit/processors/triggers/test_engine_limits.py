"""The engine's memory: the bounds hold, and each entry costs what TriggerEngine's docstring says."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from processors.triggers.engine import EngineLimits, TriggerEngine
from processors.triggers.rules import RuleSet, parse_rules
from schemas.classified import ClassifiedEvent

from .events import NOW, event, make_rules

N = 2000
HEAD = '[webhooks.crm]\nurl = "http://127.0.0.1:9/h"\nsecret = "0123456789abcdef0"\n'
FIRST_OPEN = parse_rules(HEAD + '[[rules]]\nname = "first-open"\ntype = "first_open"\n')
COUNT = parse_rules(HEAD + '[[rules]]\nname = "call-them"\ntype = "opens_without_click"\nmin_opens = 3\n'
                    'within = "1h"\n')
BIG = EngineLimits(max_held=10**6, max_due=10**6, max_windows=10**6, max_marks=10**6)


def realistic(i: int, kind: str = "open", j: int = 0) -> ClassifiedEvent:
    """Ids and links of the lengths the edge and the SDK make."""
    return event(f"hit-{i:016d}-{j}", kind, ts=NOW + j, message=f"msg-{i:016d}", recipient=f"rcpt-{i:015d}",
                 link=f"https://shop.example.com/products/item-{i}?utm_source=email&utm_campaign=spring"
                 if kind == "click" else "", link_id=f"l{i % 10}" if kind == "click" else "")


def bytes_per(n: int, build: Callable[[], TriggerEngine]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = build()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert engine is not None
    return grown / n


def test_a_held_event_costs_under_1_kb() -> None:
    def build() -> TriggerEngine:
        e = TriggerEngine(make_rules(), 60, BIG)
        for i in range(N):
            e.feed(realistic(i, "click"), NOW)
        assert e.held == N
        return e

    assert bytes_per(N, build) < 1000  # ~0.85 KB measured


def test_a_counting_window_costs_under_1_4_kb() -> None:
    def build() -> TriggerEngine:
        e = TriggerEngine(COUNT, 0, BIG)
        for i in range(N):
            for j in range(3):
                e.feed(realistic(i, j=j), NOW)
        e.advance(NOW)
        assert (e.counting, e.held) == (N, 0)
        return e

    assert bytes_per(N, build) < 1400  # ~1.15 KB measured (3 opens)


def due_engine(rules: RuleSet) -> TriggerEngine:
    e = TriggerEngine(rules, 0, BIG)
    for i in range(N):
        e.feed(realistic(i), NOW)
    e.advance(NOW)
    return e


def test_a_due_action_costs_under_1_6_kb() -> None:
    def build() -> TriggerEngine:
        e = due_engine(FIRST_OPEN)
        assert e.due == N
        return e

    assert bytes_per(N, build) < 1600  # ~1.35 KB measured


def test_a_mark_costs_under_0_3_kb() -> None:
    def build() -> TriggerEngine:
        e = due_engine(FIRST_OPEN)
        for a in e.due_actions():
            e.mark_fired(a, NOW, 1)
        assert (e.marks, e.due) == (N, 0)
        return e

    assert bytes_per(N, build) < 300  # ~0.25 KB measured


def test_marks_and_windows_are_capped_oldest_first() -> None:
    e = TriggerEngine(COUNT, 0, EngineLimits(max_windows=10, max_marks=20))
    for i in range(50):
        e.feed(realistic(i), NOW)
    e.advance(NOW)
    assert e.counting == 10
    assert e.evicted_windows == 40
    for i in range(50):
        e.feed(realistic(i, "click"), NOW)  # a click closes a window: a mark
    e.advance(NOW)
    assert e.marks == 20
    assert e.evicted_marks == 30


@pytest.mark.parametrize(("limits", "what"), [(EngineLimits(max_held=5), "held"), (EngineLimits(max_due=5), "due")])
def test_full_past_the_soft_bounds(limits: EngineLimits, what: str) -> None:
    e = TriggerEngine(FIRST_OPEN, 1.0, limits)
    for i in range(5):
        e.feed(realistic(i), NOW)
    assert e.full is (what == "held")
    e.advance(NOW + 1)
    assert e.full is (what == "due")
    assert e.due == 5


def test_deadlines_wait_while_too_many_actions_are_due() -> None:
    e = TriggerEngine(COUNT, 0, EngineLimits(max_due=1))
    for i in range(2):
        for j in range(3):
            e.feed(realistic(i, j=j), NOW)
    step = e.advance(NOW + 3600 + 10)
    assert len(step.actions) == 1
    e.mark_fired(step.actions[0], NOW + 3611, 1)
    assert len(e.advance(NOW + 3612).actions) == 1


def test_limits_split_between_partitions() -> None:
    assert EngineLimits(100, 10, 1000, 5000).split(4) == EngineLimits(25, 2, 250, 1250)
    assert EngineLimits(1, 1, 1, 1).split(8) == EngineLimits(1, 1, 1, 1)
    with pytest.raises(ValueError, match="max_held"):
        EngineLimits(max_held=0)
