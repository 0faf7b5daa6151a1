"""Consent per recipient and tenant: the record (Kafka value, API body) and what each state means.

A recipient's consent to individual tracking is `granted`, `denied` or `unknown`, with when it was
given or withdrawn, through what (`source`: the API, a recipients CSV, the SDK, the recipient's
preferences page) and which version of the disclosure text the recipient saw. Records are history:
the latest (by `ts`, then arrival) for a (tenant, recipient) is the state. A tenant's setting says what
`unknown` means: `individual` (tracked as today) or `aggregate` (counted only into campaign totals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from schemas.records import typed_fields
from schemas.sends import text_field, time_field
from schemas.timefmt import LATEST_TS, in_window

ConsentState = Literal["granted", "denied", "unknown"]
CONSENT_STATES: tuple[str, ...] = get_args(ConsentState)
ConsentSource = Literal["api", "csv", "sdk", "preferences"]
CONSENT_SOURCES: tuple[str, ...] = get_args(ConsentSource)
TrackingMode = Literal["individual", "aggregate"]
TRACKING_MODES: tuple[str, ...] = get_args(TrackingMode)
MAX_TEXT_VERSION = 64


@dataclass(frozen=True, slots=True)
class Consent:
    """One change of one recipient's consent. `recipient` is the sender's recipient id (as in sends);
    `text_version` names the disclosure the recipient agreed to ("" when none, e.g. a withdrawal)."""

    tenant: str
    recipient: str
    state: str
    ts: float
    source: str
    text_version: str = ""
    v: int = 1

    def encode(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> Consent:
        """Raises ValueError with the reason for anything that is not a valid Consent."""
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a Consent must be a JSON object")
        c = cls(**typed_fields(cls, obj, "consent"))
        c.check("consent")
        if not isinstance(c.ts, int | float) or not in_window(c.ts):
            raise ValueError(f"a Consent's ts {str(c.ts)[:40]!r} is not a time between 2000 and 2200")
        return c

    def check(self, where: str) -> None:
        """ValueError naming the field if the state, source or ids are not valid."""
        if self.state not in CONSENT_STATES:
            raise ValueError(f"{where}.state: {self.state[:40]!r} is not one of {', '.join(CONSENT_STATES)}")
        if self.source not in CONSENT_SOURCES:
            raise ValueError(f"{where}.source: {self.source[:40]!r} is not one of {', '.join(CONSENT_SOURCES)}")
        if not self.recipient:
            raise ValueError(f"{where}.recipient: is required")
        if len(self.text_version) > MAX_TEXT_VERSION:
            raise ValueError(f"{where}.text_version: longer than {MAX_TEXT_VERSION} characters")

    @classmethod
    def from_api(cls, obj: Any, where: str, default_ts: float, tenant: str = "", source: str = "api",
                 latest: float = LATEST_TS) -> Consent:
        """Validates one `/v1/consents` item (or a CSV row made into one); ValueError names the field."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: must be an object")
        c = cls(tenant=text_field(obj, "tenant", where, required=False) or tenant,
                recipient=text_field(obj, "recipient", where), state=text_field(obj, "state", where).lower(),
                ts=time_field(obj, "ts", where, default_ts, latest), source=source,
                text_version=text_field(obj, "text_version", where, required=False))
        c.check(where)
        return c


def tracks_individually(state: str, unknown_means: str) -> bool:
    """Whether a recipient in `state` is tracked individually, `unknown` meaning `unknown_means`."""
    if state == "granted":
        return True
    if state == "denied":
        return False
    return unknown_means == "individual"
