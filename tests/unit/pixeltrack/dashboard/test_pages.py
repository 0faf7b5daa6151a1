"""Pages rendered from fixed rows: the numbers people read, every panel, and nothing unescaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser

from pixeltrack.analytics.report import ab_verdict
from pixeltrack.dashboard import pages
from pixeltrack.dashboard.queries import fetch_campaign, fetch_campaigns
from pixeltrack.dashboard.rows import CampaignData, ExampleHit, Places
from tests.unit.pixeltrack.dashboard.fakes import CAMPAIGN, HOSTILE, FakeQuery, variant

NOW = datetime(2026, 9, 21, 18, 5, 7, tzinfo=UTC)
PANELS = {"kpis", "funnel", "ab", "opens", "clicks", "clients", "devices", "countries", "links", "sources"}


class Elements(HTMLParser):
    """Text by data-metric (scoped by data-variant / data-campaign) and the data-panel names of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.panels: list[str] = []
        self.metrics: dict[tuple[str, str], str] = {}
        self._scope = ""
        self._metric: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-panel" in a:
            self.panels.append(a["data-panel"] or "")
        if "data-variant" in a or "data-campaign" in a:
            self._scope = a.get("data-variant") or a.get("data-campaign") or ""
        metric = a.get("data-metric")
        if metric is not None and tag in ("td", "div", "b"):
            self._metric = metric
            self.metrics[(self._scope, metric)] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._scope = ""
        if tag in ("td", "div", "b"):
            self._metric = None

    def handle_data(self, data: str) -> None:
        if self._metric is not None:
            self.metrics[(self._scope, self._metric)] += data


async def campaign_data(campaign: str = CAMPAIGN) -> CampaignData:
    data = await fetch_campaign(FakeQuery(), campaign)
    assert data is not None
    return data


async def test_campaign_page_shows_the_numbers_formatted_for_people() -> None:
    html = pages.campaign_page(await campaign_data(), "", 5, NOW)
    shown = Elements(html)
    assert set(shown.panels) == PANELS
    assert shown.metrics[("", "delivered")] == "50,000"
    assert shown.metrics[("", "unique_opens")] == "6,050"
    assert shown.metrics[("", "open_rate")] == "12.1%"
    assert shown.metrics[("", "ctr")] == "8.1%"
    assert shown.metrics[("", "conversion_rate")] == "2.88%"
    assert shown.metrics[("", "revenue")] == "72,000.00"
    assert shown.metrics[("A", "delivered")] == "25,000"
    assert shown.metrics[("A", "open_rate")] == "11.00%"
    assert shown.metrics[("B", "ctr")] == "11.10%"
    assert 'data-refresh="5"' in html
    assert 'data-panels="campaign/panels?name=spring-sale"' in html
    assert "updated 18:05:07 UTC" in html


async def test_ab_panel_shows_comparisons_and_the_reports_verdicts() -> None:
    data = await campaign_data()
    ab = pages.campaign_panels(data)["ab"]
    for metric in ("open", "click", "conversion"):
        _, verdict = ab_verdict(data.variants, metric)
        assert f'data-verdict="{metric}">{escape(verdict)}</li>' in ab
    assert ab.index('data-verdict="click"') < ab.index('data-verdict="open"')  # clicks lead, as in the report
    assert 'class="win" data-verdict="click"' in ab
    assert re.search(r'data-metric="click".*?<td data-field="diff">\+6\.04 pts</td>', ab)
    assert "B 11.10% vs A 5.06%" in ab
    assert ab.count("<svg") == 3  # a confidence-interval mark per comparison


async def test_ab_panel_with_one_variant_says_there_is_nothing_to_compare() -> None:
    fake = FakeQuery(variants=[variant("", 1000, 100, 10, 1, 5)])
    data = await fetch_campaign(fake, CAMPAIGN)
    assert data is not None
    ab = pages.campaign_panels(data)["ab"]
    assert "One variant only: nothing to compare." in ab
    assert 'data-variant="(none)"' in ab
    assert "Comparisons" not in ab


async def test_every_chart_on_the_page_is_well_formed_svg() -> None:
    html = pages.campaign_page(await campaign_data(), "", 5, NOW)
    svgs = re.findall(r"<svg .*?</svg>", html, re.DOTALL)
    assert len(svgs) >= 6 + 3 + 3  # charts, CI marks, link minibars
    for svg in svgs:
        ET.fromstring(svg.replace('aria-hidden="true" focusable="false"', 'xmlns="http://www.w3.org/2000/svg"'))


async def test_names_from_the_data_are_escaped_everywhere() -> None:
    html = pages.campaign_page(await campaign_data(HOSTILE), "<tenant>", 5, NOW)
    assert "<script>alert" not in html  # campaign name, a link and a mail client all carry it
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") >= 4
    assert "&lt;tenant&gt;" in html
    assert "campaign%2Fpanels" not in html
    assert "name=%3Cscript%3E" in html
    panels = pages.campaign_panels(await campaign_data(HOSTILE))
    assert not any("<script>" in p for p in panels.values())
    listing = pages.list_page(await fetch_campaigns(FakeQuery()), "", 5, NOW)
    assert "<script>alert" not in listing
    assert 'href="campaign?name=%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%20%26%20%22friends%22"' in listing


async def test_campaign_list_page() -> None:
    html = pages.list_page(await fetch_campaigns(FakeQuery()), "acme", 5, NOW)
    shown = Elements(html)
    assert shown.panels == ["campaigns"]
    assert shown.metrics[(CAMPAIGN, "delivered")] == "50,000"
    assert shown.metrics[(CAMPAIGN, "open_rate")] == "12.1%"
    assert shown.metrics[(CAMPAIGN, "ctr")] == "8.1%"
    assert shown.metrics[(CAMPAIGN, "machine_share")] == "55.0%"
    assert shown.metrics[(CAMPAIGN, "last_activity")] == "2026-09-21 18:00 UTC"
    assert shown.metrics[(HOSTILE, "machine_share")] == "–"  # no opens at all: undefined, not 0%
    assert shown.metrics[(HOSTILE, "last_activity")] == "–"
    assert "Tenant acme" in html


def test_empty_campaign_list_says_what_will_appear() -> None:
    assert "No campaigns yet" in pages.list_panels([])["campaigns"]


async def test_the_page_and_its_refresh_share_the_panels() -> None:
    data = await campaign_data()
    html = pages.campaign_page(data, "", 5, NOW)
    for name, panel in pages.campaign_panels(data).items():
        assert panel in html, name


async def test_sources_panel_splits_machines_by_source_with_reasons_people_read_right() -> None:
    sources = pages.campaign_panels(await campaign_data())["sources"]
    rows = re.findall(r'<tr data-kind="(\w+)" data-side="(\w+)" data-source="([^"]*)">(.*?)</tr>', sources)
    assert [(k, s, src) for k, s, src, _ in rows] == [
        ("open", "machine", "apple_mpp"), ("open", "machine", escape(HOSTILE)), ("click", "machine", "scanner"),
        ("open", "counted", "gmail_proxy"), ("open", "counted", "direct")]
    mpp = rows[0][3]
    assert ">Apple Mail Privacy Protection</a>" in mpp
    assert '<td data-field="hits">1,000</td><td data-field="share">71.4%</td>' in mpp  # 1,000 of 1,400
    assert ">bare Mozilla agent</a> 1,000" in mpp
    assert 'href="hits?name=spring-sale&amp;source=apple_mpp&amp;side=machine&amp;kind=open"' in mpp
    assert 'href="hits?name=spring-sale&amp;source=apple_mpp&amp;side=machine&amp;kind=open&amp;reason=' \
           'ua_bare_mozilla"' in mpp
    scanner = rows[2][3]
    assert ">link burst</a> 700 · " in scanner
    assert ">hidden link followed</a> 100" in scanner
    direct = rows[4][3]
    # a person's fast open is not a machine signal, and says so
    assert ">fast open (a person can)</a> 120" in direct
    assert 'title="opened within 2 minutes of delivery (a person can: no machine signal)"' in direct
    assert "Machine opens <span" in sources
    assert "1,400 hits, not counted" in sources
    assert "Filtered clicks <span" in sources
    assert "Opens by people <span" in sources


async def test_sources_panel_without_hits_says_none_yet() -> None:
    data = await campaign_data()
    sources = pages.campaign_panels(replace(data, sources=[]))["sources"]
    assert sources.count("None yet.") == 3


async def test_countries_say_why_they_are_empty() -> None:
    data = await campaign_data()
    assert "countries-why" not in pages.campaign_panels(data)["countries"]
    cases = {Places(0, 0, 0): "No opens by people yet",
             Places(40, 0, 9): "None of the 40 direct opens has a country: no geo database is configured",
             Places(0, 0, 9): "All 9 opens by people came through image proxies"}
    for places, why in cases.items():
        panel = pages.campaign_panels(replace(data, countries=[], places=places))["countries"]
        assert re.search(r'data-field="countries-why">' + re.escape(why), panel), panel
        assert "No countries known." in panel


async def test_funnel_reads_sent_to_converted_with_bounces_and_complaints_beside() -> None:
    """51,000 sent, 1,000 bounced (600 + 400), 50,000 delivered; complaints, unsubscribes and replies over
    delivered, the bounce rate over sent."""
    html = pages.campaign_page(await campaign_data(), "", 5, NOW)
    shown = Elements(html)
    assert shown.metrics[("", "sent")] == "51,000"
    assert (shown.metrics[("", "bounced")], shown.metrics[("", "bounce_rate")]) == ("1,000", "1.96%")
    assert (shown.metrics[("", "complained")], shown.metrics[("", "complaint_rate")]) == ("25", "0.050%")
    assert (shown.metrics[("", "unsubscribed")], shown.metrics[("", "unsubscribe_rate")]) == ("125", "0.25%")
    assert (shown.metrics[("", "replied")], shown.metrics[("", "reply_rate")]) == ("100", "0.20%")
    funnel = pages.campaign_panels(await campaign_data())["funnel"]
    labels = re.findall(r'font-weight="600"[^>]*>([A-Z][a-z]+)<', funnel)
    assert labels == ["Sent", "Delivered", "Opened", "Clicked", "Converted"]
    assert "98.0% of sent · 1,000 bounced" in funnel


async def test_funnel_says_what_each_share_is_of_and_defines_ctor() -> None:
    funnel = pages.campaign_panels(await campaign_data())["funnel"]
    assert "12.1% of delivered (open rate)" in funnel
    assert "8.1% of delivered (CTR) · as many as 66.8% of opened" in funnel  # 4,040 clickers / 6,050 openers
    assert "CTOR <b>47.9%</b>: of the messages opened, the share also clicked." in funnel
    assert "% of opened<" not in funnel.replace("as many as 66.8% of opened<", "")


async def test_one_variant_is_said_once() -> None:
    data = await fetch_campaign(FakeQuery(variants=[variant("", 1000, 100, 10, 1, 5)]), CAMPAIGN)
    assert data is not None
    html = pages.campaign_page(data, "", 5, NOW)
    assert html.count("One variant only") == 1


async def test_charts_name_their_bucket() -> None:
    data = await campaign_data()
    html = pages.campaign_page(data, "", 5, NOW)
    assert "Open hits per 10 minutes by verdict" in html
    assert "open hits per 10 minutes" in html
    assert "one point per 10 minutes" in html
    daily = pages.campaign_panels(replace(data, bucket_seconds=86400))["opens"]
    assert "Opens per day by verdict" in daily


def test_drill_down_lists_hits_escaped_with_labelled_reasons() -> None:
    hits = [ExampleHit(NOW, "click", "machine", "scanner", ("link_burst", HOSTILE), "https://x.example/__hp",
                       "198.51.100.0", HOSTILE),
            ExampleHit(NOW, "open", "human", "direct", ("fast_after_send",), "", "2001:db8:1::", "Mozilla/5.0")]
    html = pages.examples_page(CAMPAIGN, "scanner", "machine", "click", "link_burst", hits, "", 5, NOW)
    assert "<script>alert" not in html
    assert "<h1>security scanner: latest machine clicks</h1>" in html
    assert "with reason “link burst”" in html
    assert html.count('<tr data-hit="') == 2
    assert '<td data-field="ip">198.51.100.0</td>' in html
    assert '<span data-reason="link_burst" title="one client fetched several links within seconds' in html
    assert ">fast open (a person can)</span>" in html
    assert 'data-panels="hits/panels?name=spring-sale&amp;source=scanner&amp;side=machine&amp;kind=click' \
           '&amp;reason=link_burst"' in html
    assert '<a href="campaign?name=spring-sale">Back to the campaign</a>' in html
    assert "No such hits" in pages.examples_panels([])["hits"]


async def test_every_page_credits_the_address_data_as_its_licence_asks() -> None:
    # DB-IP's lite data (CC BY 4.0) asks pages that show its results to link to db-ip.com (docs/data.md).
    html = pages.campaign_page(await campaign_data(), "", 5, NOW)
    assert '<a href="https://db-ip.com">IP Geolocation by DB-IP</a>' in html
