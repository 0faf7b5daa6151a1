"""Aggregate sends: how many emails of a campaign's variant went out with campaign-level tracking.

A recipient tracked in aggregate (consent `denied`, or `unknown` where that means aggregate, or every
recipient under PIXELTRACK_TRACKING=aggregate) gets a campaign-level pixel and links (schemas.tokens
aggregate_payload) and no Send: a Send names its message and recipient. Their emails still count in the
campaign's denominators, as a number per campaign, variant and hour. `key` is the sender's idempotency
key (random, or derived from the run, never from a recipient): a retried POST with it counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.records import typed_fields
from schemas.sends import MAX_ID, text_field, time_field
from schemas.timefmt import LATEST_TS, in_window

MAX_COUNT = 10_000_000
HOUR = 3600.0


def hour_of(ts: float) -> float:
    """The start of ts's UTC hour: an aggregate send's time says no more than its hour."""
    return float(int(ts // HOUR) * HOUR)


@dataclass(frozen=True, slots=True)
class AggregateSends:
    """`count` emails of (tenant, campaign, variant) sent in the hour starting `sent_at` (epoch seconds)
    with campaign-level tracking; `key` makes the record count once however often it is posted."""

    tenant: str
    campaign: str
    variant: str
    sent_at: float
    count: int
    key: str
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> AggregateSends:
        """Raises ValueError with the reason for anything that is not valid AggregateSends."""
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("AggregateSends must be a JSON object")
        a = cls(**typed_fields(cls, obj, "aggregate_sends"))
        a.check("aggregate_sends")
        return a

    def check(self, where: str) -> None:
        """ValueError naming the field if a value is out of bounds."""
        if not self.campaign or len(self.campaign) > MAX_ID:
            raise ValueError(f"{where}.campaign: is required (at most {MAX_ID} characters)")
        if not self.key or len(self.key) > MAX_ID:
            raise ValueError(f"{where}.key: is required (an idempotency key of at most {MAX_ID} characters)")
        if type(self.count) is not int or not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"{where}.count: must be a whole number from 1 to {MAX_COUNT}")
        if not isinstance(self.sent_at, int | float) or not in_window(self.sent_at):
            raise ValueError(f"{where}.sent_at: {str(self.sent_at)[:40]!r} is not a time between 2000 and 2200")

    @classmethod
    def from_api(cls, obj: Any, where: str, default_ts: float, tenant: str = "",
                 latest: float = LATEST_TS) -> AggregateSends:
        """Validates one `/v1/aggregate-sends` item; ValueError names the field. sent_at is kept to its hour."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: must be an object")
        count = obj.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ValueError(f"{where}.count: must be a whole number from 1 to {MAX_COUNT}")
        a = cls(tenant=text_field(obj, "tenant", where, required=False) or tenant,
                campaign=text_field(obj, "campaign", where),
                variant=text_field(obj, "variant", where, required=False),
                sent_at=hour_of(time_field(obj, "sent_at", where, default_ts, latest)), count=count,
                key=text_field(obj, "key", where))
        a.check(where)
        return a
