"""The classifier's state: bounded by messages and hits per message, expired in event time, safe to lose."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from processors.behaviour import Classifier

from .builders import CHROME, LINKS, UNLISTED_CLOUD, make_hit


def test_more_messages_than_the_cap_keeps_state_bounded(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier(max_messages=100)
    for i in range(2000):
        # all within one settle window, so only the cap can bound them
        for d in c.feed(make_hit(3600 + i * 0.01, message=f"m-{i}")):
            assert d.verdict.verdict == "human"
        assert c.tracked_messages <= 100
    assert c.tracked_messages == 100
    assert c.tracked_hits == 100


def test_hits_per_message_are_bounded(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier(max_hits_per_message=8)
    for i in range(500):
        c.feed(make_hit(3600 + i * 0.05, ip=f"81.2.{i % 200}.{i % 250}", hit_id=f"h{i}"))
    assert c.tracked_messages == 1
    assert c.tracked_hits <= 8


def test_messages_expire_a_settle_window_after_their_last_hit(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier(settle_window=300)
    for i in range(50):
        c.feed(make_hit(100 + i, message=f"old-{i}"))
    assert c.tracked_messages == 50
    c.feed(make_hit(100 + 49 + 301, message="new"))
    assert c.tracked_messages == 1


def test_memory_stays_flat_over_many_messages(make_classifier: Callable[..., Classifier]) -> None:
    """Feeding 20× the cap grows no memory beyond the cap's worth (the bound the docstring states)."""
    c = make_classifier(max_messages=500)

    def feed(start: int, n: int) -> None:
        for i in range(start, start + n):
            c.feed(make_hit(3600 + i * 0.001, message=f"m-{i}", ip=f"81.2.69.{i % 200}"))

    tracemalloc.start()
    try:
        feed(0, 1000)
        gc.collect()
        at_cap = tracemalloc.get_traced_memory()[0]
        feed(1000, 10_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - at_cap
    finally:
        tracemalloc.stop()
    assert c.tracked_messages == 500
    assert grown < 100_000, grown


def test_losing_state_degrades_to_fewer_revisions(make_classifier: Callable[..., Classifier]) -> None:
    """With room for one message, two interleaved scanner bursts still get a decision per hit; the
    evicted message's first click is simply not revised."""
    c = make_classifier(max_messages=1)
    decisions = []
    for i in range(3):
        for m in ("m-a", "m-b"):
            h = make_hit(300 + i * 0.2, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[i], message=m,
                         hit_id=f"{m}-{i}")
            decisions.extend(c.feed(h))
    first_decisions = [d for d in decisions if d.revision == 0]
    assert sorted(d.hit.id for d in first_decisions) == sorted(f"{m}-{i}" for m in ("m-a", "m-b") for i in range(3))
    assert all(d.verdict.verdict == "human" for d in first_decisions)  # no message kept two hits
    assert c.tracked_messages == 1


def test_out_of_order_hits_do_not_crash_and_still_group(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier()
    hits = [make_hit(300 + 0.2 * i, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[i], hit_id=f"c{i}")
            for i in range(4)]
    final = {}
    for h in reversed(hits):
        for d in c.feed(h):
            final[d.hit.id] = d.verdict.verdict
    assert final == {f"c{i}": "machine" for i in range(4)}


def test_total_hits_are_bounded_across_messages(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier(max_tracked_hits=50)
    for i in range(400):
        for j in range(3):
            c.feed(make_hit(3600 + i * 0.01 + j * 0.001, message=f"m-{i}", hit_id=f"h{i}-{j}",
                            ip=f"81.2.69.{j}"))
        assert c.tracked_hits <= 50
    assert c.tracked_hits == sum(len(m.hits) for m in c._messages.values())
    assert c.tracked_messages <= 17
