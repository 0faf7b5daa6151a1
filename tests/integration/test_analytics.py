"""Exact numbers: a generated campaign with known truth through the pipeline into chDB's aggregates."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pixeltrack.analytics.report import ab_verdict, fetch, render
from pixeltrack.compose.build import build_processor
from processors.local_runner import LocalRecord
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.writers import process_and_write
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import Simulation, load_patterns, simulate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "labelled-hits.jsonl"
TRUTH_COLUMNS = ("delivered", "unique_opens", "opens_human", "opens_proxy", "opens_machine", "opens_duplicate",
                 "unique_clicks", "clicks_human", "clicks_filtered", "converted_messages", "conversions", "sent",
                 "bounced", "complained", "replied")
RECOUNTED = ("sent", "delivered", "bounced", "complained", "replied", "unique_opens", "opens_human", "opens_proxy",
             "opens_machine", "opens_duplicate", "unique_clicks", "clicks_human", "clicks_filtered")


async def run_pipeline(db: ClickHouseDb, settings: Settings, keyring: Keyring, records: Iterable[Record],
                       batch: int = 5000) -> None:
    processor = build_processor(settings, keyring)
    writer = ClickHouseWriter(db.dsn, db.database)
    try:
        chunk: list[LocalRecord] = []
        offset = 0
        for r in records:
            chunk.append(LocalRecord(r.topic, -1, offset, r.value, r.headers))
            offset += 1
            if len(chunk) == batch:
                await process_and_write(processor, writer, chunk, f"test:{offset}")
                chunk = []
        if chunk:
            await process_and_write(processor, writer, chunk, f"test:{offset}")
    finally:
        await writer.close()


def summary(db: ClickHouseDb, campaign: str) -> dict[str, dict[str, float]]:
    cols = ", ".join(TRUTH_COLUMNS)
    rows = db.rows(f"SELECT variant, {cols}, revenue FROM campaign_summary WHERE campaign = '{campaign}'")
    return {r[0]: dict(zip((*TRUTH_COLUMNS, "revenue"), r[1:], strict=True)) for r in rows}  # type: ignore[misc]


def recount(db: ClickHouseDb, campaign: str) -> dict[str, dict[str, float]]:
    """The same numbers from raw events (final verdicts), raw sends and raw delivery events, no
    aggregates. A message is bounced when it has a hard bounce, or a soft bounce after its last delivery."""
    fates = f"""(SELECT message_id, countIf(type = 'bounced' AND bounce = 'hard') > 0
                        OR maxIf(ts, type = 'bounced' AND bounce = 'soft')
                           > maxIf(ts, type = 'delivered') AS bounced,
                        countIf(type = 'complained') > 0 AS complained, countIf(type = 'replied') > 0 AS replied
                 FROM deliveries WHERE campaign = '{campaign}' GROUP BY message_id)"""
    per_variant = db.rows(f"""
        SELECT s.variant, uniqExact(s.message_id), uniqExactIf(s.message_id, NOT f.bounced),
               uniqExactIf(s.message_id, f.bounced), uniqExactIf(s.message_id, f.complained),
               uniqExactIf(s.message_id, f.replied)
        FROM sends AS s LEFT JOIN {fates} AS f ON f.message_id = s.message_id
        WHERE s.campaign = '{campaign}' GROUP BY s.variant""")
    rows = db.rows(f"""
        SELECT variant,
               uniqExactIf(message_id, kind = 'open' AND verdict IN ('human', 'proxy')),
               countIf(kind = 'open' AND verdict = 'human'), countIf(kind = 'open' AND verdict = 'proxy'),
               countIf(kind = 'open' AND verdict = 'machine'), countIf(kind = 'open' AND verdict = 'duplicate'),
               uniqExactIf(message_id, kind = 'click' AND verdict = 'human'),
               countIf(kind = 'click' AND verdict = 'human'), countIf(kind = 'click' AND verdict = 'machine')
        FROM hits AS h WHERE campaign = '{campaign}' GROUP BY variant""")
    hits = {r[0]: r[1:] for r in rows}
    return {v[0]: dict(zip(RECOUNTED, (*v[1:], *hits[v[0]]), strict=True)) for v in per_variant}  # type: ignore[misc]


@pytest.fixture(scope="module")
def campaign() -> Simulation:
    return simulate(load_patterns(FIXTURE), "truth", 100_000, click_boost={"B": 0.25}, seed=11, bounce_share=0.02)


async def test_campaign_summary_equals_truth(clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring,
                                             campaign: Simulation) -> None:
    assert sum(t.sent for t in campaign.truth.values()) == 100_000
    assert 1500 < sum(t.bounced for t in campaign.truth.values()) < 2500
    started = time.perf_counter()
    await run_pipeline(clickhouse, settings, keyring, campaign.records(keyring, Topics()))
    elapsed = time.perf_counter() - started
    got = summary(clickhouse, "truth")
    for variant, truth in campaign.truth.items():
        expected = {c: getattr(truth, c) for c in TRUTH_COLUMNS}
        assert {c: got[variant][c] for c in TRUTH_COLUMNS} == expected, variant
        assert got[variant]["revenue"] == pytest.approx(truth.revenue)
    # aggregates equal a recount from raw events
    raw = recount(clickhouse, "truth")
    assert {v: {c: got[v][c] for c in RECOUNTED} for v in got} == raw
    assert elapsed < 120

    # the report's A/B verdict: B was built with more human clicks
    def query(sql: str, params: dict[str, object]) -> tuple[list[str], list[list[object]]]:
        client = clickhouse.client()
        try:
            result = client.query(sql, parameters=params)
            return list(result.column_names), [list(r) for r in result.result_rows]
        finally:
            client.close()

    rows = fetch(query, "truth")
    assert [r["variant"] for r in rows] == ["A", "B"]
    comps, verdict = ab_verdict(rows, "click")
    assert verdict.startswith("Variant B wins on click rate"), verdict
    assert comps[0].p_value < 0.001
    table = render(rows, "truth", "table")
    assert "Variant B wins" in table
    assert "100,000" not in table  # per variant: 50,000 each
    assert "50,000" in table


async def test_link_and_client_views(clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring) -> None:
    sim = simulate(load_patterns(FIXTURE), "views", 4000, engaged_share=0.5, seed=3)
    await run_pipeline(clickhouse, settings, keyring, sim.records(keyring, Topics()))
    clicks = sum(t.clicks_human for t in sim.truth.values())
    filtered = sum(t.clicks_filtered for t in sim.truth.values())
    links = clickhouse.rows("SELECT sum(clicks_human), sum(clicks_filtered), count() FROM link_stats "
                            "WHERE campaign = 'views'")
    assert links[0][:2] == (clicks, filtered)
    assert links[0][2] > 3  # several distinct links
    # client_stats: proxied opens never carry a device or a country
    proxied = clickhouse.rows("SELECT DISTINCT device, country FROM client_stats WHERE campaign = 'views' "
                              "AND verdict = 'proxy'")
    assert all(device in ("", "unknown") and country in ("", "unknown") for device, country in proxied)
    hourly = clickhouse.rows("SELECT sum(hits) FROM campaign_hourly WHERE campaign = 'views'")
    assert hourly[0][0] == len(sim.hits)


def test_campaign_summary_counts_distinct_recipients_per_variant(clickhouse: ClickHouseDb) -> None:
    """`recipients` is merged from campaign_sends_hourly: a recipient sent two messages counts once,
    per campaign and variant, across send hours; another campaign's sends stay out."""
    c = clickhouse.client()
    try:
        at = datetime(2026, 10, 1, 9, tzinfo=UTC)
        later = at + timedelta(hours=3)  # another send hour: another state, merged with the first
        c.insert("sends", [
            ("", "spring", "A", "m1", "r1", at), ("", "spring", "A", "m2", "r1", later),
            ("", "spring", "A", "m3", "r2", at), ("", "spring", "B", "m4", "r3", at),
            ("", "autumn", "A", "m5", "r1", at), ("", "autumn", "A", "m6", "r4", at),
        ], column_names=["tenant", "campaign", "variant", "message_id", "recipient_id", "sent_at"])
    finally:
        c.close()
    assert clickhouse.rows("SELECT campaign, variant, delivered, recipients FROM campaign_summary "
                           "ORDER BY campaign, variant") == [("autumn", "A", 2, 2), ("spring", "A", 3, 2),
                                                             ("spring", "B", 1, 1)]


def sends_and_clicks(db: ClickHouseDb, campaign: str, variant: str, sends: int,
                     clicks: list[tuple[str, int]]) -> None:
    """`sends` registered messages m0, m1, … and, for each (link id, link flags) of `clicks`, a person's
    click on message m<i> (i = its place in the list), five minutes after the send."""
    at = datetime(2026, 10, 1, 9, tzinfo=UTC)
    c = db.client()
    try:
        c.insert("sends", [("", campaign, variant, f"m{i}", f"r{i}", at) for i in range(sends)],
                 column_names=["tenant", "campaign", "variant", "message_id", "recipient_id", "sent_at"])
        c.insert("events", [("", f"h{i}", "click", at + timedelta(minutes=5), at, campaign, variant, f"m{i}", f"r{i}",
                             link, flags, "human", "direct", 0, 1, "hits.raw", 0, i)
                            for i, (link, flags) in enumerate(clicks)],
                 column_names=["tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant", "message_id",
                               "recipient_id", "link_id", "link_flags", "verdict", "source", "revision", "sign",
                               "src_topic", "src_partition", "src_offset"])
    finally:
        c.close()


def test_rates_count_delivered_messages_only_and_unsent_engagement_apart(clickhouse: ClickHouseDb) -> None:
    """Clicks on messages whose send is not registered (yet) must not lift a rate past 100%: B has 2
    registered sends and 5 clicked messages."""
    sends_and_clicks(clickhouse, "lag", "B", 2, [("shop", 0)] * 5)
    assert clickhouse.rows("SELECT delivered, unique_clicks, clicks_human, unsent_engaged, ctr FROM campaign_summary "
                           "WHERE campaign = 'lag'") == [(2, 2, 5, 3, 1.0)]


def test_clicks_on_a_wrapped_unsubscribe_link_are_not_engagement(clickhouse: ClickHouseDb) -> None:
    """A link wrapped with unsubscribe=True (link flag 2): its clicks stay in link_stats, per link, and
    out of campaign_summary's clicks, CTR and CTOR (docs/triggers.md: they never count as clicks)."""
    sends_and_clicks(clickhouse, "unsub", "A", 3, [("shop", 0), ("unsubscribe", 2), ("unsubscribe", 2)])
    assert clickhouse.rows("SELECT unique_clicks, clicks_human FROM campaign_summary WHERE campaign = 'unsub'") == [
        (1, 1)]
    assert clickhouse.rows("SELECT link, clicks_human FROM link_stats WHERE campaign = 'unsub' ORDER BY link") == [
        ("shop", 1), ("unsubscribe", 2)]
