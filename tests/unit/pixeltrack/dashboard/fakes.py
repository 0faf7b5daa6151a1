"""A fake query function for the dashboard's unit tests: fixed rows per SQL statement, every call recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pixeltrack.dashboard import queries

CAMPAIGN = "spring-sale"
HOSTILE = "<script>alert('x')</script> & \"friends\""  # a name that must never reach a page unescaped
T0 = datetime(2026, 9, 21, 14, 0)  # naive, as chDB returns DateTime('UTC')

SUMMARY_COLUMNS = ["variant", "delivered", "unique_opens", "unique_human_opens", "opens_human", "opens_proxy",
                   "opens_machine", "opens_duplicate", "unique_clicks", "clicks_human", "clicks_filtered",
                   "converted_messages", "conversions", "revenue", "open_rate", "machine_open_share", "ctr", "ctor",
                   "filtered_click_share", "conversion_rate", "revenue_per_recipient", "sent", "bounced", "complained",
                   "unsubscribed", "replied", "bounce_rate", "complaint_rate", "unsubscribe_rate", "reply_rate"]


def variant(name: str, delivered: int, opens: int, clicks: int, converted: int, clicks_of_openers: int,
            opens_human: int = 100, opens_proxy: int = 150, opens_machine: int = 700,
            bounced: int = 0, complained: int = 0, unsubscribed: int = 0, replied: int = 0) -> list[Any]:
    sent = delivered + bounced
    return [name, delivered, opens, opens // 2, opens_human, opens_proxy, opens_machine, 20, clicks, clicks + 10,
            400, converted, converted, converted * 50.0, opens / delivered, 0.6, clicks / delivered,
            clicks_of_openers / opens if opens else None, 0.8, converted / delivered, converted * 50.0 / delivered,
            sent, bounced, complained, unsubscribed, replied, bounced / sent, complained / delivered,
            unsubscribed / delivered, replied / delivered]


VARIANTS = [variant("A", 25_000, 2_750, 1_265, 410, 900, bounced=600, complained=20, unsubscribed=75, replied=40),
            variant("B", 25_000, 3_300, 2_775, 1_030, 2_000, bounced=400, complained=5, unsubscribed=50, replied=60)]
HOURLY = (["hour", "opens_human", "opens_proxy", "opens_machine", "clicks_human", "clicks_filtered"],
          [[T0, 10, 20, 300, 5, 140], [T0.replace(hour=15), 40, 60, 250, 30, 190],
           [T0.replace(hour=17), 5, 9, 3, 2, 1]])  # 16:00 had nothing
LINKS = (["link", "clicks_human", "unique_clicks", "clicks_filtered", "conversions", "revenue"],
         [["https://shop.example.com/sale", 1_800, 1_650, 2_200, 700, 35_000.0],
          [HOSTILE, 300, 280, 90, 10, 500.0],
          ["https://shop.example.com/__hp", 0, 0, 144, 0, 0.0]])
AUDIENCE = (["dimension", "value", "opens"],
            [["client", "gmail_proxy", 2_000], ["client", "apple_mail", 1_200], ["client", HOSTILE, 7],
             ["device", "desktop", 900], ["device", "mobile", 300], ["country", "GB", 500], ["country", "US", 400]])
SOURCES = (["kind", "side", "source", "hits"],
           [["open", "machine", "apple_mpp", 1_000], ["open", "machine", HOSTILE, 400],
            ["click", "machine", "scanner", 800], ["open", "counted", "direct", 200],
            ["open", "counted", "gmail_proxy", 300]])
REASONS = (["kind", "side", "source", "reason", "hits"],
           [["open", "machine", "apple_mpp", "ua_bare_mozilla", 1_000], ["open", "machine", HOSTILE, HOSTILE, 3],
            ["click", "machine", "scanner", "link_burst", 700], ["click", "machine", "scanner", "honeypot", 100],
            ["open", "counted", "direct", "fast_after_send", 120],
            ["open", "counted", "direct", "no_machine_signal", 80],
            ["open", "counted", "gmail_proxy", "ua_gmail_proxy", 300]])
PLACES = (["direct_opens", "placed_opens", "proxied_opens"], [[200, 150, 300]])
EXAMPLES = (["ts", "kind", "verdict", "source", "reasons", "link", "ip", "user_agent"],
            [[T0, "click", "machine", "scanner", ["link_burst", "honeypot"], "https://shop.example.com/__hp",
              "198.51.100.23", HOSTILE],
             [T0, "open", "human", "direct", ["fast_after_send"], "", "2001:db8:1:2::5", "Mozilla/5.0 (Macintosh)"]])
CAMPAIGNS = (["campaign", "delivered", "unique_opens", "unique_clicks", "opens_counted", "opens_machine",
              "last_activity"],
             [[CAMPAIGN, 50_000, 6_050, 4_040, 9_000, 11_000, T0.replace(hour=18)],
              [HOSTILE, 800, 0, 0, 0, 0, datetime(1970, 1, 1)]])


@dataclass
class FakeQuery:
    """Answers the dashboard's statements with fixed rows; `fail` makes every call raise it."""

    campaigns: tuple[list[str], list[list[Any]]] = CAMPAIGNS
    variants: list[list[Any]] = field(default_factory=lambda: [list(v) for v in VARIANTS])
    fail: Exception | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        self.calls.append((sql, parameters))
        if self.fail is not None:
            raise self.fail
        if sql == queries.CAMPAIGNS_SQL:
            return self.campaigns[0], list(self.campaigns[1])
        known = parameters.get("campaign") in (CAMPAIGN, HOSTILE)
        answers: dict[str, tuple[list[str], list[Sequence[Any]]]] = {
            queries.SUMMARY_SQL: (SUMMARY_COLUMNS, list(self.variants) if known else []),
            queries.HOURLY_SQL: (HOURLY[0], list(HOURLY[1]) if known else []),
            # a campaign a few hours old is drawn in 10-minute buckets; the fake's hits are on the hour
            queries.FINE_SQL: (HOURLY[0], list(HOURLY[1]) if known else []),
            queries.SOURCES_SQL: (SOURCES[0], list(SOURCES[1]) if known else []),
            queries.REASONS_SQL: (REASONS[0], list(REASONS[1]) if known else []),
            queries.PLACES_SQL: (PLACES[0], list(PLACES[1]) if known else [[0, 0, 0]]),
            queries.EXAMPLES_SQL: (EXAMPLES[0], list(EXAMPLES[1]) if known else []),
            queries.LINKS_SQL: (LINKS[0], list(LINKS[1]) if known else []),
            queries.AUDIENCE_SQL: (AUDIENCE[0], list(AUDIENCE[1]) if known else []),
            "SELECT 1": (["1"], [[1]]),
        }
        return answers[sql]

    def count(self, sql: str) -> int:
        return sum(1 for s, _ in self.calls if s == sql)
