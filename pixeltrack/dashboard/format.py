"""Numbers for people: thousands separators, percentages, points, p-values, times (all UTC)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

DASH = "–"  # what an unknown or undefined number shows


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def count(n: float | None) -> str:
    """12345 → "12,345"."""
    return DASH if _missing(n) else f"{round(n or 0):,}"


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when the whole is empty (a rate of nothing is undefined, not 0)."""
    if _missing(part) or _missing(whole) or not whole:
        return None
    return (part or 0) / whole


def pct(x: float | None, decimals: int = 1) -> str:
    """0.1234 → "12.3%"."""
    return DASH if _missing(x) else f"{(x or 0) * 100:,.{decimals}f}%"


def points(x: float | None) -> str:
    """A difference of two rates in percentage points: 0.0123 → "+1.23 pts"."""
    return DASH if _missing(x) else f"{(x or 0) * 100:+.2f} pts"


def p_value(p: float | None) -> str:
    if _missing(p):
        return DASH
    return "< 0.0001" if (p or 0) < 1e-4 else f"{p:.4f}"


def money(x: float | None) -> str:
    """Revenue in the campaign's own currency (the views do not convert): 1234.5 → "1,234.50"."""
    return DASH if _missing(x) else f"{x:,.2f}"


def compact(x: float) -> str:
    """Axis ticks: 950 → "950", 12000 → "12k", 1500000 → "1.5M"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.1f}".removesuffix(".0") + suffix
    return f"{x:.1f}".removesuffix(".0") if x != int(x) else f"{int(x)}"


def utc(t: datetime) -> datetime:
    """ClickHouse DateTime('UTC') arrives naive from some drivers: it is UTC either way."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def when(t: datetime | None) -> str:
    """An hour of activity: "2026-09-21 14:00 UTC"; the epoch (a join's default) means never."""
    if t is None or utc(t).timestamp() <= 0:
        return DASH
    return utc(t).strftime("%Y-%m-%d %H:%M UTC")
