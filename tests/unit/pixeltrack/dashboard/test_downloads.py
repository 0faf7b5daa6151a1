"""Downloads on the dashboard: the KPI (unique downloads, download rate, filtered), a document link's
downloads in the links panel, and machines' downloads by source; nothing of them for a campaign without."""

from __future__ import annotations

from dataclasses import replace

from pixeltrack.dashboard import pages
from pixeltrack.dashboard.rows import LinkRow, SourceRow
from tests.unit.pixeltrack.dashboard.test_pages import Elements, campaign_data

DOC = "https://files.example.com/price-list.pdf"


async def test_downloads_show_in_the_kpis_links_and_sources() -> None:
    data = await campaign_data()
    variants = [{**v, "unique_downloads": n, "downloads_human": n + 3, "downloads_filtered": f,
                 "download_rate": n / v["delivered"]}
                for v, n, f in zip(data.variants, (500, 750), (40, 2), strict=True)]
    links = [*data.links, LinkRow(DOC, 0, 0, 0, 0, 0.0, downloads_human=1_253, downloads_filtered=42)]
    sources = [*data.sources, SourceRow("download", "machine", "scanner", 42, (("link_burst", 40),))]
    panels = pages.campaign_panels(replace(data, variants=variants, links=links, sources=sources))
    kpis = Elements(panels["kpis"]).metrics
    assert kpis[("", "unique_downloads")] == "1,250"
    assert kpis[("", "download_rate")] == "2.5%"  # 1,250 of 50,000 delivered
    assert "42 filtered, not counted" in panels["kpis"]
    assert '<th scope="col">people&#x27;s downloads</th><th scope="col">filtered downloads</th>' in panels["links"]
    row = next(r for r in panels["links"].split("<tr") if DOC in r)
    assert "<td>1,253</td><td>42</td></tr>" in row
    assert "<td>3.2%</td>" in row  # the filtered share: 42 of the document's 1,295 fetches were machines'
    assert "Filtered downloads <span" in panels["sources"]
    assert 'data-kind="download" data-side="machine" data-source="scanner"' in panels["sources"]
    assert "kind=download" in panels["sources"]  # the drill-down link keeps the kind


async def test_a_campaign_without_downloads_has_no_download_group() -> None:
    panels = pages.campaign_panels(await campaign_data())
    assert "Filtered downloads" not in panels["sources"]
    assert Elements(panels["kpis"]).metrics[("", "unique_downloads")] == "0"
