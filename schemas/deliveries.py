"""Delivery events: what happened to a sent message on its way and after (Kafka values, API bodies).

A sender (`POST /v1/events`) or its email platform (the webhook receivers of `/v1/esp/<platform>`)
reports that a registered send was delivered, bounced (hard or soft), deferred, complained about (a
feedback loop), unsubscribed through the platform's own list-unsubscribe, or replied to. One event is
idempotent per (tenant, message, type, id): a retried POST or a platform's repeated webhook counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from schemas.records import typed_fields
from schemas.sends import MAX_ID, text_field, time_field
from schemas.timefmt import LATEST_TS, format_ts, in_window

DeliveryType = Literal["delivered", "bounced", "deferred", "complained", "unsubscribed", "replied"]
DELIVERY_TYPES: tuple[str, ...] = get_args(DeliveryType)
BounceClass = Literal["", "hard", "soft"]
BOUNCE_CLASSES: tuple[str, ...] = get_args(BounceClass)
MAX_DIAGNOSTIC = 500  # characters of a bounce's diagnostic text kept (SMTP answers can be long)
PLATFORMS = ("", "sendgrid", "mailgun", "postmark", "ses")  # "" = the sender itself, through /v1/events


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery event of one message. `id` is the event's own id (the platform's event id, or the
    sender's); absent, it is the type and the time given (the type alone without one), so a retried item is
    still the same event. `bounce` is
    "hard" or "soft" for a bounce and "" otherwise; `smtp_code` (0 when unknown) and `diagnostic` are
    the receiving server's answer. Campaign, variant and recipient may be left empty: the processors
    take them from the message's registered send. `platform` says who reported it ("" the sender)."""

    tenant: str
    message: str
    type: str
    id: str
    ts: float
    campaign: str = ""
    variant: str = ""
    recipient: str = ""
    bounce: str = ""
    smtp_code: int = 0
    diagnostic: str = ""
    platform: str = ""
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> Delivery:
        """Raises ValueError with the reason for anything that is not a valid Delivery."""
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a Delivery must be a JSON object")
        d = cls(**typed_fields(cls, obj, "delivery"))
        d.check("delivery")
        if not isinstance(d.ts, int | float) or not in_window(d.ts):
            raise ValueError(f"a Delivery's ts {str(d.ts)[:40]!r} is not a time between 2000 and 2200")
        return d

    def check(self, where: str) -> None:
        """ValueError naming the field if the type, bounce class, SMTP code or ids are not valid."""
        if self.type not in DELIVERY_TYPES:
            raise ValueError(f"{where}.type: {self.type[:40]!r} is not one of {', '.join(DELIVERY_TYPES)}")
        if self.bounce not in BOUNCE_CLASSES:
            raise ValueError(f"{where}.bounce: {self.bounce[:40]!r} is not \"hard\", \"soft\" or empty")
        if self.bounce and self.type != "bounced":
            raise ValueError(f"{where}.bounce: only a bounced event has a bounce class")
        if not 0 <= self.smtp_code <= 599:
            raise ValueError(f"{where}.smtp_code: {self.smtp_code} is not an SMTP code (0 when unknown)")
        if self.platform not in PLATFORMS:
            raise ValueError(f"{where}.platform: {self.platform[:40]!r} is not a known platform")
        for name in ("tenant", "message", "id", "campaign", "variant", "recipient"):
            if len(getattr(self, name)) > MAX_ID:
                raise ValueError(f"{where}.{name}: longer than {MAX_ID} characters")
        if not self.message:
            raise ValueError(f"{where}.message: is required")
        if len(self.diagnostic) > MAX_DIAGNOSTIC:
            raise ValueError(f"{where}.diagnostic: longer than {MAX_DIAGNOSTIC} characters")

    @property
    def final_bounce(self) -> bool:
        """A bounce that takes the message out of `delivered` (a hard one; a soft bounce is followed by
        a retry, and is final only if no delivery follows: the views say so)."""
        return self.type == "bounced" and self.bounce == "hard"

    @staticmethod
    def default_id(type_: str, given_ts: object, ts: float) -> str:
        """The id of an event posted without one: its type and the time it names, so that a retried POST is the
        same event; without a time either, its type alone (one such event per message: the API's clock would
        make each retry a new one)."""
        return f"{type_}@{format_ts(ts)}" if given_ts is not None else type_

    @classmethod
    def from_api(cls, obj: Any, where: str, default_ts: float, tenant: str = "", latest: float = LATEST_TS,
                 platform: str = "") -> Delivery:
        """Validates one `/v1/events` item; ValueError names the field (e.g. "events[3].type: ...").
        A bounce without a class is hard when its SMTP code is 5xx, soft when 4xx."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: must be an object")
        code = obj.get("smtp_code", 0)
        if code is None:
            code = 0
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        if not isinstance(code, int) or isinstance(code, bool):
            raise ValueError(f"{where}.smtp_code: must be a whole number (0 when unknown)")
        type_ = text_field(obj, "type", where)
        bounce = text_field(obj, "bounce", where, required=False).lower()
        if type_ == "bounced" and not bounce:
            bounce = "soft" if 400 <= code < 500 else "hard"
        ts = time_field(obj, "ts", where, default_ts, latest)
        diagnostic = obj.get("diagnostic") or ""
        if not isinstance(diagnostic, str):
            raise ValueError(f"{where}.diagnostic: must be a string")
        d = cls(tenant=text_field(obj, "tenant", where, required=False) or tenant,
                message=text_field(obj, "message", where), type=type_,
                id=text_field(obj, "id", where, required=False) or cls.default_id(type_, obj.get("ts"), ts), ts=ts,
                campaign=text_field(obj, "campaign", where, required=False),
                variant=text_field(obj, "variant", where, required=False),
                recipient=text_field(obj, "recipient", where, required=False),
                bounce=bounce, smtp_code=code, diagnostic=diagnostic[:MAX_DIAGNOSTIC], platform=platform)
        d.check(where)
        return d
