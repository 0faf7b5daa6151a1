"""`pixeltrack report` with downloads: their columns appear when a campaign has any, the A/B verdict can
be decided on them, and machines' downloads are listed by source."""

from __future__ import annotations

import orjson

from pixeltrack.analytics.report import ab_verdict, render
from tests.unit.pixeltrack.test_report import variant


def with_downloads(row: dict[str, object], unique: int, filtered: int) -> dict[str, object]:
    delivered = row["delivered"]
    assert isinstance(delivered, int)
    return {**row, "unique_downloads": unique, "downloads_filtered": filtered, "download_rate": unique / delivered}


def test_download_columns_only_when_the_campaign_has_downloads() -> None:
    plain = [variant("A", 1000, 100), variant("B", 1000, 120)]
    rows = [with_downloads(plain[0], 40, 7), with_downloads(plain[1], 90, 3)]
    assert "download" not in render([with_downloads(r, 0, 0) for r in plain], "c", "table", width=400)
    table = render(rows, "c", "table", width=400)
    assert "unique downloads" in table
    assert "download rate" in table
    assert "filtered downloads" in table
    assert "9.00%" in table  # B: 90 of 1,000


def test_the_verdict_on_downloads() -> None:
    rows = [with_downloads(variant("A", 5000, 500), 100, 0), with_downloads(variant("B", 5000, 500), 200, 0)]
    comps, verdict = ab_verdict(rows, "download")
    assert verdict.startswith("Variant B wins on download rate: +2.00 pts over A"), verdict
    assert (comps[0].p_a, comps[0].p_b) == (0.02, 0.04)
    doc = orjson.loads(render(rows, "c", "json", metric="download"))
    assert (doc["metric"], doc["variants"][1]["unique_downloads"]) == ("download", 200)


def test_machines_downloads_by_source_are_listed_under_the_variants() -> None:
    sources = [{"kind": "download", "source": "scanner", "source_label": "security scanner", "hits": 12,
                "share": 1.0, "top_reasons": [{"reason": "link_burst", "label": "link burst", "hits": 12}]}]
    table = render([variant("A", 10, 1)], "c", "table", width=200, sources=sources)
    assert "Filtered downloads by source (12, not counted)" in table
    assert "link burst 12" in table
    assert "Filtered downloads" not in render([variant("A", 10, 1)], "c", "table", width=200, sources=[])
