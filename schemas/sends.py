"""Sends and conversions: the denominators and outcomes that rates need (Kafka values, API bodies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.records import typed_fields
from schemas.timefmt import LATEST_TS, format_ts, in_window, parse_ts

MAX_ID = 200  # campaign, variant, message, recipient, link ids: bounded like everything from outside
CURRENCY_LEN = 3
# A conversion's value at most: far above any one order, far below where a sum of many stops being exact
# or finite (two of 1e308 made revenue Infinity). The API refuses more with 422; the processors
# dead-letter a Kafka conversion beyond it.
MAX_CONVERSION_VALUE = 1e12


def text_field(obj: dict[str, Any], name: str, where: str, required: bool = True) -> str:
    """obj[name] as a string of at most MAX_ID characters (None and absent are ""); ValueError names
    the field otherwise."""
    value = obj.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{where}.{name}: must be a string, got {type(value).__name__}")
    if required and not value:
        raise ValueError(f"{where}.{name}: is required")
    if len(value) > MAX_ID:
        raise ValueError(f"{where}.{name}: longer than {MAX_ID} characters")
    return value


def time_field(obj: dict[str, Any], name: str, where: str, default: float, latest: float = LATEST_TS) -> float:
    """obj[name] as epoch seconds (ISO-8601 or a number; `default` when absent), within 2000-01-01 and
    `latest`; ValueError names the field otherwise."""
    value = obj.get(name)
    ts = default
    if value is not None:
        try:
            ts = parse_ts(value)
        except ValueError:
            raise ValueError(f"{where}.{name}: not an ISO-8601 time or epoch seconds: {str(value)[:40]!r}") from None
    if not in_window(ts, latest):
        raise ValueError(f"{where}.{name}: {str(value)[:40]!r} is not between 2000-01-01 and {format_ts(latest)}")
    return ts


@dataclass(frozen=True, slots=True)
class Send:
    """One message sent to one recipient: the denominator of every rate. `mailbox_domain` is the part
    after @ of the recipient's address (for machine share by mailbox provider); the address itself is
    never stored. `sent_at` is epoch seconds."""

    tenant: str
    campaign: str
    variant: str
    message: str
    recipient: str
    sent_at: float
    mailbox_domain: str = ""
    links: int = 0
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> Send:
        return cls.from_api(orjson.loads(value), "send", default_ts=0.0)

    @classmethod
    def from_api(cls, obj: Any, where: str, default_ts: float, tenant: str = "", latest: float = LATEST_TS) -> Send:
        """Validates one API object; ValueError names the field (e.g. "sends[3].campaign: is required").
        `latest`: the latest sent_at taken (the API: a day ahead of its clock)."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: must be an object")
        links = obj.get("links", 0)
        if not isinstance(links, int) or isinstance(links, bool) or not 0 <= links <= 10_000:
            raise ValueError(f"{where}.links: must be a whole number from 0 to 10000")
        return cls(tenant=text_field(obj, "tenant", where, required=False) or tenant,
                   campaign=text_field(obj, "campaign", where),
                   variant=text_field(obj, "variant", where, required=False),
                   message=text_field(obj, "message", where), recipient=text_field(obj, "recipient", where),
                   sent_at=time_field(obj, "sent_at", where, default_ts, latest),
                   mailbox_domain=text_field(obj, "mailbox_domain", where, required=False).lower(), links=links)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A recipient's one-click unsubscribe (RFC 8058 POST). ClickHouse names the recipient by its keyed
    hash only; `recipient` (the id the link carried, "" from edges before it) travels on the topic for
    the sender's own webhook (processors/triggers/recipient_events.py) and is never stored."""

    tenant: str
    recipient_hash: str
    campaign: str
    message: str
    ts: float
    recipient: str = ""
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> Unsubscribe:
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("an Unsubscribe must be a JSON object")
        u = cls(**typed_fields(cls, obj, "unsubscribe"))
        if not isinstance(u.ts, int | float) or not in_window(u.ts):
            raise ValueError(f"an Unsubscribe's ts {str(u.ts)[:40]!r} is not a time between 2000 and 2200")
        return u


@dataclass(frozen=True, slots=True)
class Conversion:
    """An outcome attributed to a click (by click id) or to a message. `idempotency_key` makes a
    retried POST count once. `value` is in `currency` units (ISO 4217, upper case)."""

    tenant: str
    idempotency_key: str
    ts: float
    value: float
    currency: str
    click_id: str = ""
    click_hit_id: str = ""  # the edge's id of the click the conversion followed (joins to events.hit_id)
    message: str = ""
    campaign: str = ""
    variant: str = ""
    recipient: str = ""
    link: str = ""
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> Conversion:
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a Conversion must be a JSON object")
        c = cls(**typed_fields(cls, obj, "conversion"))
        if not c.idempotency_key:
            raise ValueError("a Conversion needs an idempotency_key")
        if not isinstance(c.ts, int | float) or not in_window(c.ts):
            raise ValueError(f"a Conversion's ts {str(c.ts)[:40]!r} is not a time between 2000 and 2200")
        if not isinstance(c.value, int | float) or not 0 <= c.value <= MAX_CONVERSION_VALUE:  # nan fails too
            raise ValueError(f"a Conversion's value {str(c.value)[:40]!r} is not a number from 0 to "
                             f"{MAX_CONVERSION_VALUE:g}")
        return c

    @staticmethod
    def validate_amount(obj: dict[str, Any], where: str) -> tuple[float, str]:
        value = obj.get("value", 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_CONVERSION_VALUE:
            raise ValueError(f"{where}.value: must be a number from 0 to {MAX_CONVERSION_VALUE:g}")
        currency = obj.get("currency", "")
        if not isinstance(currency, str) or (currency and (len(currency) != CURRENCY_LEN or not currency.isalpha())):
            raise ValueError(f"{where}.currency: must be a 3-letter ISO 4217 code such as EUR")
        return float(value), currency.upper()
