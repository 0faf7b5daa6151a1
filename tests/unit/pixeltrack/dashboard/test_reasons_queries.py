"""The dashboard's reads of sources, reasons, places, fine time buckets and example hits, on real chDB."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pixeltrack.dashboard import query_with
from pixeltrack.dashboard.queries import (
    Query,
    by_day,
    fetch_campaign,
    fetch_examples,
    fill_hours,
    pick_bucket,
)
from pixeltrack.dashboard.rows import DAY, HOUR, MINUTE, HourRow
from processors.writer import ClickHouseWriter
from tests.plugins.clickhouse import ClickHouseDb

T0 = datetime(2026, 9, 21, 14, 0, tzinfo=UTC)
COLUMNS = ["tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant", "message_id", "link_url", "ip",
           "user_agent", "verdict", "source", "reasons", "country", "revision", "sign"]


def hit(n: int, kind: str, minute: float, verdict: str, source: str, reasons: Sequence[str], *, country: str = "",
        campaign: str = "c1", ip: str = "203.0.113.77", ua: str = "Mozilla/5.0", sign: int = 1,
        revision: int = 0, link: str = "") -> list[Any]:
    ts = T0 + timedelta(minutes=minute)
    return ["", f"h{n}", kind, ts, T0, campaign, "A", f"m{n % 7}", link, ip, ua, verdict, source, list(reasons),
            country, revision, sign]


def insert(db: ClickHouseDb, rows: list[list[Any]]) -> None:
    client = db.client()
    try:
        client.insert("events", rows, column_names=COLUMNS)
    finally:
        client.close()


@pytest.fixture
async def query(clickhouse: ClickHouseDb) -> AsyncIterator[Query]:
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        yield query_with(writer)
    finally:
        await writer.close()


def campaign_rows() -> list[list[Any]]:
    rows = []
    n = 0
    for i in range(5):  # Apple MPP prefetch at delivery: 5 opens
        n += 1
        rows.append(hit(n, "open", 0.5 + i * 0.1, "machine", "apple_mpp", ["ua_bare_mozilla", "net_privacy_relay"]))
    for i in range(3):  # a scanner's link burst
        n += 1
        rows.append(hit(n, "click", 1, "machine", "scanner", ["link_burst"], link=f"https://x.example/{i}"))
    n += 1
    rows.append(hit(n, "open", 1.2, "machine", "scanner", ["fast_after_send", "net_cloud"]))
    n += 1
    rows.append(hit(n, "open", 2, "machine", "bot", ["lib_ua"], ua="python-requests/2.32"))
    for i in range(4):  # people: fast ones and a later one, direct, one with a country
        n += 1
        rows.append(hit(n, "open", 1.5 + i * 20, "human", "direct",
                        ["fast_after_send"] if i < 2 else ["no_machine_signal"], country="GB" if i == 3 else ""))
    n += 1
    rows.append(hit(n, "open", 30, "proxy", "gmail_proxy", ["ua_gmail_proxy"]))
    # a revision: first written human, then revised to a scanner's: only the final verdict counts
    n += 1
    rows.append(hit(n, "click", 1.1, "human", "direct", ["fast_after_send"], link="https://x.example/0"))
    rows.append(hit(n, "click", 1.1, "human", "direct", ["fast_after_send"], sign=-1, link="https://x.example/0"))
    rows.append(hit(n, "click", 1.1, "machine", "scanner", ["time_of_click_check"], revision=1,
                    link="https://x.example/0"))
    rows.append(hit(99, "open", 5, "machine", "apple_mpp", ["ua_bare_mozilla"], campaign="other"))
    return rows


async def test_sources_and_their_top_reasons(clickhouse: ClickHouseDb, query: Query) -> None:
    insert(clickhouse, campaign_rows())
    data = await fetch_campaign(query, "c1")
    assert data is not None
    machine_opens = data.by_source("open", "machine")
    assert [(r.source, r.hits) for r in machine_opens] == [("apple_mpp", 5), ("bot", 1), ("scanner", 1)]
    assert machine_opens[0].reasons == (("net_privacy_relay", 5), ("ua_bare_mozilla", 5))
    assert machine_opens[2].reasons == (("fast_after_send", 1), ("net_cloud", 1))
    clicks = data.by_source("click", "machine")
    assert [(r.source, r.hits) for r in clicks] == [("scanner", 4)]
    assert clicks[0].reasons == (("link_burst", 3), ("time_of_click_check", 1))
    people = data.by_source("open", "counted")
    assert [(r.source, r.hits) for r in people] == [("direct", 4), ("gmail_proxy", 1)]
    assert people[0].reasons == (("fast_after_send", 2), ("no_machine_signal", 2))
    assert data.by_source("click", "counted") == []  # the revised click is a scanner's now


async def test_places_say_why_countries_are_empty(clickhouse: ClickHouseDb, query: Query) -> None:
    rows = campaign_rows()
    insert(clickhouse, [r for r in rows if r[14] != "GB"])  # no direct open has a country
    data = await fetch_campaign(query, "c1")
    assert data is not None
    assert (data.places.direct_opens, data.places.placed_opens, data.places.proxied_opens) == (3, 0, 1)
    assert data.countries == []
    assert data.places.why_empty().startswith("None of the 3 direct opens has a country: no geo database")
    insert(clickhouse, [r for r in rows if r[14] == "GB"])
    data = await fetch_campaign(query, "c1")
    assert data is not None
    assert data.countries == [("GB", 1)]
    assert data.places.why_empty() == ""


async def test_a_fresh_campaign_is_drawn_in_minutes(clickhouse: ClickHouseDb, query: Query) -> None:
    insert(clickhouse, campaign_rows())
    data = await fetch_campaign(query, "c1")
    assert data is not None
    assert data.bucket_seconds == MINUTE
    # from the first minute with hits (14:00) to the last (the fourth person's open at 15:01:30)
    times = [p.hour for p in data.hourly]
    assert times[0] == T0
    assert times[-1] == T0 + timedelta(minutes=61)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(times))
    by_minute = {p.hour: p for p in data.hourly}
    assert by_minute[T0].opens_machine == 5  # the five MPP prefetches, 14:00:30 to 14:00:54
    assert by_minute[T0 + timedelta(minutes=1)] == HourRow(T0 + timedelta(minutes=1), 1, 0, 1, 0, 4)
    assert sum(p.opens_human for p in data.hourly) == 4
    assert sum(p.clicks_filtered for p in data.hourly) == 4
    assert sum(p.clicks_human for p in data.hourly) == 0


async def test_examples_list_the_latest_hits_of_a_source(clickhouse: ClickHouseDb, query: Query) -> None:
    insert(clickhouse, campaign_rows())
    hits = await fetch_examples(query, "c1", "scanner")
    assert [(h.kind, h.reasons) for h in hits] == [
        ("open", ("fast_after_send", "net_cloud")), ("click", ("time_of_click_check",)),
        ("click", ("link_burst",)), ("click", ("link_burst",)), ("click", ("link_burst",))]
    assert hits[0].ts == T0 + timedelta(minutes=1.2)
    assert {h.ip for h in hits} == {"203.0.113.0"}  # truncated before it reaches a page
    burst = await fetch_examples(query, "c1", "scanner", kind="click", reason="link_burst")
    assert sorted(h.link for h in burst) == ["https://x.example/0", "https://x.example/1", "https://x.example/2"]
    assert len(await fetch_examples(query, "c1", "apple_mpp", limit=2)) == 2
    assert await fetch_examples(query, "c1", "apple_mpp", side="counted") == []
    people = await fetch_examples(query, "c1", "direct", side="counted")
    assert [h.verdict for h in people] == ["human"] * 4  # the revised click is not a person's any more
    with pytest.raises(ValueError, match="side='x'"):
        await fetch_examples(query, "c1", "direct", side="x")


def test_buckets_follow_the_span_of_activity() -> None:
    def hours(n: int) -> list[HourRow]:
        return [HourRow(T0), HourRow(T0 + timedelta(hours=n - 1))]

    assert pick_bucket([]) == HOUR
    assert pick_bucket([HourRow(T0)]) == MINUTE
    assert pick_bucket(hours(2)) == MINUTE
    assert pick_bucket(hours(3)) == 10 * MINUTE
    assert pick_bucket(hours(24)) == 10 * MINUTE
    assert pick_bucket(hours(25)) == HOUR
    assert pick_bucket(hours(14 * 24)) == HOUR
    assert pick_bucket(hours(14 * 24 + 1)) == DAY


def test_days_sum_their_hours_and_quiet_days_are_zeros() -> None:
    rows = [HourRow(T0, 1, 2, 3, 4, 5), HourRow(T0 + timedelta(hours=5), 1, 1, 1, 1, 1),
            HourRow(T0 + timedelta(days=2), 7)]
    day0 = T0.replace(hour=0)
    assert fill_hours(by_day(rows), DAY) == [HourRow(day0, 2, 3, 4, 5, 6), HourRow(day0 + timedelta(days=1)),
                                             HourRow(day0 + timedelta(days=2), 7)]
