"""Timestamps on the wire: ISO-8601 UTC with milliseconds and a Z, epoch seconds in memory."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_ts(value: str | float | int) -> float:
    """Epoch seconds from an ISO-8601 string (a trailing Z or an offset) or a number.

    Raises ValueError naming the value when it is neither.
    """
    if isinstance(value, int | float):
        return float(value)
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def format_ts(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds: 2026-11-02T09:00:54.805Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
