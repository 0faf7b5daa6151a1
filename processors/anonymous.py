"""The processors' part of consent: consent records and aggregate sends as rows, and what the
anonymous mode (PIXELTRACK_TRACKING=aggregate) takes out of every row and dead letter.

A hit of a campaign-level token (schemas.tokens.aggregate_payload) names no message nor recipient; in the
anonymous mode every record is stored as if it were one: events, conversions and unsubscribes with empty
message and recipient ids, sends as aggregate sends (a count), and dead letters without the tokens,
ids and quoted values their bodies and details would otherwise keep.
"""

from __future__ import annotations

import re

import orjson

from processors.batch import TableRows
from schemas.aggregate import AggregateSends, hour_of
from schemas.consents import Consent
from schemas.records import DeadLetter
from schemas.sends import Send

CONSENT_COLUMNS = ("tenant", "recipient_id", "state", "ts", "source", "text_version", "src_topic", "src_partition",
                   "src_offset")
AGGREGATE_SEND_COLUMNS = ("tenant", "campaign", "variant", "sent_at", "sends", "key", "src_topic", "src_partition",
                          "src_offset")
REDACTED = "[redacted]"
# Fields of a record kept in a letter's `raw` that name (or hold a token naming) a message or recipient.
IDENTITY_FIELDS = ("token", "path", "message", "recipient", "click_id", "recipient_hash", "message_id",
                   "recipient_id", "target")
_ROUTE = re.compile(r"^(/[a-z]/)")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def consent_row(c: Consent, topic: str, partition: int, offset: int) -> tuple[object, ...]:
    return (c.tenant, c.recipient, c.state, c.ts, c.source, c.text_version, topic, partition, offset)


def aggregate_send_row(a: AggregateSends, topic: str, partition: int, offset: int) -> tuple[object, ...]:
    return (a.tenant, a.campaign, a.variant, hour_of(a.sent_at), a.count, a.key, topic, partition, offset)


def send_as_aggregate(s: Send, topic: str, partition: int, offset: int) -> tuple[object, ...]:
    """A Send in the anonymous mode: one aggregate send of its campaign, variant and hour, keyed by its
    record's position (so a re-read of the record counts once), without its message or recipient."""
    return (s.tenant, s.campaign, s.variant, hour_of(s.sent_at), 1, f"{topic}:{partition}:{offset}", topic,
            partition, offset)


def redact_letter(d: DeadLetter) -> DeadLetter:
    """The letter without what could name a message or recipient: the path keeps its route only (/o/,
    /c/, ...), `raw` keeps the record's other fields, the detail its words without quoted values."""
    route = _ROUTE.match(d.path)
    path = (route.group(1) + REDACTED) if route else (REDACTED if d.path else "")
    try:
        obj = orjson.loads(d.raw)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        for name in IDENTITY_FIELDS:
            if name in obj:
                obj[name] = REDACTED
        raw = orjson.dumps(obj).decode()
    else:
        raw = REDACTED if d.raw else ""
    return DeadLetter(id=d.id, received_at=d.received_at, stage=d.stage, reason=d.reason,
                      detail=_QUOTED.sub("'…'", d.detail), raw=raw, kind=d.kind, method=d.method, host=d.host,
                      path=path, ip=d.ip, ua=d.ua, edge=d.edge)


def without_ids(row: tuple[object, ...], columns: tuple[str, ...]) -> tuple[object, ...]:
    """The row with its message_id and recipient_id columns empty."""
    return tuple("" if name in ("message_id", "recipient_id") else value
                 for name, value in zip(columns, row, strict=True))


def tables() -> tuple[TableRows, TableRows]:
    """Fresh row lists of the consents and aggregate_sends tables, for a batch's output."""
    return TableRows("consents", CONSENT_COLUMNS), TableRows("aggregate_sends", AGGREGATE_SEND_COLUMNS)
