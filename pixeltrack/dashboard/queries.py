"""The dashboard's SQL (views and aggregates only, always parameterised) and the rows it reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pixeltrack.dashboard.format import ratio, utc

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
       open_rate, machine_open_share, ctr, ctor, filtered_click_share, conversion_rate, revenue_per_recipient
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

# A message belongs to one variant, so unique clicks add up over variants.
LINKS_SQL = """
SELECT link, sum(clicks_human) AS clicks_human, sum(unique_clicks) AS unique_clicks,
       sum(clicks_filtered) AS clicks_filtered, sum(conversions) AS conversions, sum(revenue) AS revenue
FROM link_stats
WHERE tenant = {tenant:String} AND campaign = {campaign:String}
GROUP BY link
ORDER BY clicks_human DESC, clicks_filtered DESC, link
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


@dataclass(frozen=True, slots=True)
class CampaignRow:
    campaign: str
    delivered: int
    unique_opens: int
    unique_clicks: int
    opens_counted: int  # human + proxy open hits
    opens_machine: int
    last_activity: datetime | None

    @property
    def open_rate(self) -> float | None:
        return ratio(self.unique_opens, self.delivered)

    @property
    def ctr(self) -> float | None:
        return ratio(self.unique_clicks, self.delivered)

    @property
    def machine_share(self) -> float | None:
        """Machine opens among all counted-or-machine open hits, as campaign_summary.machine_open_share."""
        return ratio(self.opens_machine, self.opens_counted + self.opens_machine)


@dataclass(frozen=True, slots=True)
class HourRow:
    hour: datetime
    opens_human: int = 0
    opens_proxy: int = 0
    opens_machine: int = 0
    clicks_human: int = 0
    clicks_filtered: int = 0


@dataclass(frozen=True, slots=True)
class LinkRow:
    link: str
    clicks_human: int
    unique_clicks: int
    clicks_filtered: int
    conversions: int
    revenue: float

    @property
    def filtered_share(self) -> float | None:
        return ratio(self.clicks_filtered, self.clicks_human + self.clicks_filtered)


@dataclass(frozen=True, slots=True)
class Totals:
    """A campaign's numbers over all its variants."""

    delivered: int = 0
    unique_opens: int = 0
    opens_human: int = 0
    opens_proxy: int = 0
    opens_machine: int = 0
    unique_clicks: int = 0
    clicks_human: int = 0
    clicks_filtered: int = 0
    converted_messages: int = 0
    revenue: float = 0.0
    clicks_of_openers: float = 0.0  # messages that opened and clicked, recovered from each variant's CTOR

    @property
    def open_rate(self) -> float | None:
        return ratio(self.unique_opens, self.delivered)

    @property
    def ctr(self) -> float | None:
        return ratio(self.unique_clicks, self.delivered)

    @property
    def ctor(self) -> float | None:
        return ratio(self.clicks_of_openers, self.unique_opens)

    @property
    def conversion_rate(self) -> float | None:
        return ratio(self.converted_messages, self.delivered)

    @property
    def machine_share(self) -> float | None:
        return ratio(self.opens_machine, self.opens_human + self.opens_proxy + self.opens_machine)

    @property
    def filtered_share(self) -> float | None:
        return ratio(self.clicks_filtered, self.clicks_human + self.clicks_filtered)


@dataclass(frozen=True, slots=True)
class CampaignData:
    campaign: str
    variants: list[dict[str, Any]]  # campaign_summary rows, one per variant, as report.ab_verdict takes them
    hourly: list[HourRow] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    clients: list[tuple[str, int]] = field(default_factory=list)
    devices: list[tuple[str, int]] = field(default_factory=list)
    countries: list[tuple[str, int]] = field(default_factory=list)

    @property
    def totals(self) -> Totals:
        def s(col: str) -> Any:
            return sum((v.get(col) or 0) for v in self.variants)

        return Totals(s("delivered"), s("unique_opens"), s("opens_human"), s("opens_proxy"), s("opens_machine"),
                      s("unique_clicks"), s("clicks_human"), s("clicks_filtered"), s("converted_messages"),
                      float(s("revenue")),
                      sum((v.get("ctor") or 0) * (v.get("unique_opens") or 0) for v in self.variants))


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


async def fetch_campaign(query: Query, campaign: str, tenant: str = "") -> CampaignData | None:
    """Everything a campaign page shows, or None when no view knows the campaign."""
    params = {"tenant": tenant, "campaign": campaign}
    variants, hourly, links, audience = await asyncio.gather(
        _rows(query, SUMMARY_SQL, params), _rows(query, HOURLY_SQL, params),
        _rows(query, LINKS_SQL, {**params, "limit": LINK_LIMIT}), _rows(query, AUDIENCE_SQL, params))
    if not variants:
        return None
    by_dimension: dict[str, list[tuple[str, int]]] = {"client": [], "device": [], "country": []}
    for r in audience:
        if _int(r["opens"]) > 0:
            by_dimension[str(r["dimension"])].append((str(r["value"]) or "unknown", _int(r["opens"])))
    return CampaignData(
        campaign, variants,
        fill_hours([HourRow(utc(r["hour"]), _int(r["opens_human"]), _int(r["opens_proxy"]), _int(r["opens_machine"]),
                            _int(r["clicks_human"]), _int(r["clicks_filtered"])) for r in hourly]),
        [LinkRow(str(r["link"]), _int(r["clicks_human"]), _int(r["unique_clicks"]), _int(r["clicks_filtered"]),
                 _int(r["conversions"]), float(r["revenue"] or 0)) for r in links],
        top(by_dimension["client"]), top(by_dimension["device"]), top(by_dimension["country"]))


def fill_hours(rows: list[HourRow]) -> list[HourRow]:
    """Hours in order with the quiet ones as zeros, so a chart's x axis is time and not row number.
    Spans longer than MAX_FILLED_HOURS are returned as they are (charts still place points by time)."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: r.hour)
    first, last = rows[0].hour, rows[-1].hour
    span = int((last - first).total_seconds() // 3600)
    if span > MAX_FILLED_HOURS:
        return rows
    known = {r.hour: r for r in rows}
    hours = (first + timedelta(hours=i) for i in range(span + 1))
    return [known.get(h) or HourRow(h) for h in hours]


def top(items: list[tuple[str, int]], n: int = AUDIENCE_TOP) -> list[tuple[str, int]]:
    """The n - 1 largest and the rest summed as "other" (or all of them when they fit in n)."""
    ordered = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    if len(ordered) <= n:
        return ordered
    return [*ordered[: n - 1], ("other", sum(v for _, v in ordered[n - 1:]))]
