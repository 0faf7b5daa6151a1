"""Timestamps on the wire: ISO-8601 UTC with milliseconds and a Z, epoch seconds in memory."""

from __future__ import annotations

from datetime import UTC, datetime

# The times a record may carry: 2000-01-01 up to 2200-01-01 (UTC). ClickHouse's DateTime64 columns hold
# 1900-2299 and refuse the whole insert for one value outside; a time outside this window is a
# mistake (or worse), so it is refused where it enters (the API answers 422) and made a dead letter
# where it is read back (the processors), never left to fail a batch.
EARLIEST_TS = 946_684_800.0
LATEST_TS = 7_258_118_400.0
MAX_FUTURE = 86_400.0  # the API takes times at most this far ahead of its clock (clock skew)


def parse_ts(value: str | float | int) -> float:
    """Epoch seconds from an ISO-8601 string (a trailing Z or an offset) or a number.

    Raises ValueError naming the value when it is neither.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        dt = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def in_window(ts: float, latest: float = LATEST_TS) -> bool:
    """Whether `ts` (epoch seconds) is a time a record may carry (see EARLIEST_TS); NaN is not."""
    return EARLIEST_TS <= ts <= latest


def format_ts(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds: 2026-11-02T09:00:54.805Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
