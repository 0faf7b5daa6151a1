"""What every email platform's webhook becomes: Delivery records, hits for the classifier, dead letters.

A platform adapter (sendgrid, mailgun, postmark, ses) verifies its request and reads each event into one
call on `Batch`: `delivery(...)` (delivered, bounced, ...: topic `deliveries`), `hit(...)` (an open or a
click: a RawHit on `hits.raw`, classified like a fetch of our own pixel or link), `ignore(...)` (an event
type that is known and means nothing here, e.g. SendGrid's "processed"), `not_ours()` (a message sent
without pixeltrack's identifiers: another system's mail through the same account), or `letter(...)` (an
event that cannot be used: unknown type, missing identifiers; `hits.dlq` with its reason).

A hit carries the same signed token a fetch of our pixel or link would: minted here, with the tenant's
keys, from the identifiers the sender attached (schemas/esp.py), so the processors re-verify it like any
other and nothing unsigned is ever counted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.deliveries import Delivery
from schemas.esp import KEY_CAMPAIGN, KEY_MESSAGE, KEY_RECIPIENT, KEY_SENT_AT, KEY_VARIANT
from schemas.records import MAX_UA, REPLAY_HEADER, DeadLetter, RawHit, Record
from schemas.sends import MAX_ID
from schemas.timefmt import in_window
from schemas.tokens import MAX_URL_CHARS, Keyring, TokenPayload
from schemas.topics import Topics

EDGE = "esp"  # the `edge` of the hits and letters the receivers make
MAX_EVENTS = 10_000  # per request (SendGrid posts batches; the others one event)
MAX_RAW = 512  # characters of an event a dead letter keeps
_ADDRESS = re.compile(r"[^\s\"'<>,;:@]+@[^\s\"'<>,;:@]+")
_FRACTION = re.compile(r"(\.\d{6})\d+")


class Refused(Exception):
    """The request is not taken at all: `status` and a message naming what is wrong; `result` labels the
    metric (bad_signature, stale, bad_request, ...)."""

    def __init__(self, status: int, result: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.result = result


@dataclass(frozen=True, slots=True)
class Identity:
    """Which of our sends a platform event is about (the identifiers the sender attached)."""

    message: str
    campaign: str = ""
    variant: str = ""
    recipient: str = ""
    sent_at_ms: int = 0  # 0 when not attached


def identity(fields: Mapping[str, Any] | None, decode: Any = None) -> Identity | None:
    """The identifiers among `fields` (custom args, user variables, metadata or tags), or None when the
    message is not one of ours (no message id). Values that are not text are read as absent; `decode`
    turns each raw value into text (SES tags are lists, maybe encoded). ValueError for a sent-at that is
    not epoch milliseconds."""
    if not fields:
        return None

    def text(key: str) -> str:
        value = fields.get(key)
        if decode is not None:
            value = decode(value)
        return value[:MAX_ID] if isinstance(value, str) else ""

    message = text(KEY_MESSAGE)
    if not message:
        return None
    sent = text(KEY_SENT_AT)
    if sent and not sent.isdigit():
        raise ValueError(f"{KEY_SENT_AT} {sent[:40]!r} is not epoch milliseconds")
    return Identity(message, text(KEY_CAMPAIGN), text(KEY_VARIANT), text(KEY_RECIPIENT), int(sent or 0))


def epoch(value: Any) -> float:
    """Epoch seconds from a number, a string of digits, or ISO-8601 (any fraction, Z or an offset);
    ValueError otherwise or outside the times a record may carry."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
            except ValueError:
                raise ValueError(f"not a time: {value[:40]!r}") from None
            ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, int | float):
        ts = float(value)
    else:
        raise ValueError(f"not a time: {str(value)[:40]!r}")
    if not in_window(ts):
        raise ValueError(f"time {value!r} is not between 2000 and 2200")
    return ts


def event_id(*parts: Any) -> str:
    """A stable id for an event the platform gives none to: the same event posted again has the same."""
    return hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:32]


def redacted(event: Any) -> str:
    """An event as a dead letter keeps it: JSON, addresses replaced, cut to MAX_RAW characters."""
    try:
        text = orjson.dumps(event).decode()
    except (orjson.JSONEncodeError, TypeError):
        text = repr(event)
    return _ADDRESS.sub("<address>", text)[:MAX_RAW]


@dataclass(slots=True)
class Request:
    """Who sent the request (for dead letters) and for which tenant."""

    platform: str
    tenant: str
    host: str  # the tenant's tracking domain ("" for the default tenant): where the processors find its keys
    keyring: Keyring
    now: float
    path: str = ""
    ip: str = ""
    ua: str = ""


@dataclass(slots=True)
class Batch:
    """The records one request makes, published together (all or nothing), and what became of each event."""

    req: Request
    topics: Topics
    records: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def _id(self, raw_id: str) -> str:
        """`platform:id`, hashed when it would be too long to store."""
        full = f"{self.req.platform}:{raw_id}"
        return full if len(full) <= MAX_ID else f"{self.req.platform}:{event_id(raw_id)}"

    def delivery(self, who: Identity, type_: str, raw_id: str, ts: float, bounce: str = "", smtp_code: int = 0,
                 diagnostic: str = "") -> None:
        d = Delivery(tenant=self.req.tenant, message=who.message, type=type_, id=self._id(raw_id), ts=ts,
                     campaign=who.campaign, variant=who.variant, recipient=who.recipient, bounce=bounce,
                     smtp_code=smtp_code if 0 <= smtp_code <= 599 else 0,
                     diagnostic=_ADDRESS.sub("<address>", diagnostic)[:500], platform=self.req.platform)
        try:
            d.check("event")
        except ValueError as exc:
            self.letter("esp_invalid_event", str(exc), {"type": type_, "id": raw_id})
            return
        self.records.append(Record(self.topics.deliveries, who.message.encode(), d.encode()))
        self._count("delivery")

    def hit(self, who: Identity, kind: str, raw_id: str, ts: float, ip: str, ua: str, url: str = "",
            machine: bool = False, event: Any = None) -> None:
        """An open or click as a RawHit carrying the token our own pixel or link would carry."""
        if not who.campaign:
            self.letter("esp_unattributed", f"{KEY_CAMPAIGN} (campaign) was not attached to message "
                        f"{who.message[:60]!r}", event)
            return
        if who.sent_at_ms <= 0 or not in_window(who.sent_at_ms / 1000):
            self.letter("esp_unattributed", f"{KEY_SENT_AT} (sent at, epoch ms) was not attached to message "
                        f"{who.message[:60]!r}", event)
            return
        if kind == "click" and not (url.startswith(("https://", "http://")) and len(url) <= MAX_URL_CHARS
                                    and url.isprintable()):
            self.letter("esp_bad_link", f"clicked URL {url[:80]!r} is not an http(s) URL of at most "
                        f"{MAX_URL_CHARS} characters", event)
            return
        payload = TokenPayload(kind="click" if kind == "click" else "open", tenant=self.req.tenant,
                               campaign=who.campaign, variant=who.variant, message=who.message,
                               recipient=who.recipient, sent_at=who.sent_at_ms, url=url if kind == "click" else "")
        token = self.req.keyring.mint(payload)
        raw = RawHit(id=self._id(raw_id), received_at=ts, kind=payload.kind, method="GET", host=self.req.host,
                     path=f"/v1/esp/{self.req.platform}", token=token, ip=ip[:64], ua=ua[:MAX_UA], edge=EDGE,
                     origin=self.req.platform, origin_machine=machine)
        # Platforms deliver at least once (a retried webhook repeats events): the processors look the id up
        # in ClickHouse, as for a hit an edge re-sent from its spool.
        self.records.append(Record(self.topics.hits_raw, who.message.encode(), raw.encode(), ((REPLAY_HEADER, b"1"),)))
        self._count("hit")

    def ignore(self) -> None:
        self._count("ignored")

    def not_ours(self) -> None:
        self._count("not_ours")

    def letter(self, reason: str, detail: str, event: Any = None) -> None:
        r = self.req
        # The same event posted again (platforms retry) is the same letter, replaced rather than added.
        letter = DeadLetter(id=f"esp:{r.platform}:{event_id(r.tenant, reason, detail, redacted(event))}",
                            received_at=r.now, stage="esp", reason=reason, detail=f"{r.platform}: {detail}"[:200],
                            kind="", method="POST", host=r.host, path=r.path[:512], ip=r.ip[:64], ua=r.ua[:MAX_UA],
                            edge=EDGE, raw=redacted(event))
        self.records.append(Record(self.topics.hits_dlq, None, letter.encode()))
        self._count("dead_letter")

    def summary(self) -> dict[str, int]:
        """What the answer says: records accepted (deliveries and hits), and the other outcomes."""
        c = self.counts
        return {"accepted": c.get("delivery", 0) + c.get("hit", 0), "ignored": c.get("ignored", 0),
                "not_ours": c.get("not_ours", 0), "dead_letters": c.get("dead_letter", 0)}


@dataclass(frozen=True, slots=True)
class Context:
    """What an adapter needs besides the request: the clock, the replay window, SES's SNS verifier."""

    now: float
    max_age: float
    sns: Any = None  # ingest.esp.ses.SnsVerifier


_SMTP_CODE = re.compile(r"(?:^|\D)([2-5]\d\d)(?:\D|$)")


def smtp_code(*texts: Any) -> int:
    """The first SMTP reply code (200-599) found in the texts (e.g. "550 5.1.1 user unknown"), else 0."""
    for text in texts:
        if isinstance(text, int) and not isinstance(text, bool) and 200 <= text <= 599:
            return text
        if isinstance(text, str):
            found = _SMTP_CODE.search(text)
            if found:
                return int(found.group(1))
    return 0


def fresh(timestamp: Any, ctx: Context) -> None:
    """Refused (401, stale) unless the signed `timestamp` (epoch seconds) is within the replay window."""
    try:
        ts = float(timestamp)
    except (TypeError, ValueError):
        raise Refused(401, "bad_signature", "the signature's timestamp is missing or not a number") from None
    if abs(ctx.now - ts) > ctx.max_age:
        raise Refused(401, "stale", f"signed {int(ctx.now - ts)} s ago; at most {int(ctx.max_age)} s are accepted "
                      "(replay protection)")


def json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "bad_request", f"body is not JSON: {exc}") from None


def text(obj: Any, *path: str) -> str:
    """obj[path[0]][path[1]]... as text ("" when absent or not text)."""
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else ""
