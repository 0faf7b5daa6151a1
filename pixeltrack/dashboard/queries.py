"""The dashboard's SQL (always parameterised) and the rows it reads.

Panels polled every few seconds read views and aggregates; a few reads go to raw `events`, always
within one tenant and campaign (the leading columns of its sort key, so ClickHouse reads that
campaign's granules only): reasons (no aggregate keeps them), minute buckets of a young campaign, and a
drill-down's example hits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pixeltrack.dashboard.format import utc
from pixeltrack.dashboard.rows import (
    DAY,
    HOUR,
    MINUTE,
    CampaignData,
    CampaignRow,
    ExampleHit,
    HourRow,
    LinkRow,
    Places,
    SourceRow,
)
from schemas.privacy import truncate_ip

Query = Callable[[str, dict[str, Any]], Awaitable[tuple[list[str], list[Sequence[Any]]]]]
"""Runs read-only SQL with ClickHouse `{name:Type}` parameters; returns (column names, rows)."""

# One row per campaign. Rates are recomputed from summed counts (a rate of a sum, never a sum of rates).
# Last activity is the latest hour with a send or a hit, both from their hourly aggregates.
CAMPAIGNS_SQL = """
SELECT s.campaign AS campaign,
       sum(s.delivered) AS delivered,
       sum(s.unique_opens) AS unique_opens,
       sum(s.unique_clicks) AS unique_clicks,
       sum(s.opens_human) + sum(s.opens_proxy) AS opens_counted,
       sum(s.opens_machine) AS opens_machine,
       any(a.last_hour) AS last_activity
FROM campaign_summary AS s
LEFT JOIN (
    SELECT campaign, max(hour) AS last_hour
    FROM (
        SELECT campaign, hour FROM campaign_hourly WHERE tenant = {tenant:String}
        UNION ALL
        SELECT campaign, hour FROM campaign_sends_hourly WHERE tenant = {tenant:String}
    )
    GROUP BY campaign
) AS a ON a.campaign = s.campaign
WHERE s.tenant = {tenant:String}
GROUP BY s.campaign
ORDER BY last_activity DESC, campaign
LIMIT {limit:UInt32}
"""

# Per variant, the columns of `pixeltrack report` and a few more; the A/B panel feeds these rows to
# report.ab_verdict as they are.
SUMMARY_SQL = """
SELECT variant, delivered, unique_opens, unique_human_opens, opens_human, opens_proxy, opens_machine,
       opens_duplicate, unique_clicks, clicks_human, clicks_filtered, converted_messages, conversions, revenue,
       open_rate, machine_open_share, ctr, ctor, filtered_click_share, conversion_rate, revenue_per_recipient,
       sent, bounced, complained, unsubscribed, replied, bounce_rate, complaint_rate, unsubscribe_rate, reply_rate,
       unique_downloads, downloads_human, downloads_filtered, download_rate
FROM campaign_summary
WHERE tenant = {tenant:String} AND campaign = {campaign:String}
ORDER BY variant
"""

# Hits per hour by verdict (campaign_hourly counts hits, not unique messages). Clicks split as the
# aggregates do: human + proxy are people's clicks, machine ones are filtered; duplicates are neither.
HOURLY_SQL = """
SELECT hour,
       sumIf(hits, kind = 'open' AND verdict = 'human') AS opens_human,
       sumIf(hits, kind = 'open' AND verdict = 'proxy') AS opens_proxy,
       sumIf(hits, kind = 'open' AND verdict = 'machine') AS opens_machine,
       sumIf(hits, kind = 'click' AND verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(hits, kind = 'click' AND verdict = 'machine') AS clicks_filtered
FROM campaign_hourly
WHERE tenant = {tenant:String} AND campaign = {campaign:String}
GROUP BY hour
ORDER BY hour
"""

# Hits per time bucket, from raw events, for campaigns too young for hourly points (see pick_bucket).
# Bounded by [start, end): partitions outside it are skipped; within the campaign's key range the scan
# is its hits in that span. sum(sign) counts final verdicts (a revision's -1 row cancels the old one).
FINE_SQL = """
SELECT toStartOfInterval(ts, toIntervalSecond({bucket:UInt32})) AS hour,
       sumIf(sign, kind = 'open' AND verdict = 'human') AS opens_human,
       sumIf(sign, kind = 'open' AND verdict = 'proxy') AS opens_proxy,
       sumIf(sign, kind = 'open' AND verdict = 'machine') AS opens_machine,
       sumIf(sign, kind = 'click' AND verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(sign, kind = 'click' AND verdict = 'machine') AS clicks_filtered
FROM events
WHERE tenant = {tenant:String} AND campaign = {campaign:String}
  AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')}
GROUP BY hour
ORDER BY hour
"""

# Hits by kind, verdict and source (duplicates aside): who fetched, from the hourly aggregate.
SOURCES_SQL = """
SELECT kind, if(verdict = 'machine', 'machine', 'counted') AS side, source, sum(hits) AS hits
FROM campaign_hourly
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND verdict IN ('human', 'proxy', 'machine')
GROUP BY kind, side, source
HAVING hits > 0
"""

# The top reasons per kind, side and source. No aggregate keeps reasons, so this reads the campaign's
# events (its key range only); the dashboard refreshes it less often than the other panels.
REASONS_SQL = """
SELECT kind, if(verdict = 'machine', 'machine', 'counted') AS side, source, reason, sum(sign) AS hits
FROM events
ARRAY JOIN reasons AS reason
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND verdict IN ('human', 'proxy', 'machine')
GROUP BY kind, side, source, reason
HAVING hits > 0
ORDER BY kind, side, source, hits DESC, reason
LIMIT {per_source:UInt32} BY kind, side, source
"""

# A drill-down: the latest hits of one campaign from one source, optionally with one reason. `side` is
# 'machine' or 'counted' (human + proxy); '' for kind or reason means any.
EXAMPLES_SQL = """
SELECT ts, kind, verdict, source, reasons, if(link_id != '', link_id, link_url) AS link, ip, user_agent
FROM hits
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND source = {source:String}
  AND if({side:String} = 'machine', verdict = 'machine', verdict IN ('human', 'proxy'))
  AND ({kind:String} = '' OR kind = {kind:String})
  AND ({reason:String} = '' OR has(reasons, {reason:String}))
ORDER BY ts DESC, hit_id
LIMIT {limit:UInt32}
"""

# Whether people's direct opens have a place: countries come from a geo database, for direct hits only
# (a human verdict is always a direct fetch; proxies hide the reader's address).
PLACES_SQL = """
SELECT sumIf(hits, verdict = 'human') AS direct_opens,
       sumIf(hits, verdict = 'human' AND country NOT IN ('', 'unknown')) AS placed_opens,
       sumIf(hits, verdict = 'proxy') AS proxied_opens
FROM client_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND kind = 'open'
"""

# A message belongs to one variant, so unique clicks (and downloads) add up over variants.
LINKS_SQL = """
SELECT link, sum(clicks_human) AS clicks_human, sum(unique_clicks) AS unique_clicks,
       sum(clicks_filtered) AS clicks_filtered, sum(conversions) AS conversions, sum(revenue) AS revenue,
       sum(downloads_human) AS downloads_human, sum(downloads_filtered) AS downloads_filtered
FROM link_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String}
GROUP BY link
ORDER BY clicks_human + downloads_human DESC, clicks_filtered + downloads_filtered DESC, link
LIMIT {limit:UInt32}
"""

# Opens people made (human + proxy). Mail clients are known behind proxies (gmail_proxy, ...); devices
# and countries never are, so those two count only hits where they are known.
AUDIENCE_SQL = """
SELECT 'client' AS dimension, mail_client AS value, sum(hits) AS opens
FROM client_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND kind = 'open'
  AND verdict IN ('human', 'proxy')
GROUP BY value
UNION ALL
SELECT 'device' AS dimension, device AS value, sum(hits) AS opens
FROM client_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND kind = 'open'
  AND verdict IN ('human', 'proxy') AND device NOT IN ('', 'unknown')
GROUP BY value
UNION ALL
SELECT 'country' AS dimension, country AS value, sum(hits) AS opens
FROM client_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String} AND kind = 'open'
  AND verdict IN ('human', 'proxy') AND country NOT IN ('', 'unknown')
GROUP BY value
"""

CAMPAIGN_LIMIT = 500
LINK_LIMIT = 50
AUDIENCE_TOP = 8  # bars per audience chart; the rest is summed into "other"
MAX_FILLED_HOURS = 24 * 92  # quiet hours are drawn as zeros up to a quarter's span, then left out
TOP_REASONS = 3  # reasons shown per source
EXAMPLE_LIMIT = 20  # hits a drill-down lists
# Time buckets by the span of a campaign's activity (first to last hour with hits): a fresh campaign is
# drawn in minutes, not as one dot per series. (span up to, bucket); beyond the last: a day.
BUCKETS = ((2 * HOUR, MINUTE), (DAY, 10 * MINUTE), (14 * DAY, HOUR))
SIDES = ("machine", "counted")  # a hit is a machine's or a person's (human + proxy); duplicates are neither


def _int(x: Any) -> int:
    return int(x or 0)


async def _rows(query: Query, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    columns, rows = await query(sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


async def fetch_campaigns(query: Query, tenant: str = "", limit: int = CAMPAIGN_LIMIT) -> list[CampaignRow]:
    rows = await _rows(query, CAMPAIGNS_SQL, {"tenant": tenant, "limit": limit})
    return [CampaignRow(str(r["campaign"]), _int(r["delivered"]), _int(r["unique_opens"]), _int(r["unique_clicks"]),
                        _int(r["opens_counted"]), _int(r["opens_machine"]),
                        utc(r["last_activity"]) if isinstance(r["last_activity"], datetime) else None)
            for r in rows]


ReasonRows = list[dict[str, Any]]


async def fetch_reasons(query: Query, campaign: str, tenant: str = "") -> ReasonRows:
    """The top reasons per kind, side and source (raw events: see REASONS_SQL)."""
    return await _rows(query, REASONS_SQL, {"tenant": tenant, "campaign": campaign, "per_source": TOP_REASONS})


async def fetch_campaign(query: Query, campaign: str, tenant: str = "",
                         load_reasons: Callable[[], Awaitable[ReasonRows]] | None = None) -> CampaignData | None:
    """Everything a campaign page shows, or None when no view knows the campaign. `load_reasons`: where
    the reasons come from (a longer-lived cache in the app); by default they are queried here."""
    params = {"tenant": tenant, "campaign": campaign}
    reasons_load = load_reasons or (lambda: fetch_reasons(query, campaign, tenant))
    variants, hourly, links, audience, sources, places, reasons = await asyncio.gather(
        _rows(query, SUMMARY_SQL, params), _rows(query, HOURLY_SQL, params),
        _rows(query, LINKS_SQL, {**params, "limit": LINK_LIMIT}), _rows(query, AUDIENCE_SQL, params),
        _rows(query, SOURCES_SQL, params), _rows(query, PLACES_SQL, params), reasons_load())
    if not variants:
        return None
    by_dimension: dict[str, list[tuple[str, int]]] = {"client": [], "device": [], "country": []}
    for r in audience:
        if _int(r["opens"]) > 0:
            by_dimension[str(r["dimension"])].append((str(r["value"]) or "unknown", _int(r["opens"])))
    hours = [_hour_row(r) for r in hourly]
    bucket = pick_bucket(hours)
    if bucket < HOUR:
        first = min(h.hour for h in hours)
        end = max(h.hour for h in hours) + timedelta(hours=1)
        fine = await _rows(query, FINE_SQL, {**params, "bucket": bucket, "start": first, "end": end})
        points = fill_hours([_hour_row(r) for r in fine], bucket)
    elif bucket == HOUR:
        points = fill_hours(hours)
    else:
        points = fill_hours(by_day(hours), DAY)
    top_reasons: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for r in reasons:
        top_reasons.setdefault((str(r["kind"]), str(r["side"]), str(r["source"])), []).append(
            (str(r["reason"]), _int(r["hits"])))
    source_rows = [SourceRow(str(r["kind"]), str(r["side"]), str(r["source"]), _int(r["hits"]),
                             tuple(top_reasons.get((str(r["kind"]), str(r["side"]), str(r["source"])), ())))
                   for r in sources]
    place = places[0] if places else {}
    return CampaignData(
        campaign, variants, points,
        [LinkRow(str(r["link"]), _int(r["clicks_human"]), _int(r["unique_clicks"]), _int(r["clicks_filtered"]),
                 _int(r["conversions"]), float(r["revenue"] or 0), _int(r.get("downloads_human")),
                 _int(r.get("downloads_filtered"))) for r in links],
        top(by_dimension["client"]), top(by_dimension["device"]), top(by_dimension["country"]),
        bucket, source_rows,
        Places(_int(place.get("direct_opens")), _int(place.get("placed_opens")), _int(place.get("proxied_opens"))))


async def fetch_examples(query: Query, campaign: str, source: str, side: str = "machine", kind: str = "",
                         reason: str = "", tenant: str = "", limit: int = EXAMPLE_LIMIT) -> list[ExampleHit]:
    """The latest `limit` hits of a campaign from `source` on `side` (machine | counted), of `kind` and
    with `reason` when given."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}: must be one of {SIDES}")
    rows = await _rows(query, EXAMPLES_SQL, {"tenant": tenant, "campaign": campaign, "source": source, "side": side,
                                             "kind": kind, "reason": reason, "limit": limit})
    return [ExampleHit(utc(r["ts"]), str(r["kind"]), str(r["verdict"]), str(r["source"]),
                       tuple(str(x) for x in r["reasons"] or ()), str(r["link"]), truncate_ip(str(r["ip"])),
                       str(r["user_agent"])) for r in rows]


def _hour_row(r: dict[str, Any]) -> HourRow:
    return HourRow(utc(r["hour"]), _int(r["opens_human"]), _int(r["opens_proxy"]), _int(r["opens_machine"]),
                   _int(r["clicks_human"]), _int(r["clicks_filtered"]))


def pick_bucket(hours: list[HourRow]) -> int:
    """Seconds per chart point for a campaign whose hourly rows are `hours`: by the span from its first to
    the end of its last active hour (BUCKETS)."""
    if not hours:
        return HOUR
    span = (max(h.hour for h in hours) - min(h.hour for h in hours)).total_seconds() + HOUR
    return next((bucket for up_to, bucket in BUCKETS if span <= up_to), DAY)


def by_day(hours: list[HourRow]) -> list[HourRow]:
    """Hourly rows summed per UTC day."""
    days: dict[datetime, list[int]] = {}
    for h in hours:
        sums = days.setdefault(h.hour.replace(hour=0, minute=0, second=0, microsecond=0), [0] * 5)
        for i, v in enumerate((h.opens_human, h.opens_proxy, h.opens_machine, h.clicks_human, h.clicks_filtered)):
            sums[i] += v
    return [HourRow(day, *sums) for day, sums in sorted(days.items())]


def fill_hours(rows: list[HourRow], bucket: int = HOUR) -> list[HourRow]:
    """Buckets of `bucket` seconds in order with the quiet ones as zeros, so a chart's x axis is time and
    not row number. Spans longer than MAX_FILLED_HOURS are returned as they are (charts still place
    points by time)."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: r.hour)
    first, last = rows[0].hour, rows[-1].hour
    span = int((last - first).total_seconds() // bucket)
    if span * bucket > MAX_FILLED_HOURS * HOUR:
        return rows
    known = {r.hour: r for r in rows}
    hours = (first + timedelta(seconds=i * bucket) for i in range(span + 1))
    return [known.get(h) or HourRow(h) for h in hours]


def top(items: list[tuple[str, int]], n: int = AUDIENCE_TOP) -> list[tuple[str, int]]:
    """The n - 1 largest and the rest summed as "other" (or all of them when they fit in n)."""
    ordered = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) <= n:
        return ordered
    return [*ordered[: n - 1], ("other", sum(v for _, v in ordered[n - 1:]))]
