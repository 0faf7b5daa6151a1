"""The processors' pure core: consumed records in, ClickHouse rows and dead letters out."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Protocol

from processors import metrics
from processors.classify import Classifier, Decision, Verdict
from processors.writer import TableRows
from schemas.hit import Hit
from schemas.records import DeadLetter, RawHit, Record
from schemas.tokens import Keyring, TokenError
from schemas.topics import Topics

EVENT_COLUMNS = (
    "tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant", "message_id", "recipient_id",
    "link_url", "link_id", "link_flags", "method", "host", "ip", "user_agent", "edge", "verdict", "source",
    "reasons", "browser", "os", "device", "mail_client", "country", "city", "asn", "as_org", "revision",
    "sign", "src_topic", "src_partition", "src_offset",
)
DEAD_LETTER_COLUMNS = (
    "id", "received_at", "stage", "reason", "detail", "kind", "method", "host", "path", "ip", "user_agent",
    "edge", "raw", "src_topic", "src_partition", "src_offset",
)


class SourceRecord(Protocol):
    """What the runners hand over: aiokafka's ConsumerRecord has these attributes, and so does the
    embedded bus's record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class BatchOutput:
    """The result of one batch: rows per table, and dead letters to produce to hits.dlq."""

    events: TableRows = field(default_factory=lambda: TableRows("events", EVENT_COLUMNS))
    dead_letters: TableRows = field(default_factory=lambda: TableRows("dead_letters", DEAD_LETTER_COLUMNS))
    to_dlq: list[Record] = field(default_factory=list)

    def tables(self) -> list[TableRows]:
        return [self.events, self.dead_letters]


class RecentIds:
    """Hit ids seen lately, to drop a hit that reaches the processor twice (a producer retry, an edge
    replaying its spool) before it is counted. Bounded: `capacity` ids, oldest forgotten first
    (about 120 bytes an id: 200,000 ids ≈ 24 MB). Older repeats are caught by the ClickHouse lookup
    the runner does for records carrying the replay header."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, hit_id: str) -> bool:
        """True if hit_id was seen before; records it otherwise."""
        if hit_id in self._ids:
            return True
        self._ids[hit_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False


class HitProcessor:
    """Decodes raw hits, re-checks their signature, classifies them and builds rows.

    Hits reach hits.raw only after the edge verified them; the processor checks again because Kafka
    is an input like any other: a record that fails is a dead letter, never a counted hit. Expiry is
    not re-checked (the edge judged it at receive time, and a replay hours later must agree).
    """

    def __init__(self, keyring: Keyring, classifier: Classifier, topics: Topics) -> None:
        self._keyring = keyring
        self._topics = topics
        self._classifier = classifier
        self._recent = RecentIds()
        self.repeats_dropped = 0

    def process(self, records: Sequence[SourceRecord], stored_ids: Set[str] = frozenset()) -> BatchOutput:
        """Rows for a batch. `stored_ids`: hit ids ClickHouse already holds; such hits are dropped."""
        out = BatchOutput()
        started = time.perf_counter()
        for record in records:
            if record.topic == self._topics.hits_dlq:
                self._dead_letter_row(out, record)
            else:
                self._hit(out, record, stored_ids)
        metrics.BATCH_SECONDS.labels("classify").observe(time.perf_counter() - started)
        return out

    def _hit(self, out: BatchOutput, record: SourceRecord, stored_ids: Set[str]) -> None:
        value = record.value or b""
        try:
            raw = RawHit.decode(value)
            payload = self._keyring.verify(raw.token, raw.kind)  # type: ignore[arg-type]
        except (ValueError, TokenError) as exc:
            reason = exc.reason if isinstance(exc, TokenError) else "undecodable"
            letter = DeadLetter(id=f"{record.topic}:{record.partition}:{record.offset}", received_at=time.time(),
                                stage="processor", reason=reason, detail=str(exc)[:200],
                                raw=value[:512].decode("utf-8", "backslashreplace"))
            out.to_dlq.append(Record(self._topics.hits_dlq, None, letter.encode()))
            metrics.DEAD_LETTERS.labels("processor", reason).inc()
            return
        if raw.id in stored_ids or self._recent.seen(raw.id):
            self.repeats_dropped += 1
            metrics.REPEATS_DROPPED.inc()
            return
        hit = Hit(id=raw.id, ts=raw.received_at, kind=raw.kind, method=raw.method, ip=raw.ip, ua=raw.ua,
                  message=payload.message, recipient=payload.recipient, campaign=payload.campaign,
                  sent_at=payload.sent_at / 1000.0, headers=raw.headers, link=payload.url,
                  honeypot=payload.honeypot, variant=payload.variant, tenant=payload.tenant,
                  link_id=payload.link_id, link_flags=payload.flags, host=raw.host, edge=raw.edge)
        for decision in self._classifier.feed(hit):
            self._event_rows(out, decision, record)

    def _event_rows(self, out: BatchOutput, d: Decision, record: SourceRecord) -> None:
        if d.previous is not None:
            out.events.rows.append(self._row(d, record, d.previous, d.revision - 1, -1))
            metrics.REVISIONS.inc()
        out.events.rows.append(self._row(d, record, d.verdict, d.revision, 1))
        metrics.HITS.labels(d.hit.kind, d.verdict.verdict).inc()

    @staticmethod
    def _row(d: Decision, record: SourceRecord, v: Verdict, revision: int, sign: int) -> tuple[object, ...]:
        h, e = d.hit, d.enrichment
        # DateTime64(3) columns take integer milliseconds (clickhouse-connect's tick form), no datetimes.
        # The source position is the record being processed now: a revision row belongs to the batch
        # that caused it, so its position and dedup token are those of that batch.
        return (h.tenant, h.id, h.kind, round(h.ts * 1000), round(h.sent_at * 1000), h.campaign, h.variant,
                h.message, h.recipient, h.link, h.link_id, h.link_flags, h.method, h.host, h.ip, h.ua, h.edge,
                v.verdict, v.source, list(v.reasons), e.browser, e.os, e.device, e.mail_client, e.country, e.city,
                e.asn, e.as_org, revision, sign, record.topic, record.partition, record.offset)

    def _dead_letter_row(self, out: BatchOutput, record: SourceRecord) -> None:
        try:
            d = DeadLetter.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            d = DeadLetter(id=f"{record.topic}:{record.partition}:{record.offset}", received_at=time.time(),
                           stage="processor", reason="undecodable_dead_letter", detail=str(exc)[:200],
                           raw=(record.value or b"")[:512].decode("utf-8", "backslashreplace"))
        out.dead_letters.rows.append((
            d.id, round(d.received_at * 1000), d.stage, d.reason, d.detail, d.kind, d.method, d.host, d.path,
            d.ip, d.ua, d.edge, d.raw, record.topic, record.partition, record.offset))
        if d.stage == "edge":
            metrics.DEAD_LETTERS.labels("edge", d.reason).inc()

