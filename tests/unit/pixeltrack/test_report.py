"""`pixeltrack report`'s arithmetic and verdict: the test, its interval and the winner line agree."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from pixeltrack.analytics.report import ab_verdict, fetch, fetch_sources, render, two_proportion_test
from tests.plugins.clickhouse import ClickHouseDb
from tests.unit.pixeltrack.dashboard.test_reasons_queries import campaign_rows, insert


def variant(name: str, delivered: int, clicks: int) -> dict[str, object]:
    return {"variant": name, "delivered": delivered, "unique_opens": clicks, "opens_machine": 0,
            "machine_open_share": None, "unique_clicks": clicks, "clicks_human": clicks, "clicks_filtered": 0,
            "converted_messages": 0, "conversions": 0, "revenue": 0.0, "open_rate": clicks / delivered,
            "ctr": clicks / delivered, "ctor": 1.0, "conversion_rate": 0.0, "revenue_per_recipient": None}


def test_the_two_proportion_test_matches_a_hand_computation() -> None:
    c = two_proportion_test(10, 100, 25, 100)
    assert (round(c.z, 3), round(c.p_value, 5)) == (2.791, 0.00525)
    assert (round(c.ci_low * 100, 2), round(c.ci_high * 100, 2)) == (4.68, 25.32)
    with pytest.raises(ValueError, match="out of range"):
        two_proportion_test(5, 2, 1, 100)  # more clickers than sends: never a square root of a negative


def test_no_winner_while_the_interval_includes_zero_even_if_p_is_small() -> None:
    """29/50 against 74/100: the pooled test gives p = 0.046, the interval runs from -0.16 pts."""
    comps, verdict = ab_verdict([variant("A", 50, 29), variant("B", 100, 74)])
    assert comps[0].p_value < 0.05
    assert comps[0].ci_low < 0
    assert verdict.startswith("No variant wins on click rate yet"), verdict


def test_no_winner_from_a_handful_of_sends() -> None:
    comps, verdict = ab_verdict([variant("A", 2, 0), variant("B", 2, 2)])
    assert comps[0].p_value < 0.05  # the normal approximation says so; four sends cannot
    assert "too few events" in verdict, verdict


def test_a_clear_winner_and_the_interval_level_of_several_comparisons() -> None:
    _, verdict = ab_verdict([variant("A", 1000, 40), variant("B", 1000, 80)])
    assert verdict.startswith("Variant B wins on click rate: +4.00 pts over A (95% CI"), verdict
    comps, verdict = ab_verdict([variant("A", 1000, 40), variant("B", 1000, 80), variant("C", 1000, 42)])
    assert {c.level for c in comps} == {0.975}  # alpha / (k - 1), and the interval at that level
    assert "97.5% CI" in verdict


def test_csv_is_one_table_with_the_comparisons_and_the_verdict() -> None:
    rows = [variant("A", 1000, 40), variant("B", 1000, 80)]
    table = list(csv.DictReader(io.StringIO(render(rows, "spring", "csv"))))
    assert [r["variant"] for r in table] == ["A", "B"]
    assert table[0]["compared_with"] == "B"
    assert float(table[0]["p_value"]) < 0.001
    assert table[1]["compared_with"] == ""
    assert {r["verdict"] for r in table} == {ab_verdict(rows)[1]}
    doc = orjson.loads(render(rows, "spring", "json"))
    assert doc["comparisons"][0]["ci_level"] == 0.95


def test_names_and_values_are_printed_as_text_never_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """A variant (the sender's to name) or a user agent (the internet's) of "[/]" made rich raise, and
    "[link=…]" printed a hyperlink; ESC went to the terminal as is."""
    from pixeltrack.commands.data import print_rows as _print_rows

    table = render([variant("[/]", 1000, 40), variant("[link=https://evil.example]B[/link]", 1000, 80)],
                   "[bold]x", "table")
    assert "[/]" in table
    assert "[link=https://evil.example]B[/link]" in table
    _print_rows(["user_agent"], [["Mozilla/5.0 [/]"], ["a\x1b[31mred"]], "table")
    out = capsys.readouterr().out
    assert "Mozilla/5.0 [/]" in out
    assert "\x1b[31m" not in out
    assert "\\x1b[31mred" in out


def test_a_tie_reads_as_a_tie() -> None:
    _, verdict = ab_verdict([variant("A", 1000, 50), variant("B", 1000, 50)])
    assert "A and B are level: +0.00 pts" in verdict, verdict
    assert "leads" not in verdict
    _, verdict = ab_verdict([variant("A", 3, 0), variant("B", 3, 0)])  # too few events, and level
    assert verdict.startswith("No variant wins on click rate yet: too few events to test (A and B are level"), verdict
    _, verdict = ab_verdict([variant("A", 1000, 50), variant("B", 1000, 55)])
    assert "B leads A by +0.50 pts" in verdict, verdict


def test_machines_by_source_with_their_top_reasons_in_every_format(clickhouse: ClickHouseDb) -> None:
    insert(clickhouse, campaign_rows())

    def query(sql: str, params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        client = clickhouse.client()
        try:
            result = client.query(sql, parameters=params)
            return list(result.column_names), [list(r) for r in result.result_rows]
        finally:
            client.close()

    rows = fetch(query, "c1")
    sources = fetch_sources(query, "c1")
    assert [(s["kind"], s["source"], s["hits"]) for s in sources] == [
        ("open", "apple_mpp", 5), ("open", "bot", 1), ("open", "scanner", 1), ("click", "scanner", 4)]
    assert sources[0]["share"] == pytest.approx(5 / 7)
    assert sources[0]["source_label"] == "Apple Mail Privacy Protection"
    assert [r["reason"] for r in sources[3]["top_reasons"]] == ["link_burst", "time_of_click_check"]

    table = render(rows, "c1", "table", width=80, sources=sources)
    assert max(len(line) for line in table.splitlines()) <= 80
    flat = " ".join(table.split())
    assert "Machine opens by source (7, not counted)" in flat
    assert "Filtered clicks by source (4, not counted)" in flat
    assert "Apple Mail Privacy Protection" in flat
    assert "Apple privacy" in flat  # wrapped inside its cell at 80 columns, never cut
    wide = " ".join(render(rows, "c1", "table", width=160, sources=sources).split())
    assert "Apple privacy relay 5; bare Mozilla agent 5" in wide
    assert "link burst 3; time-of-click check 1" in wide
    assert table.index("One variant only") < table.index("Machine opens by source")  # under the variants

    doc = orjson.loads(render(rows, "c1", "json", sources=sources))
    assert doc["machine_by_source"][3]["top_reasons"][0] == {"reason": "link_burst", "label": "link burst", "hits": 3}

    lines = list(csv.DictReader(io.StringIO(render(rows, "c1", "csv", sources=sources))))
    assert [r["row"] for r in lines] == ["variant"] + ["machine_source"] * 4
    assert lines[4]["source"] == "scanner"
    assert lines[4]["top_reasons"] == "link_burst 3; time_of_click_check 1"
    assert lines[4]["top_reason_labels"] == "link burst 3; time-of-click check 1"
    assert lines[0]["variant"] == "A"
    assert lines[1]["variant"] == ""
