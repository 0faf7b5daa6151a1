"""The rows the dashboard's panels are drawn from, as its queries (queries.py) fill them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pixeltrack.dashboard.format import ratio

MINUTE, HOUR, DAY = 60, 3600, 86400


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
    """Hits in one time bucket starting at `hour` (an hour, or a minute / ten minutes / a day: see BUCKETS)."""

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
    downloads_human: int = 0  # a document link's downloads by people (human + proxy)
    downloads_filtered: int = 0

    @property
    def filtered_share(self) -> float | None:
        """Machines' share of the link's fetches: its clicks, or a document link's downloads."""
        return ratio(self.clicks_filtered + self.downloads_filtered,
                     self.clicks_human + self.clicks_filtered + self.downloads_human + self.downloads_filtered)


@dataclass(frozen=True, slots=True)
class SourceRow:
    """Hits of one kind from one source, a machine's or a person's (`side`), with its top reasons."""

    kind: str  # open | click | download
    side: str  # machine | counted
    source: str
    hits: int
    reasons: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Places:
    """Opens by people and how many of them have a country: says why a countries panel is empty."""

    direct_opens: int = 0  # human verdict: the reader's own client fetched it
    placed_opens: int = 0  # of those, with a country from the geo database
    proxied_opens: int = 0  # through an image proxy, which hides the reader's address

    def why_empty(self) -> str:
        if self.placed_opens:
            return ""
        if self.direct_opens:
            return (f"None of the {self.direct_opens:,} direct opens has a country: no geo database is configured "
                    "(geoip_city_db), or it does not know these addresses.")
        if self.proxied_opens:
            return (f"All {self.proxied_opens:,} opens by people came through image proxies (Gmail, Yahoo), "
                    "which hide where the reader is.")
        return "No opens by people yet: countries come from their direct opens."


@dataclass(frozen=True, slots=True)
class ExampleHit:
    """One hit as a drill-down lists it; the address is truncated before it leaves this module."""

    ts: datetime
    kind: str
    verdict: str
    source: str
    reasons: tuple[str, ...]
    link: str
    ip: str
    user_agent: str


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
    sent: int = 0  # registered sends; delivered = sent - bounced
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0  # our one-click unsubscribes and the platforms'
    replied: int = 0
    unique_downloads: int = 0
    downloads_filtered: int = 0

    @property
    def bounce_rate(self) -> float | None:
        """Bounced of sent (the one rate over sent; every other is over delivered)."""
        return ratio(self.bounced, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return ratio(self.complained, self.delivered)

    @property
    def unsubscribe_rate(self) -> float | None:
        return ratio(self.unsubscribed, self.delivered)

    @property
    def reply_rate(self) -> float | None:
        return ratio(self.replied, self.delivered)

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

    @property
    def download_rate(self) -> float | None:
        return ratio(self.unique_downloads, self.delivered)


@dataclass(frozen=True, slots=True)
class CampaignData:
    campaign: str
    variants: list[dict[str, Any]]  # campaign_summary rows, one per variant, as report.ab_verdict takes them
    hourly: list[HourRow] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    clients: list[tuple[str, int]] = field(default_factory=list)
    devices: list[tuple[str, int]] = field(default_factory=list)
    countries: list[tuple[str, int]] = field(default_factory=list)
    bucket_seconds: int = HOUR  # the width of each `hourly` point
    sources: list[SourceRow] = field(default_factory=list)
    places: Places = field(default_factory=Places)

    def by_source(self, kind: str, side: str) -> list[SourceRow]:
        """Sources of `kind` hits on `side`, most hits first."""
        return sorted((r for r in self.sources if r.kind == kind and r.side == side),
                      key=lambda r: (-r.hits, r.source))

    @property
    def totals(self) -> Totals:
        def s(col: str) -> Any:
            return sum((v.get(col) or 0) for v in self.variants)

        return Totals(s("delivered"), s("unique_opens"), s("opens_human"), s("opens_proxy"), s("opens_machine"),
                      s("unique_clicks"), s("clicks_human"), s("clicks_filtered"), s("converted_messages"),
                      float(s("revenue")),
                      sum((v.get("ctor") or 0) * (v.get("unique_opens") or 0) for v in self.variants),
                      s("sent"), s("bounced"), s("complained"), s("unsubscribed"), s("replied"),
                      s("unique_downloads"), s("downloads_filtered"))
