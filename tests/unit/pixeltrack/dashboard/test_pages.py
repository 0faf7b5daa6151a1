"""Pages rendered from fixed rows: the numbers people read, every panel, and nothing unescaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser

from pixeltrack.dashboard import pages
from pixeltrack.dashboard.queries import CampaignData, fetch_campaign, fetch_campaigns
from pixeltrack.report import ab_verdict
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
