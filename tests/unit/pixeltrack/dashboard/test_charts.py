"""The SVG charts: well-formed XML, one mark per value, accessible names, escaped text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from pixeltrack.dashboard import charts
from pixeltrack.dashboard.charts import Series

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = datetime(2026, 9, 21, 14, 0, tzinfo=UTC)
NASTY = "<b>\"A&B\"</b> 'x'"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def assert_accessible(root: ET.Element, title: str) -> None:
    assert root.get("role") == "img"
    title_id, desc_id = (root.get("aria-labelledby") or "").split()
    assert root.find(f"s:title[@id='{title_id}']", NS) is not None
    assert root.find(f"s:title[@id='{title_id}']", NS).text == title  # type: ignore[union-attr]
    assert (root.find(f"s:desc[@id='{desc_id}']", NS).text or "").strip()  # type: ignore[union-attr]


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in (polyline.get("points") or "").split())]


HOURS = [T0 + timedelta(hours=i) for i in range(6)]
OPENS = [Series("human", [1, 5, 9, 4, 2, 0], charts.HUMAN), Series("proxy", [0, 2, 3, 1, 1, 0], charts.PROXY),
         Series("machine", [40, 12, 3, 1, 0, 1], charts.MACHINE)]


@pytest.mark.parametrize("stacked", [False, True])
def test_time_chart_has_a_line_with_a_point_per_hour_for_each_series(stacked: bool) -> None:
    root = parse(charts.time_chart("opens", "Opens per hour", "desc", HOURS, OPENS, stacked=stacked))
    assert_accessible(root, "Opens per hour")
    lines = root.findall(".//s:polyline[@class='series']", NS)
    assert [line.get("data-series") for line in lines] == ["human", "proxy", "machine"]
    assert all(len(points(line)) == len(HOURS) for line in lines)
    assert len(root.findall(".//s:polygon", NS)) == 3
    # x grows with time; one tooltip column per hour says the numbers
    xs = [x for x, _ in points(lines[0])]
    assert xs == sorted(xs)
    assert len(set(xs)) == len(xs)
    tips = [r.find("s:title", NS).text for r in root.findall(".//s:rect[@class='hover']", NS)]  # type: ignore[union-attr]
    assert tips[1] == "2026-09-21 15:00 UTC: human 5, proxy 2, machine 12"
    # axis labels and a legend with totals
    assert {"hits per hour", "hour (UTC)"} <= set(texts(root))
    assert {"human (21)", "proxy (7)", "machine (57)"} <= set(texts(root))
    assert "14:00" in texts(root)
    assert "21 Sep" in texts(root)


def test_stacked_areas_put_each_series_on_the_ones_below() -> None:
    root = parse(charts.time_chart("opens", "t", "d", HOURS, OPENS, stacked=True))
    human, proxy, machine = (points(p) for p in root.findall(".//s:polyline[@class='series']", NS))
    baseline = float(root.findall(".//s:line", NS)[0].get("y1") or 0)  # the grid line at 0
    # heights above the axis add up: the top line is the total
    total = [h + p + m for h, p, m in zip(OPENS[0].values, OPENS[1].values, OPENS[2].values, strict=True)]
    scale = (baseline - machine[0][1]) / total[0]
    for i, t in enumerate(total):
        assert baseline - machine[i][1] == pytest.approx(t * scale, abs=0.2)
        assert baseline - human[i][1] == pytest.approx(OPENS[0].values[i] * scale, abs=0.2)
        assert proxy[i][1] <= human[i][1]


def test_time_chart_y_axis_ticks_are_round_numbers_above_the_peak() -> None:
    root = parse(charts.time_chart("c", "t", "d", HOURS, [Series("people", [0, 1234, 5, 0, 0, 2], charts.CLICK)]))
    ticks = [t for t in texts(root) if t.replace("k", "").replace(".", "").isdigit()]
    assert ticks[0] == "0"
    assert ticks[-1] in ("1.4k", "1.5k", "2k")


def test_time_chart_text_is_escaped() -> None:
    svg = charts.time_chart("c", NASTY, NASTY, HOURS[:2], [Series(NASTY, [1, 2], charts.CLICK)], y_label=NASTY)
    assert "<b>" not in svg
    root = parse(svg)
    assert root.find("s:title", NS).text == NASTY  # type: ignore[union-attr]
    assert NASTY in texts(root)
    assert root.find(".//s:polyline", NS).get("data-series") == NASTY  # type: ignore[union-attr]


def test_time_chart_of_one_hour_draws_dots() -> None:
    root = parse(charts.time_chart("c", "t", "d", HOURS[:1], [Series("people", [3], charts.CLICK)]))
    assert len(root.findall(".//s:circle[@class='series']", NS)) == 1
    assert not root.findall(".//s:polyline", NS)


def test_time_chart_without_hits_says_so() -> None:
    for times, series in (([], OPENS), (HOURS, [Series("x", [0] * 6, charts.CLICK)])):
        root = parse(charts.time_chart("c", "Opens", "d", times, series))
        assert_accessible(root, "Opens")
        assert "No hits yet." in texts(root)


def test_time_chart_needs_a_value_per_time() -> None:
    with pytest.raises(ValueError, match="one value per time"):
        charts.time_chart("c", "t", "d", HOURS, [Series("x", [1, 2], charts.CLICK)])


def test_time_ticks_step_up_for_long_spans() -> None:
    days = [T0 + timedelta(hours=i) for i in range(24 * 20)]
    root = parse(charts.time_chart("c", "t", "d", days, [Series("x", [1.0] * len(days), charts.CLICK)]))
    labels = [t for t in texts(root) if re.fullmatch(r"\d\d (Sep|Oct)", t)]
    assert 2 <= len(labels) <= 14
    assert not [t for t in texts(root) if re.fullmatch(r"\d\d:\d\d", t)]  # days, not hours


def test_bar_chart_has_a_bar_per_item_with_value_and_share() -> None:
    items = [("gmail_proxy", 2000.0), ("apple_mail", 1200.0), (NASTY * 2, 7.0)]
    svg = charts.bar_chart("clients", "Mail clients", "desc", items, total=3207)
    assert "<b>" not in svg
    root = parse(svg)
    assert_accessible(root, "Mail clients")
    bars = root.findall(".//s:g[@class='bar']", NS)
    assert len(bars) == 3
    widths = [float(b.find("s:rect", NS).get("width") or 0) for b in bars]  # type: ignore[union-attr]
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[1] / widths[0] == pytest.approx(0.6, abs=0.01)
    assert "2,000 (62.4%)" in texts(root)
    # a long label is shortened on the chart and whole in its tooltip
    assert bars[2].find("s:title", NS).text == f"{NASTY * 2}: 7 (0.2%)"  # type: ignore[union-attr]
    assert any(t.endswith("…") for t in texts(root))


def test_bar_chart_without_items_says_so() -> None:
    root = parse(charts.bar_chart("c", "Countries", "d", []))
    assert "Nothing known yet." in texts(root)


def test_funnel_has_a_step_per_stage_narrowing_down() -> None:
    steps = [("Delivered", 50_000.0), ("Opened", 6_050.0), ("Clicked", 4_040.0), ("Converted", 1_440.0)]
    root = parse(charts.funnel_chart("f", "Funnel", "d", steps))
    assert_accessible(root, "Funnel")
    groups = root.findall(".//s:g[@class='step']", NS)
    assert len(groups) == 4
    bars = [float(g.findall("s:rect", NS)[1].get("width") or 0) for g in groups]
    assert bars == sorted(bars, reverse=True)
    assert bars[1] / bars[0] == pytest.approx(6_050 / 50_000, abs=0.001)
    assert {"50,000", "6,050", "4,040", "1,440"} <= set(texts(root))
    assert "8.1% of delivered · 66.8% of opened" in texts(root)


def test_funnel_of_nothing_delivered_says_so() -> None:
    assert "Nothing delivered yet." in texts(parse(charts.funnel_chart("f", "Funnel", "d", [("Delivered", 0)])))


@pytest.mark.parametrize(("low", "high", "color"), [(0.01, 0.03, charts.CLICK), (-0.01, 0.03, charts.FILTERED),
                                                    (-0.03, -0.01, charts.MACHINE)])
def test_interval_mark_colours_intervals_that_leave_zero_out(low: float, high: float, color: str) -> None:
    root = parse(charts.interval_mark("ci", "click rate: B minus A", (low + high) / 2, low, high, 0.05))
    interval = root.find(".//s:line[@class='interval']", NS)
    assert interval is not None
    assert interval.get("stroke") == color
    x1, x2 = float(interval.get("x1") or 0), float(interval.get("x2") or 0)
    assert x1 < x2
    assert "95% interval" in (root.find("s:desc", NS).text or "")  # type: ignore[union-attr]


def test_nice_ticks() -> None:
    assert charts.nice_ticks(0) == [0.0, 1.0]
    assert charts.nice_ticks(3) == [0.0, 1.0, 2.0, 3.0]
    assert charts.nice_ticks(437) == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
    assert charts.nice_ticks(1000) == [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]


def test_chart_ids_are_valid_xml_ids() -> None:
    root = parse(charts.bar_chart('a b<"c>', "t", "d", [("x", 1.0)]))
    assert root.get("id") == "a-b-c"


def test_a_fresh_campaigns_minutes_get_minute_ticks() -> None:
    minutes = [T0 + timedelta(minutes=i) for i in range(50)]
    root = parse(charts.time_chart("c", "t", "d", minutes, [Series("x", [1.0] * 50, charts.CLICK)],
                                   bucket_seconds=60))
    labels = [t for t in texts(root) if re.fullmatch(r"\d\d:\d\d", t)]
    assert labels[:3] == ["14:00", "14:10", "14:20"]  # ticks on whole minutes, not one per hour
    assert 5 <= len(labels) <= 14
    assert len(root.findall(".//s:rect[@class='hover']", NS)) == 50
    tips = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "2026-09-21 14:07 UTC: x 1" in tips


def test_daily_points_have_date_tooltips() -> None:
    days = [T0.replace(hour=0) + timedelta(days=i) for i in range(30)]
    root = parse(charts.time_chart("c", "t", "d", days, [Series("x", [2.0] * 30, charts.CLICK)],
                                   bucket_seconds=86400))
    tips = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "2026-09-22: x 2" in tips


def test_bucket_names() -> None:
    assert [charts.bucket_name(s) for s in (60, 600, 3600, 7200, 86400)] == [
        "minute", "10 minutes", "hour", "2 hours", "day"]
