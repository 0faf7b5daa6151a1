"""The dashboard's reads: what they ask ClickHouse, and how rows become a page's numbers."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest

from pixeltrack.dashboard import queries
from pixeltrack.dashboard.queries import fetch_campaign, fetch_campaigns, fill_hours, top
from pixeltrack.dashboard.rows import HourRow
from tests.unit.pixeltrack.dashboard.fakes import CAMPAIGN, HOSTILE, T0, FakeQuery

# What analysts read: the views and the aggregates behind them, never raw events or sends.
READABLE = {"campaign_summary", "campaign_hourly", "link_stats", "client_stats", "campaign_sends_hourly",
            "message_engagement"}
ALL_SQL = [queries.CAMPAIGNS_SQL, queries.SUMMARY_SQL, queries.HOURLY_SQL, queries.LINKS_SQL, queries.AUDIENCE_SQL,
           queries.SOURCES_SQL, queries.PLACES_SQL]
# Reads of raw events: only where no aggregate has the answer, each within one tenant and campaign.
EVENT_SQL = [queries.FINE_SQL, queries.REASONS_SQL, queries.EXAMPLES_SQL]


@pytest.mark.parametrize("sql", ALL_SQL)
def test_queries_read_views_and_aggregates_only(sql: str) -> None:
    tables = set(re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)", sql))
    assert tables
    assert tables <= READABLE, tables - READABLE
    assert "{tenant:String}" in sql


@pytest.mark.parametrize("sql", EVENT_SQL)
def test_raw_event_reads_stay_in_one_campaigns_key_range(sql: str) -> None:
    # events is ORDER BY (tenant, campaign, ...): both in the WHERE, so ClickHouse reads that range only
    assert set(re.findall(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", sql)) <= {"events", "hits"}
    assert "tenant = {tenant:String} AND campaign = {campaign:String}" in sql


async def test_user_input_travels_as_parameters_never_in_the_sql() -> None:
    fake = FakeQuery()
    await fetch_campaign(fake, HOSTILE, tenant="acme")
    assert len(fake.calls) == 8
    for sql, params in fake.calls:
        assert sql in ALL_SQL + EVENT_SQL  # the constants as they are: nothing formatted into them
        assert params["campaign"] == HOSTILE
        assert params["tenant"] == "acme"


async def test_campaign_rows_become_numbers() -> None:
    data = await fetch_campaign(FakeQuery(), CAMPAIGN)
    assert data is not None
    t = data.totals
    assert (t.delivered, t.unique_opens, t.unique_clicks, t.converted_messages) == (50_000, 6_050, 4_040, 1_440)
    assert t.open_rate == pytest.approx(0.121)
    assert t.ctor == pytest.approx((900 + 2_000) / 6_050)  # recovered from each variant's CTOR
    assert t.machine_share == pytest.approx(1_400 / (200 + 300 + 1_400))
    # hits from 14:00 to 17:00: a campaign a few hours old is drawn in 10-minute points, quiet ones as zeros
    assert data.bucket_seconds == 600
    assert [(h.hour.hour, h.hour.minute) for h in data.hourly][:3] == [(14, 0), (14, 10), (14, 20)]
    assert len(data.hourly) == 3 * 6 + 1
    assert data.hourly[1] == HourRow(T0.replace(hour=14, minute=10, tzinfo=UTC))
    assert [h.opens_machine for h in data.hourly if h.hour.minute == 0] == [300, 250, 0, 3]
    assert all(h.hour.tzinfo is UTC for h in data.hourly)
    assert data.clients[0] == ("gmail_proxy", 2_000)
    assert data.devices == [("desktop", 900), ("mobile", 300)]
    assert data.links[2].filtered_share == 1.0


async def test_an_unknown_campaign_is_none() -> None:
    assert await fetch_campaign(FakeQuery(), "nope") is None


async def test_campaign_list_rows() -> None:
    fake = FakeQuery()
    rows = await fetch_campaigns(fake, "acme")
    assert fake.calls[0][1] == {"tenant": "acme", "limit": queries.CAMPAIGN_LIMIT}
    first, second = rows
    assert (first.campaign, first.delivered) == (CAMPAIGN, 50_000)
    assert first.open_rate == pytest.approx(0.121)
    assert first.ctr == pytest.approx(0.0808)
    assert first.machine_share == pytest.approx(11_000 / 20_000)
    assert second.open_rate == 0
    assert second.machine_share is None


def test_fill_hours_leaves_very_long_spans_as_they_are() -> None:
    far = T0.replace(tzinfo=UTC) + timedelta(hours=queries.MAX_FILLED_HOURS + 1)
    rows = [HourRow(far, 1), HourRow(T0.replace(tzinfo=UTC), 2)]
    assert [r.opens_human for r in fill_hours(rows)] == [2, 1]
    assert fill_hours([]) == []


def test_top_sums_the_tail_as_other() -> None:
    items = [(f"c{i}", 10 - i) for i in range(10)]
    assert top(items, 4) == [("c0", 10), ("c1", 9), ("c2", 8), ("other", 7 + 6 + 5 + 4 + 3 + 2 + 1)]
    assert top(items[:3], 4) == items[:3]
