"""Rows on an 80-column terminal: a table when it fits, else one block per row, every name and value whole."""

from __future__ import annotations

from rich.console import Console

from pixeltrack.analytics.report import render
from pixeltrack.analytics.tables import print_rows

# campaign_summary's columns (schemas/clickhouse/006_views.sql) and one row of plausible values.
SUMMARY = {
    "tenant": "", "campaign": "spring-sale-2026-eu", "variant": "B", "recipients": 50_000, "delivered": 49_120,
    "unique_opens": 20_511, "unique_human_opens": 14_032, "unique_proxy_only_opens": 6_479, "opens_human": 18_901,
    "opens_proxy": 7_655, "opens_machine": 21_330, "opens_duplicate": 912, "machine_only_messages": 9_870,
    "unique_clicks": 3_110, "unique_clicks_of_openers": 2_980, "clicks_human": 3_544, "clicks_filtered": 6_120,
    "converted_messages": 412, "conversions": 430, "revenue": 21_930.5, "sent_revenue": 21_480.25,
    "unsent_engaged": 3, "open_rate": 0.41756921824104234, "machine_open_share": 0.44542575591364,
    "ctr": 0.06331433224755701, "ctor": 0.14528789430061918, "filtered_click_share": 0.6332781456953642,
    "conversion_rate": 0.008387622149837134, "revenue_per_recipient": 0.429605,
}


def _out(columns: list[str], rows: list[list[object]], width: int) -> str:
    console = Console(width=width, record=True, force_terminal=False)
    with console.capture() as cap:
        print_rows(columns, rows, console)
    return cap.get()


def test_a_wide_row_at_80_columns_shows_every_name_and_value() -> None:
    out = _out(list(SUMMARY), [list(SUMMARY.values()), list(SUMMARY.values())], 80)
    assert max(len(line) for line in out.splitlines()) <= 80
    for name, value in SUMMARY.items():
        assert name in out
        assert str(value) in out, name
    assert "…" not in out
    assert "row 2 of 2" in out


def test_a_narrow_result_stays_a_table() -> None:
    out = _out(["verdict", "hits"], [["human", 12], ["machine", 30]], 80)
    assert "┃ verdict ┃ hits ┃" in out
    assert "row 1" not in out


def test_a_long_value_wraps_instead_of_being_cut() -> None:
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 " * 2
    out = _out(["user_agent", "hits"], [[ua, 3]], 80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "".join(out.split()).count("".join(ua.split())) == 1


def test_no_rows_still_names_the_columns() -> None:
    out = _out(list(SUMMARY), [], 80)
    for name in SUMMARY:
        assert name in out


def test_report_at_80_columns_shows_every_variant_value() -> None:
    rows = [dict(SUMMARY, variant=v) for v in ("A", "B")]
    out = render(rows, "spring-sale-2026-eu", "table", width=80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    for label in ("delivered", "unique opens", "open rate", "machine opens", "CTR", "CTOR", "filtered clicks",
                  "conv. rate", "revenue / recipient"):
        assert label in out
    assert "41.76%" in out
    assert "49,120" in out
    assert "21,330 (44.54%)" in out
