"""The triggers' engine: each rule type, settling and revisions, windows, once per recipient and window."""

from __future__ import annotations

import dataclasses

import pytest

from processors.behaviour import Classifier
from processors.classify import ClassifierConfig
from processors.triggers.engine import DEFAULT_SETTLE_SECONDS, Step, TriggerEngine
from processors.triggers.records import CLOSED, COUNTING, DUE, FIRED, StateRecord, idempotency_key, window_of
from schemas.tokens import FLAG_HONEYPOT, FLAG_UNSUBSCRIBE

from ..builders import CHROME, HOME_IP, UNLISTED_CLOUD, make_hit
from .events import NOW, event, from_decisions, make_rules

SETTLE = 10.0
HOUR = 3600.0


@pytest.fixture
def engine() -> TriggerEngine:
    return TriggerEngine(make_rules(within="1h"), settle_seconds=SETTLE)


def settle(engine: TriggerEngine, at: float = NOW) -> Step:
    """Everything fed at `at` or before is released."""
    return engine.advance(at + SETTLE)


def fired(step: Step) -> list[tuple[str, str]]:
    return sorted((a.rule, a.payload["message"]) for a in step.actions)


def test_first_open_fires_once_its_settle_time_is_over(engine: TriggerEngine) -> None:
    step = engine.feed(event("h1"), NOW, ref=7)
    assert step == Step()  # held: nothing to record, the offset is not done yet
    assert engine.advance(NOW + SETTLE - 0.01) == Step()
    step = engine.advance(NOW + SETTLE)
    assert fired(step) == [("first-open", "m-1")]
    (action,) = step.actions
    assert action.key == idempotency_key("first-open", "acme", "r-1", "message:m-1")
    p = action.payload
    assert (p["id"], p["type"], p["tenant"], p["recipient"], p["campaign"], p["variant"], p["window"]) == (
        action.key, "first_open", "acme", "r-1", "spring", "A", "message:m-1")
    assert p["hit"]["id"] == "h1"
    assert p["hit"]["verdict"] == "human"
    assert [(c.rule, c.status) for c in step.changes] == [("first-open", DUE), ("call-them", COUNTING)]
    assert step.changes[0].key == action.key
    assert step.changes[0].payload == p  # the outbox holds the body
    assert step.done == [7]


def test_proxy_opens_count_as_a_persons_unless_the_rule_says_human_only() -> None:
    extra = '\n[[rules]]\nname = "direct-open"\ntype = "first_open"\nverdicts = ["human"]\n'
    engine = TriggerEngine(make_rules(extra=extra), settle_seconds=SETTLE)
    engine.feed(event("h1", verdict="proxy", source="gmail_proxy"), NOW)
    assert fired(settle(engine)) == [("first-open", "m-1")]
    engine.feed(event("h2", verdict="human"), NOW + 60)
    assert fired(settle(engine, NOW + 60)) == [("direct-open", "m-1")]


@pytest.mark.parametrize("kind", ["open", "click"])
@pytest.mark.parametrize("verdict", ["machine", "duplicate"])
def test_machine_and_duplicate_hits_never_fire(engine: TriggerEngine, kind: str, verdict: str) -> None:
    for i in range(5):
        step = engine.feed(event(f"h{i}", kind, verdict=verdict, link_id="pricing", ts=NOW + i), NOW, ref=i)
        assert step.done == [i]  # nothing to wait for: applied at once
    assert engine.held == 0
    assert settle(engine, NOW + 2 * HOUR).actions == []


def test_pricing_click_fires_tell_sales_with_its_tags(engine: TriggerEngine) -> None:
    engine.feed(event("c1", "click", link="https://shop.example.com/pricing?plan=pro", link_id="p-7"), NOW)
    step = settle(engine)
    assert fired(step) == [("tell-sales", "m-1")]
    assert step.actions[0].payload["tags"] == ["pricing"]
    assert step.actions[0].payload["hit"]["link"] == "https://shop.example.com/pricing?plan=pro"


@pytest.mark.parametrize(("link", "link_id", "fires"), [
    ("https://example.com/x", "pricing", True),       # by link id
    ("pricing", "", True),                            # a token with a link id only
    ("https://example.com/en/pricing", "", True),     # by URL substring
    ("https://example.com/blog", "blog", False),
])
def test_tags_match_by_link_id_or_url(engine: TriggerEngine, link: str, link_id: str, fires: bool) -> None:
    engine.feed(event("c1", "click", link=link, link_id=link_id), NOW)
    assert bool(settle(engine).actions) is fires


@pytest.mark.parametrize("flag", [FLAG_UNSUBSCRIBE, FLAG_HONEYPOT])
def test_unsubscribe_and_honeypot_links_never_count_as_clicks(flag: int) -> None:
    engine = TriggerEngine(make_rules(within="1h", min_opens=1), settle_seconds=SETTLE)
    engine.feed(event("c1", "click", link_id="pricing", flags=flag), NOW)  # even with a human verdict
    assert engine.held == 0
    engine.feed(event("o1", "open", ts=NOW + 1), NOW + 1)
    assert fired(settle(engine, NOW + 1)) == [("first-open", "m-1")]
    # ... nor do they close an opens_without_click window
    step = settle(engine, NOW + 1 + HOUR)
    assert fired(step) == [("call-them", "m-1")]


def test_provisional_human_click_revised_to_machine_fires_nothing(engine: TriggerEngine) -> None:
    engine.feed(event("c1", "click", link_id="pricing"), NOW, ref=1)
    engine.feed(event("c2", "click", link_id="blog", verdict="machine", source="scanner"), NOW + 0.3, ref=2)
    engine.feed(event("c1", "click", link_id="pricing", verdict="machine", source="scanner",
                      reasons=("link_burst",), revision=1), NOW + 0.3, ref=3)
    step = settle(engine, NOW)
    assert step.actions == []
    assert sorted(step.done) == [1, 3]  # the revision was held with the hit it revises
    assert settle(engine, NOW + 2 * HOUR).actions == []


def test_a_lower_revision_arriving_late_does_not_undo_a_revision(engine: TriggerEngine) -> None:
    engine.feed(event("c1", "click", link_id="pricing"), NOW)
    engine.feed(event("c1", "click", link_id="pricing", verdict="machine", revision=1), NOW + 1)
    engine.feed(event("c1", "click", link_id="pricing", revision=0), NOW + 2)  # a replayed original
    assert settle(engine, NOW + 2).actions == []


def test_a_revision_after_the_settle_time_fires_nothing_more(engine: TriggerEngine) -> None:
    engine.feed(event("c1", "click", link_id="pricing"), NOW)
    assert len(settle(engine).actions) == 1
    engine.feed(event("c1", "click", link_id="pricing", verdict="machine", revision=1), NOW + SETTLE + 1)
    assert settle(engine, NOW + SETTLE + 1).actions == []


def test_scanner_burst_from_the_real_classifier_fires_nothing(classifier: Classifier) -> None:
    """A scanner fetches the pixel, then follows every link of the message within a second: each first
    hit is a provisional human until the burst shows. Only a person's hits fire."""
    links = ["https://shop.example.com/pricing", "https://shop.example.com/b", "https://blog.example.com/c"]
    scanner = [make_hit(9, ip=UNLISTED_CLOUD, ua=CHROME, message="scanned")]
    scanner += [make_hit(42 + i * 0.3, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=u, message="scanned")
                for i, u in enumerate(links)]
    person = [make_hit(4000, ip=HOME_IP, message="read"),
              make_hit(4100, "click", ip=HOME_IP, ua=CHROME, link=links[0], message="read")]
    decisions = [d for h in scanner + person for d in classifier.feed(h)]
    events = from_decisions(decisions)
    assert [e.verdict for e in events[:2]] == ["human", "human"]  # provisional at first
    engine = TriggerEngine(make_rules(within="1h"), settle_seconds=SETTLE)
    for i, e in enumerate(events):
        engine.feed(e, NOW + i * 0.1)
    step = engine.advance(NOW + 100)
    assert fired(step) == [("first-open", "read"), ("tell-sales", "read")]
    assert engine.advance(NOW + 4 * HOUR + 100).actions == []  # no window for the scanned message either


def test_each_rule_fires_at_most_once_per_recipient_and_message(engine: TriggerEngine) -> None:
    for i in range(3):
        engine.feed(event(f"c{i}", "click", link_id="pricing", ts=NOW + i), NOW + i)
        engine.feed(event(f"o{i}", "open", ts=NOW + i), NOW + i)
    step = settle(engine, NOW + 3)
    assert fired(step) == [("first-open", "m-1"), ("tell-sales", "m-1")]
    engine.feed(event("c9", "click", link_id="pricing", message="m-2"), NOW + 5)
    engine.feed(event("c10", "click", link_id="pricing", message="m-2", recipient="r-2"), NOW + 5)
    step = settle(engine, NOW + 5)
    assert sorted((a.rule, a.payload["message"], a.payload["recipient"]) for a in step.actions) == [
        ("tell-sales", "m-2", "r-1"), ("tell-sales", "m-2", "r-2")]


def test_delivered_and_dead_keys_stay_final(engine: TriggerEngine) -> None:
    engine.feed(event("c1", "click", link_id="pricing"), NOW)
    engine.feed(event("o1"), NOW)
    a, b = settle(engine).actions
    rec = engine.mark_fired(a, NOW + 20, attempts=2)
    assert (rec.status, rec.attempts, rec.payload) == (FIRED, 2, None)
    engine.mark_dead(b, NOW + 20, attempts=8, reason="http_500")
    assert engine.due == 0
    engine.feed(event("c2", "click", link_id="pricing", ts=NOW + 30), NOW + 30)
    engine.feed(event("o2", ts=NOW + 30), NOW + 30)
    assert settle(engine, NOW + 30).actions == []


# --- opens without a click ---------------------------------------------------------------------------


def feed_opens(engine: TriggerEngine, times: list[float], message: str = "m-1", verdict: str = "human") -> None:
    for i, t in enumerate(times):
        engine.feed(event(f"{message}-o{i}", ts=NOW + t, message=message, verdict=verdict), NOW + t)


def window_actions(step: Step) -> list[str]:
    return [a.payload["message"] for a in step.actions if a.rule == "call-them"]


def test_n_opens_and_no_click_fire_at_the_nth_open_plus_within(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600, 1200])
    assert window_actions(engine.advance(NOW + 1200 + HOUR)) == []  # the deadline has not settled yet
    step = engine.advance(NOW + 1200 + HOUR + SETTLE)
    assert window_actions(step) == ["m-1"]
    p = next(a for a in step.actions if a.rule == "call-them").payload
    assert [o["id"] for o in p["opens"]] == ["m-1-o0", "m-1-o1", "m-1-o2"]
    assert p["deadline"] == NOW + 1200 + HOUR
    assert p["type"] == "opens_without_click"


def test_fewer_opens_never_fire_and_repeats_count_once(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600])
    feed_opens(engine, [0, 600])  # the same hits again (a replay)
    engine.feed(event("d1", ts=NOW + 700, verdict="duplicate"), NOW + 700)
    engine.feed(event("x1", ts=NOW + 800, verdict="machine", source="apple_mpp"), NOW + 800)
    assert window_actions(engine.advance(NOW + 10 * HOUR)) == []
    assert engine.counting == 1


@pytest.mark.parametrize(("click_at", "fires"), [(-60, False), (1800, False), (1200 + HOUR + 5, True)])
def test_a_human_click_up_to_the_deadline_closes_the_window(engine: TriggerEngine, click_at: float,
                                                            fires: bool) -> None:
    feed_opens(engine, [0, 600, 1200])
    settle(engine, NOW + 1200)
    engine.feed(event("c1", "click", ts=NOW + click_at, link_id="blog"), NOW + max(click_at, 1200))
    step = engine.advance(NOW + 1200 + HOUR + SETTLE + 10)
    assert bool(window_actions(step)) is fires
    if not fires:
        closed = [c for c in step.changes if c.status == CLOSED]
        assert [(c.rule, c.reason) for c in closed] == [("call-them", "human_click")]


def test_a_click_still_settling_at_the_deadline_is_waited_for(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600, 1200])
    deadline = NOW + 1200 + HOUR
    # made just before the deadline, arriving late: still held when the deadline has settled
    engine.feed(event("c1", "click", ts=deadline - 1, link_id="blog"), deadline + SETTLE - 1)
    assert window_actions(engine.advance(deadline + SETTLE)) == []
    assert window_actions(engine.advance(deadline + 2 * SETTLE + 5)) == []
    assert engine.counting == 0


def test_a_click_revised_to_machine_does_not_close_the_window(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600, 1200])
    engine.feed(event("c1", "click", ts=NOW + 1300, link_id="blog"), NOW + 1300)
    engine.feed(event("c1", "click", ts=NOW + 1300, link_id="blog", verdict="machine", revision=1), NOW + 1301)
    assert window_actions(engine.advance(NOW + 1200 + HOUR + SETTLE)) == ["m-1"]


def test_an_open_revised_after_it_settled_is_uncounted(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600, 1200])
    settle(engine, NOW + 1200)
    engine.feed(event("m-1-o1", ts=NOW + 600, verdict="machine", revision=1), NOW + 1300)
    assert window_actions(engine.advance(NOW + 1200 + HOUR + SETTLE)) == []
    feed_opens(engine, [1400], message="m-1")  # hit id m-1-o0 again: counted already
    engine.feed(event("late", ts=NOW + 1500), NOW + 1500)
    assert window_actions(engine.advance(NOW + 1500 + HOUR + SETTLE)) == ["m-1"]


def test_counting_is_per_recipient_and_message(engine: TriggerEngine) -> None:
    feed_opens(engine, [0, 600], message="m-1")
    feed_opens(engine, [700], message="m-2")
    assert window_actions(engine.advance(NOW + 5 * HOUR)) == []
    assert engine.counting == 2


# --- kept state ---------------------------------------------------------------------------------------


def all_changes(*steps: Step) -> list[StateRecord]:
    return [c for s in steps for c in s.changes]


def test_restored_state_fires_nothing_again() -> None:
    rules = make_rules(within="1h")
    a = TriggerEngine(rules, settle_seconds=SETTLE)
    a.feed(event("c1", "click", link_id="pricing"), NOW)
    a.feed(event("o1"), NOW)
    step = settle(a)
    assert fired(step) == [("first-open", "m-1"), ("tell-sales", "m-1")]
    changes = all_changes(step) + [a.mark_fired(x, NOW + 11, 1) for x in step.actions]
    b = TriggerEngine(rules, settle_seconds=SETTLE)
    b.restore(changes, NOW + 20)
    assert b.due_actions() == []
    b.feed(event("c1", "click", link_id="pricing"), NOW + 20)  # the same event re-read
    b.feed(event("c2", "click", link_id="pricing"), NOW + 20)  # another pricing click
    b.feed(event("o2"), NOW + 20)
    assert settle(b, NOW + 20).actions == []


def test_a_restored_due_action_is_delivered_with_the_same_key_and_body() -> None:
    rules = make_rules()
    a = TriggerEngine(rules, settle_seconds=SETTLE)
    a.feed(event("c1", "click", link_id="pricing"), NOW)
    step = settle(a)
    b = TriggerEngine(rules, settle_seconds=SETTLE)
    b.restore([StateRecord.decode(c.encode()) for c in step.changes], NOW + 20)
    assert sorted((x.key, x.body()) for x in b.due_actions()) == sorted((x.key, x.body()) for x in step.actions)


def test_counting_resumes_after_a_restore() -> None:
    rules = make_rules(within="1h")
    a = TriggerEngine(rules, settle_seconds=SETTLE)
    feed_opens(a, [0, 600])
    changes = all_changes(settle(a, NOW + 600))
    assert [c.status for c in changes if c.rule == "call-them"] == [COUNTING, COUNTING]
    b = TriggerEngine(rules, settle_seconds=SETTLE)
    b.restore(changes, NOW + 700)
    assert b.counting == 1
    feed_opens(b, [0, 600])  # re-read after the restart: counted already
    b.feed(event("third", ts=NOW + 1200), NOW + 1200)
    assert window_actions(b.advance(NOW + 1200 + HOUR + SETTLE)) == ["m-1"]


def test_expired_state_is_forgotten() -> None:
    rules = dataclasses.replace(make_rules(), remember=100.0)
    engine = TriggerEngine(rules, settle_seconds=SETTLE)
    engine.feed(event("c1", "click", link_id="pricing"), NOW)
    (a,) = [x for x in settle(engine).actions if x.rule == "tell-sales"]
    engine.mark_fired(a, NOW + 11, 1)
    assert engine.marks >= 1
    engine.advance(NOW + 200)
    assert engine.marks == 0
    old = StateRecord(a.key, FIRED, "tell-sales", "acme", "r-1", window_of("m-1"), NOW, NOW + 100)
    engine.restore([old], NOW + 200)
    assert engine.marks == 0


def test_filters_by_tenant_and_campaign() -> None:
    extra = ('\n[[rules]]\nname = "vip-open"\ntype = "first_open"\ntenants = ["vip"]\ncampaigns = ["launch"]\n')
    engine = TriggerEngine(make_rules(extra=extra), settle_seconds=SETTLE)
    engine.feed(event("o1", tenant="vip", campaign="spring"), NOW)
    engine.feed(event("o2", tenant="vip", campaign="launch", message="m-2"), NOW)
    engine.feed(event("o3", tenant="acme", campaign="launch", message="m-3"), NOW)
    assert [a.payload["message"] for a in settle(engine).actions if a.rule == "vip-open"] == ["m-2"]


def test_events_without_a_recipient_are_skipped(engine: TriggerEngine) -> None:
    step = engine.feed(event("o1", recipient=""), NOW, ref=3)
    assert step.done == [3]
    assert settle(engine).actions == []


def test_default_settle_covers_the_classifiers_revision_windows() -> None:
    c = ClassifierConfig()
    longest = max(c.pixel_burst_window, c.scanner_client_window, c.slow_burst_window, c.burst_window,
                  c.time_of_click_window)
    assert longest < DEFAULT_SETTLE_SECONDS


def test_keys_are_deterministic_and_distinct() -> None:
    base = ("r", "t", "p", "message:m")
    # Pinned: receivers deduplicate on it, so it must not change between releases.
    assert idempotency_key(*base) == "3b395e6e1932ba41fb86d65fb5cb7e80"
    variants = {idempotency_key(*base[:i], base[i] + "x", *base[i + 1:]) for i in range(4)}
    assert len(variants | {idempotency_key(*base)}) == 5
    assert len(idempotency_key(*base)) == 32

