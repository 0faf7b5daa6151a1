"""Numbers for people."""

from __future__ import annotations

from datetime import UTC, datetime

from pixeltrack.dashboard.format import DASH, compact, count, money, p_value, pct, points, ratio, when


def test_counts_and_money_have_thousands_separators() -> None:
    assert count(1234567) == "1,234,567"
    assert count(0) == "0"
    assert count(None) == DASH
    assert count(float("nan")) == DASH
    assert money(19141) == "19,141.00"


def test_rates_are_percentages_with_one_or_two_decimals() -> None:
    assert pct(0.12104) == "12.1%"
    assert pct(0.12104, 2) == "12.10%"
    assert pct(1) == "100.0%"
    assert pct(None) == DASH
    assert ratio(1, 0) is None  # a rate of nothing is undefined, not 0%
    assert pct(ratio(1, 0)) == DASH
    assert ratio(5, 8) == 0.625


def test_differences_and_p_values() -> None:
    assert points(0.0603) == "+6.03 pts"
    assert points(-0.0055) == "-0.55 pts"
    assert p_value(0.00904) == "0.0090"
    assert p_value(3e-9) == "< 0.0001"


def test_axis_numbers_are_compact() -> None:
    assert [compact(x) for x in (0, 5, 950, 1000, 1500, 12000, 2_500_000, 0.5)] == [
        "0", "5", "950", "1k", "1.5k", "12k", "2.5M", "0.5"]


def test_times_are_utc_and_the_epoch_means_never() -> None:
    assert when(datetime(2026, 9, 21, 14, 0)) == "2026-09-21 14:00 UTC"
    assert when(datetime(2026, 9, 21, 14, 0, tzinfo=UTC)) == "2026-09-21 14:00 UTC"
    assert when(datetime(1970, 1, 1)) == DASH
    assert when(None) == DASH
