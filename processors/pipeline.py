"""The processors' pure core: consumed records in, ClickHouse rows and dead letters out.

Longer than 400 lines because HitProcessor is one class on the compiled hot path (schemas.native.HOT) whose
per-record paths (hits, sends, conversions, unsubscribes, deliveries) share its dedupe, tenant and dead-letter state;
mypyc compiles a class from one module.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from processors import anonymous, metrics
from processors.batch import BatchContext, Lookups, TableRows
from processors.behaviour import Classifier
from processors.classify import Decision, Verdict
from processors.deliveries import (
    DELIVERY_COLUMNS,
    UNATTRIBUTED,
    UNDECODABLE,
    DeliveryEvents,
    from_unsubscribe,
    key_of,
)
from processors.enrich import Enrichment
from processors.site import SITE_VISIT_COLUMNS, site_visit_hit, site_visit_site, visit_hit
from schemas.aggregate import AggregateSends, hour_of
from schemas.classified import ClassifiedEvent
from schemas.consents import Consent, tracks_individually
from schemas.deliveries import Delivery
from schemas.hit import Hit
from schemas.privacy import (
    KeyedRecipientHash,
    letter_recipients,
    recipient_hash,
    recipient_key,
    truncate_ip,
)
from schemas.records import MAX_PATH, REPLAY_HEADER, DeadLetter, RawHit, Record
from schemas.sends import Conversion, Send, Unsubscribe
from schemas.site import SITE_KINDS, VISIT
from schemas.tenants import TenantRegistry
from schemas.timefmt import EARLIEST_TS, LATEST_TS
from schemas.tokens import FLAG_IMAGE, ClickRef, Keyring, TokenError, TokenPayload
from schemas.topics import Topics
from schemas.verdicts import R_PLATFORM_MACHINE

EVENT_COLUMNS = (
    "tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant", "message_id", "recipient_id",
    "link_url", "link_id", "link_flags", "method", "host", "ip", "user_agent", "edge", "verdict", "source",
    "reasons", "browser", "os", "device", "mail_client", "country", "city", "asn", "as_org", "revision",
    "sign", "src_topic", "src_partition", "src_offset", "click_hit_id", "origin",
)
DEAD_LETTER_COLUMNS = (
    "id", "received_at", "stage", "reason", "detail", "kind", "method", "host", "path", "ip", "user_agent",
    "edge", "raw", "src_topic", "src_partition", "src_offset",
)
DEAD_LETTER_COUNT_COLUMNS = ("minute", "stage", "reason", "edge", "kind", "letters", "stored", "src_topic",
                             "src_partition", "src_offset")
SEND_COLUMNS = ("tenant", "campaign", "variant", "message_id", "recipient_id", "recipient_key", "sent_at",
                "mailbox_domain", "links", "src_topic", "src_partition", "src_offset")
UNSUBSCRIBE_COLUMNS = ("tenant", "recipient_hash", "campaign", "message_id", "ts", "src_topic", "src_partition",
                       "src_offset")
CONVERSION_COLUMNS = ("tenant", "idempotency_key", "ts", "campaign", "variant", "message_id", "recipient_id", "link",
                      "click_id", "click_hit_id", "value", "currency", "src_topic", "src_partition", "src_offset")


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
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...  # Kafka allows a header without a value


@dataclass(slots=True)
class BatchOutput:
    """The result of one batch: rows per table (the processor's own dead letters among them, written with
    the batch that made them), and the classified events to publish before its insert."""

    events: TableRows = field(default_factory=lambda: TableRows("events", EVENT_COLUMNS))
    dead_letters: TableRows = field(default_factory=lambda: TableRows("dead_letters", DEAD_LETTER_COLUMNS))
    dead_letter_counts: TableRows = field(
        default_factory=lambda: TableRows("dead_letter_counts", DEAD_LETTER_COUNT_COLUMNS))
    sends: TableRows = field(default_factory=lambda: TableRows("sends", SEND_COLUMNS))
    conversions: TableRows = field(default_factory=lambda: TableRows("conversions", CONVERSION_COLUMNS))
    unsubscribes: TableRows = field(default_factory=lambda: TableRows("unsubscribes", UNSUBSCRIBE_COLUMNS))
    deliveries: TableRows = field(default_factory=lambda: TableRows("deliveries", DELIVERY_COLUMNS))
    site_visits: TableRows = field(default_factory=lambda: TableRows("site_visits", SITE_VISIT_COLUMNS))
    consents: TableRows = field(default_factory=lambda: anonymous.tables()[0])
    aggregate_sends: TableRows = field(default_factory=lambda: anonymous.tables()[1])
    classified: list[Record] = field(default_factory=list)  # for events.classified, published before the insert
    classified_partitions: list[int] = field(default_factory=list)  # the source partition of each

    def tables(self) -> list[TableRows]:
        return [self.events, self.dead_letters, self.dead_letter_counts, self.sends, self.conversions,
                self.unsubscribes, self.deliveries, self.site_visits, self.consents, self.aggregate_sends]


VERIFIED_CACHE = 50_000
MAX_EDGE_REASONS = 64  # the edge has about ten; hits.dlq records are an input like any other
RECENT_SENDS = 50_000  # at least; and at least two of the runner's largest batches (see HitProcessor)
SAMPLED_MINUTES = 100_000  # (stage, reason, edge, minute) keys whose stored letters are remembered
# Bodies stored per (stage, reason, edge, hour): this many minutes' samples. A flood fills a minute's
# samples at once; junk trickling a few letters a minute would fill every minute's, and be kept whole
# (100,000 letters over a day: 13.6 MB, as many as unsampled). With the hour's budget that day keeps
# 24 x 6 x samples bodies; every letter is still counted in dead_letter_counts.
HOUR_BUDGET_MINUTES = 6
LetterKey = tuple[str, str, str, int]  # stage, reason, edge, minute (epoch seconds)


class RecentIds:
    """Ids seen lately, to drop a hit (or a conversion) that reaches the processor twice (a producer
    retry, an edge replaying its spool, a client retrying a POST) before it is counted. Bounded:
    `capacity` ids, oldest forgotten first (about 120 bytes an id: 200,000 ids ≈ 24 MB). Older repeats
    are caught by the ClickHouse lookups the runner does for re-sent hits and for conversions."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[object, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, hit_id: object) -> bool:
        """True if hit_id was seen before; records it otherwise."""
        if hit_id in self._ids:
            return True
        self.add(hit_id)
        return False

    def __contains__(self, hit_id: object) -> bool:
        return hit_id in self._ids

    def add(self, hit_id: object) -> None:
        self._ids[hit_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class HitProcessor:
    """Turns a batch of records from any of its topics into rows: hits (decoded, re-verified,
    classified), dead letters, sends, conversions, unsubscribes and delivery events.

    Hits reach hits.raw only after the edge verified them; the processor checks again because Kafka
    is an input like any other: a record that fails is a dead letter, never a counted hit. Expiry is
    not re-checked (the edge judged it at receive time, and a replay hours later must agree).
    """

    def __init__(self, tenants: TenantRegistry | Keyring, classifier: Classifier, topics: Topics,
                 truncate_ips: bool = True, do_not_track: frozenset[str] = frozenset(),
                 publish_classified: bool = True, batch_max_records: int = 20_000,
                 dead_letter_samples: int = 10, privacy_key: bytes | None = None,
                 site_visit_org: bool = False, tracking: str = "individual",
                 unknown_consent: str = "individual") -> None:
        """`tenants`: host → tenant → keys (a bare Keyring means one default tenant). `truncate_ips`:
        store IPv4 /24 and IPv6 /48 only (enrichment has already used the full address).
        `do_not_track`: recipient hashes whose hits are dropped before anything is stored.
        `batch_max_records`: the runner's largest batch. The hit ids, conversion keys and sends this
        processor remembers cover at least two such batches: the runners look a batch up in ClickHouse
        while the previous one is still being inserted, and memory answers for that one.
        `dead_letter_samples`: letter bodies stored per stage, reason, edge and minute; every letter is
        counted (dead_letter_counts, and the metric), the rest are not stored: junk costs a count.
        `privacy_key`: the key of the recipient hashes ClickHouse keeps (`erasures`, sends.recipient_key);
        by default schemas.privacy.recipient_key(tenants). `site_visit_org`: tenant ""'s site visits
        without a click id keep the visitor's organisation (other tenants: their own setting). `tracking`
        "aggregate": the anonymous mode (processors.anonymous): no row keeps a message or recipient id.
        `unknown_consent`: what a consent recorded as unknown means for tenants that do not say
        (schemas.tenants.Tenant.unknown_means)."""
        self._tenants = tenants if isinstance(tenants, TenantRegistry) else TenantRegistry({}, tenants)
        self._classifier = classifier
        self._keyed_hash = KeyedRecipientHash(privacy_key if privacy_key is not None else recipient_key(self._tenants))
        self._topics = topics
        self._truncate = truncate_ips
        self._dnt = do_not_track
        self._publish_classified = publish_classified
        self._recent = RecentIds(max(200_000, 2 * batch_max_records))
        self._recent_conversions = RecentIds(max(50_000, 2 * batch_max_records))
        self._deliveries = DeliveryEvents(max(50_000, 2 * batch_max_records))  # processors.deliveries
        self._sends_capacity = max(RECENT_SENDS, 2 * batch_max_records)
        # Sends processed lately, (tenant, message) → (campaign, variant, recipient): a conversion naming
        # only its message is attributed from here when its send is in the same batch or the one still
        # being inserted, which ClickHouse cannot answer for yet (a replay from the start reads sends
        # and conversions together). FIFO-bounded (~400 bytes an entry: 50,000 ≈ 20 MB).
        self._recent_sends: OrderedDict[tuple[str, str], tuple[str, str, str]] = OrderedDict()
        # Verified tokens: hits of one message share a pixel token and a few click tokens, so most
        # re-checks are dictionary hits. FIFO-bounded (about 1 KB an entry: 50,000 ≈ 50 MB at most).
        # An OrderedDict, not a dict: deleting a plain dict's oldest key again and again makes
        # next(iter(d)) walk the growing run of deleted slots (quadratic once the cache is full).
        self._verified: OrderedDict[tuple[str, str, str], TokenPayload] = OrderedDict()
        # Verified click ids of visits, by (click id, host): a visitor's pages share one. Bounded the same way.
        self._click_refs: OrderedDict[tuple[str, str], ClickRef] = OrderedDict()
        self._site_visit_org = site_visit_org
        # Recipients erased by `pixeltrack forget` (their keyed hashes, as in `erasures`): what still arrives
        # for them (Kafka's backlog, an edge's spool, later opens) is dropped like a do-not-track hit,
        # or an erasure would be undone (and a late revision's -1 row drive an aggregate negative).
        self._erased: set[str] = set()
        self._hit_counters: dict[tuple[str, str], Any] = {}
        self._hit_counts: dict[tuple[str, str], int] = {}  # this batch's decisions by (kind, verdict)
        self._edge_reasons: set[str] = set()  # the edge's dead-letter reasons counted under their own label
        self._samples = dead_letter_samples
        # Bodies stored so far per (stage, reason, edge, minute), FIFO-bounded: a key forgotten and seen
        # again stores at most `dead_letter_samples` more. Letters come in received order, give or take
        # the edges' spools, so old minutes leave first.
        self._sampled: OrderedDict[LetterKey, int] = OrderedDict()
        self._sampled_hours: OrderedDict[LetterKey, int] = OrderedDict()  # the same per hour
        # This batch's letters counted per (minute, stage, reason, edge, kind, topic, partition):
        # [letters, stored, highest offset].
        self._letter_counts: dict[tuple[int, str, str, str, str, str, int], list[int]] = {}
        self.repeats_dropped = 0
        self._anonymous = tracking == "aggregate"
        self._unknown = unknown_consent
        # (tenant, recipient) whose consent is withdrawn (consents_changed): what still comes from the
        # individual tokens of emails sent before is counted as if it came from campaign-level ones.
        self._withdrawn: set[tuple[str, str]] = set()

    def forget_recipients(self, hashes: Iterable[str]) -> None:
        """Drops from now on whatever names these recipients (keyed_recipient_hash values with this
        processor's privacy key, as `erasures` holds them)."""
        self._erased.update(hashes)

    def consents_changed(self, changes: Iterable[tuple[str, str, str]]) -> None:
        """(tenant, recipient, state now) from the consents table (processors.step.ConsentWatch): from now on
        a recipient whose consent does not allow individual tracking is counted in aggregate only."""
        for tenant, recipient, state in changes:
            if tracks_individually(state, self._tenants.unknown_means(tenant, self._unknown)):
                self._withdrawn.discard((tenant, recipient))
            else:
                self._withdrawn.add((tenant, recipient))

    def _anonymous_for(self, tenant: str, recipient: str) -> bool:
        """Whether a record of this recipient is stored without message or recipient id."""
        return self._anonymous or (bool(self._withdrawn) and (tenant, recipient) in self._withdrawn)

    def recipient_hash(self, tenant: str, recipient: str) -> str:
        """The recipient's keyed hash, as `forget` records it in `erasures`."""
        return self._keyed_hash(tenant, recipient)

    def erased(self, tenant: str, recipient: str) -> bool:
        """Whether `pixeltrack forget` erased the recipient (as far as this processor was told)."""
        return bool(self._erased) and self._keyed_hash(tenant, recipient) in self._erased

    def _suppressed(self, tenant: str, recipient: str) -> bool:
        """A recipient on the do-not-track list (plain hashes: the operator's file) or erased (keyed
        hashes): nothing of theirs is stored."""
        if not (self._dnt or self._erased) or not recipient:
            return False
        if self._dnt and recipient_hash(tenant, recipient) in self._dnt:
            return True
        return bool(self._erased) and self._keyed_hash(tenant, recipient) in self._erased

    def lookups(self, records: Sequence[SourceRecord]) -> Lookups:
        """What to ask ClickHouse before `process`: re-sent hit ids, conversion keys, and messages whose
        conversions need their campaign and variant. Cheap: only replayed hits and conversions are read."""
        out = Lookups()
        for r in records:
            if r.topic == self._topics.hits_raw and r.headers and any(k == REPLAY_HEADER for k, _ in r.headers):
                try:
                    out.hit_ids.append(str(orjson.loads(r.value or b"{}")["id"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # `process` turns it into a dead letter
            elif r.topic == self._topics.conversions:
                try:
                    c = Conversion.decode(r.value or b"")
                except (ValueError, TypeError):
                    continue
                out.conversion_keys.append((c.tenant, c.idempotency_key))
                if c.message and not (c.campaign and c.variant and c.recipient):
                    # Asked even when remembered: this batch's own sends may push it out of memory.
                    out.messages.append((c.tenant, c.message))
            elif r.topic == self._topics.deliveries or r.topic == self._topics.unsubscribes:
                try:
                    d = (Delivery.decode(r.value or b"") if r.topic == self._topics.deliveries
                         else from_unsubscribe(Unsubscribe.decode(r.value or b"")))
                except (ValueError, TypeError):
                    continue
                if d is None:
                    continue
                out.delivery_keys.append(key_of(d))
                if DeliveryEvents.needs_send(d):
                    out.messages.append((d.tenant, d.message))
        return out

    def process(self, records: Sequence[SourceRecord], ctx: BatchContext | None = None) -> BatchOutput:
        """Rows for a batch; `ctx` holds the answers to `lookups(records)`. Conversions and deliveries come
        last, after every send of the batch, whatever the records' order (Kafka's batches come topic by
        topic)."""
        ctx = ctx or BatchContext()
        out = BatchOutput()
        started = time.perf_counter()
        t = self._topics
        hits_raw, stored = t.hits_raw, ctx.stored_hit_ids  # (a property: read once, not per record)
        conversions: list[SourceRecord] = []
        deliveries: list[SourceRecord] = []
        unsubscribed: list[tuple[Delivery, SourceRecord]] = []
        try:
            for record in records:
                if record.topic == hits_raw:
                    self._hit(out, record, stored)
                elif record.topic == t.hits_dlq:
                    self._dead_letter_row(out, record)
                elif record.topic == t.sends:
                    self._send(out, record)
                elif record.topic == t.conversions:
                    conversions.append(record)
                elif record.topic == t.unsubscribes:
                    self._unsubscribe(out, record, unsubscribed)
                elif record.topic == t.deliveries:
                    deliveries.append(record)
                elif record.topic == t.consents:
                    self._consent(out, record)
                elif record.topic == t.aggregate_sends:
                    self._aggregate_sends(out, record)
            for record in conversions:
                self._conversion(out, record, ctx)
            for record in deliveries:
                self._delivery(out, record, ctx)
            for d, record in unsubscribed:
                self._delivery_row(out, d, record, ctx)
        finally:
            self._count_hits()
            self._count_letters(out)
        metrics.BATCH_SECONDS.labels("classify").observe(time.perf_counter() - started)
        return out

    def _dead_letter(self, out: BatchOutput, record: SourceRecord, reason: str, detail: str) -> None:
        value = record.value or b""
        fields: dict[str, str] = {}
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict:
            # A record that decodes keeps its fields in the letter's columns (the IP truncated when the
            # row is written, and the path, where `forget` finds a token), and `raw` keeps no more of
            # an address than the columns do: the IP truncated, X-Forwarded-For left out.
            for name in ("kind", "method", "host", "path", "ip", "ua", "edge"):
                if type(obj.get(name)) is str:
                    fields[name] = obj[name][:MAX_PATH]
            if "ip" in fields and self._truncate:
                obj["ip"] = truncate_ip(fields["ip"])
            if type(obj.get("headers")) is dict:
                obj["headers"].pop("x-forwarded-for", None)
            try:
                value = orjson.dumps(obj)
            except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads 1024 levels, writes 254)
                value = b'{"raw": "nested too deeply to keep"}'
        if (self._dnt or self._erased) and self._letter_suppressed(fields.get("path", ""), value.decode(
                "utf-8", "backslashreplace")):
            # Of an erased or do-not-track recipient: not even a letter (see _dead_letter_row).
            metrics.DO_NOT_TRACK.inc()
            return
        letter = DeadLetter(id=f"{record.topic}:{record.partition}:{record.offset}", received_at=time.time(),
                            stage="processor", reason=reason, detail=detail[:200],
                            raw=value[:512].decode("utf-8", "backslashreplace"), kind=fields.get("kind", ""),
                            method=fields.get("method", ""), host=fields.get("host", ""), path=fields.get("path", ""),
                            ip=fields.get("ip", ""), ua=fields.get("ua", ""), edge=fields.get("edge", ""))
        metrics.DEAD_LETTERS.labels("processor", reason).inc()
        # Written with this batch, not sent round through hits.dlq: the letter's source position is its
        # record's, so it is covered by the batch's dedup token and by ClickHouse's positions like the
        # record's other rows. Sampled and counted as the letters read from hits.dlq are.
        self._letter_row(out, letter, record)

    def _hit(self, out: BatchOutput, record: SourceRecord, stored_ids: Set[str]) -> None:
        try:
            raw = RawHit.decode(record.value or b"")
            if raw.kind in SITE_KINDS:
                self._site_hit(out, record, raw, stored_ids)
                return
            payload = self._verified.get((raw.token, raw.kind, raw.host))
            if payload is None:
                payload = self._verify(raw)
                if len(self._verified) >= VERIFIED_CACHE:
                    self._verified.popitem(last=False)
                self._verified[(raw.token, raw.kind, raw.host)] = payload
        except (ValueError, TokenError) as exc:
            self._dead_letter(out, record, exc.reason if isinstance(exc, TokenError) else "undecodable", str(exc))
            return
        if (self._dnt or self._erased) and self._suppressed(payload.tenant, payload.recipient):
            # Before any other outcome: a suppressed recipient's hit is dropped, never a letter.
            metrics.DO_NOT_TRACK.inc()
            return
        sent_at = payload.sent_at / 1000.0
        if not ((EARLIEST_TS <= sent_at <= LATEST_TS or (sent_at == 0.0 and payload.aggregate))
                and EARLIEST_TS <= raw.received_at <= LATEST_TS):
            # ClickHouse would refuse the whole batch for it (see schemas.timefmt).
            self._dead_letter(out, record, "bad_timestamp",
                              f"sent_at {payload.sent_at!r} ms, received_at {raw.received_at!r}")
            return
        if raw.id in stored_ids or self._recent.seen(raw.id):
            self.repeats_dropped += 1
            metrics.REPEATS_DROPPED.inc()
            return
        message, recipient = payload.message, payload.recipient
        if self._withdrawn and (payload.tenant, recipient) in self._withdrawn:
            # Consent withdrawn since this email was sent: the hit is judged on its own and counted like a
            # campaign-level one (no message, no recipient), in the campaign's aggregates only.
            message = recipient = ""
        # Positional, in Hit's field order: keyword arguments make this call three times dearer
        # (2.7 against 0.9 us), and it runs for every hit.
        kind, flags = raw.kind, payload.flags
        if kind == "image":  # one of the email's own images: an open, its image in link_url (FLAG_IMAGE)
            kind, flags = "open", flags | FLAG_IMAGE
        hit = Hit(raw.id, raw.received_at, kind, raw.method, raw.ip, raw.ua, message, recipient,
                  payload.campaign, sent_at, raw.headers, payload.url,
                  payload.honeypot, payload.variant, payload.tenant, payload.link_id,
                  flags, raw.host, raw.edge, raw.origin, raw.origin_machine)
        for decision in self._classifier.feed(hit):
            self._event_rows(out, decision, record)

    def _site_hit(self, out: BatchOutput, record: SourceRecord, raw: RawHit, stored_ids: Set[str]) -> None:
        """A beacon of the site script (processors/site.py); TokenError for a click id or host not genuine."""
        ref: ClickRef | None = None
        if raw.kind == VISIT:
            ref = self._click_refs.get((raw.token, raw.host))
            if ref is None:
                ref = self._tenants.verify_click_id(raw.host, raw.token)
                if len(self._click_refs) >= VERIFIED_CACHE:
                    self._click_refs.popitem(last=False)
                self._click_refs[(raw.token, raw.host)] = ref
            if (self._dnt or self._erased) and self._suppressed(ref.tenant, ref.recipient):
                metrics.DO_NOT_TRACK.inc()
                return
            tenant = ref.tenant
        else:
            found = self._tenants.for_host(raw.host)
            if found is None:
                raise TokenError("unknown_host", raw.host[:100])
            tenant = found[0]
        if not EARLIEST_TS <= raw.received_at <= LATEST_TS:
            self._dead_letter(out, record, "bad_timestamp", f"received_at {raw.received_at!r}")
            return
        if raw.id in stored_ids or self._recent.seen(raw.id):
            self.repeats_dropped += 1
            metrics.REPEATS_DROPPED.inc()
            return
        if ref is not None:
            for decision in self._classifier.feed(visit_hit(raw, ref)):
                self._event_rows(out, decision, record)
            return
        verdict, e = self._classifier.judge(site_visit_hit(raw, tenant))
        org = self._tenants.site_visit_org(tenant, self._site_visit_org)
        out.site_visits.rows.append((tenant, raw.id, raw.received_at, site_visit_site(raw), verdict.verdict,
                                     verdict.source, list(verdict.reasons), e.asn if org else 0,
                                     e.as_org if org else "", record.topic, record.partition, record.offset))
        key = (raw.kind, verdict.verdict)
        self._hit_counts[key] = self._hit_counts.get(key, 0) + 1

    def _verify(self, raw: RawHit) -> TokenPayload:
        """The token's payload, checked as at the edge (TenantRegistry.verify_token) without its expiry:
        the edge accepted the hit when it came, however late it is processed."""
        return self._tenants.verify_token(raw.host, raw.token, raw.kind)  # type: ignore[arg-type]

    def _send(self, out: BatchOutput, record: SourceRecord) -> None:
        try:
            s = Send.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, "undecodable_send", str(exc))
            return
        # Remembered even when not stored: a conversion naming the message is then known to be the
        # suppressed recipient's, and dropped too rather than dead-lettered.
        sends = self._recent_sends
        sends[(s.tenant, s.message)] = (s.campaign, s.variant, s.recipient)
        if len(sends) > self._sends_capacity:
            sends.popitem(last=False)
        if self._suppressed(s.tenant, s.recipient):
            metrics.DO_NOT_TRACK.inc()
            return
        if self._anonymous_for(s.tenant, s.recipient):
            # A count of its campaign's aggregate sends; a repeat seen lately (an API retry) counts once.
            if not self._recent.seen(("send", s.tenant, s.message)):
                out.aggregate_sends.rows.append(anonymous.send_as_aggregate(s, record.topic, record.partition,
                                                                            record.offset))
            return
        out.sends.rows.append((s.tenant, s.campaign, s.variant, s.message, s.recipient,
                               self._keyed_hash(s.tenant, s.recipient), s.sent_at,
                               s.mailbox_domain, s.links, record.topic, record.partition, record.offset))

    def _unsubscribe(self, out: BatchOutput, record: SourceRecord,
                     unsubscribed: list[tuple[Delivery, SourceRecord]]) -> None:
        """Its unsubscribes row, and (after the batch's sends) its message's `unsubscribed` event."""
        try:
            u = Unsubscribe.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, "undecodable_unsubscribe", str(exc))
            return
        out.unsubscribes.rows.append((u.tenant, u.recipient_hash, u.campaign, "" if self._anonymous else u.message,
                                      u.ts, record.topic,
                                      record.partition, record.offset))
        d = from_unsubscribe(u)
        if d is not None:
            unsubscribed.append((d, record))

    def _consent(self, out: BatchOutput, record: SourceRecord) -> None:
        try:
            c = Consent.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, "undecodable_consent", str(exc))
            return
        if self._erased and self._keyed_hash(c.tenant, c.recipient) in self._erased:
            return  # of a recipient `forget` erased: a backlog must not bring their history back
        out.consents.rows.append(anonymous.consent_row(c, record.topic, record.partition, record.offset))

    def _aggregate_sends(self, out: BatchOutput, record: SourceRecord) -> None:
        try:
            a = AggregateSends.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, "undecodable_aggregate_sends", str(exc))
            return
        out.aggregate_sends.rows.append(anonymous.aggregate_send_row(a, record.topic, record.partition,
                                                                     record.offset))

    def _conversion(self, out: BatchOutput, record: SourceRecord, ctx: BatchContext) -> None:
        try:
            c = Conversion.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, "undecodable_conversion", str(exc))
            return
        key = (c.tenant, c.idempotency_key)
        if key in ctx.stored_conversion_keys or key in self._recent_conversions:
            metrics.REPEATS_DROPPED.inc()
            return
        campaign, variant, recipient = c.campaign, c.variant, c.recipient
        if c.message and not (campaign and variant and recipient):
            known = ctx.messages.get((c.tenant, c.message)) or self._recent_sends.get((c.tenant, c.message))
            if known is not None:
                campaign, variant, recipient = campaign or known[0], variant or known[1], recipient or known[2]
        if not campaign:
            self._dead_letter(out, record, "unattributed_conversion",
                              f"message {c.message!r} has no registered send and no campaign was given")
            return
        if self._suppressed(c.tenant, recipient):
            metrics.DO_NOT_TRACK.inc()
            return
        # Remembered once it has a row, not when it is dead-lettered: a conversion dead-lettered for want
        # of its send may be posted again (same key) once the send is registered.
        self._recent_conversions.add(key)
        message, click_id = c.message, c.click_id
        if self._anonymous_for(c.tenant, recipient):
            message = recipient = click_id = ""  # the click id is a signed token naming them
        out.conversions.rows.append((c.tenant, c.idempotency_key, c.ts, campaign, variant, message,
                                     recipient, c.link, click_id, c.click_hit_id, c.value, c.currency, record.topic,
                                     record.partition, record.offset))

    def _delivery(self, out: BatchOutput, record: SourceRecord, ctx: BatchContext) -> None:
        """A delivery event's row (processors.deliveries), a dead letter, or nothing for a repeat."""
        try:
            d = Delivery.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            self._dead_letter(out, record, UNDECODABLE, str(exc))
            return
        self._delivery_row(out, d, record, ctx)

    def _delivery_row(self, out: BatchOutput, d: Delivery, record: SourceRecord, ctx: BatchContext) -> None:
        events = self._deliveries
        if events.seen(d, ctx.stored_delivery_keys):
            metrics.REPEATS_DROPPED.inc()
            return
        got = events.attribute(d, ctx.messages, self._recent_sends)
        if got is None:
            self._dead_letter(out, record, UNATTRIBUTED,
                              f"message {d.message!r} has no registered send and no campaign was given")
            return
        if self._suppressed(d.tenant, got.recipient):
            metrics.DO_NOT_TRACK.inc()
            return
        events.written(d)
        row = got.row(record.topic, record.partition, record.offset)
        if self._anonymous_for(d.tenant, got.recipient):
            row = anonymous.without_ids(row, DELIVERY_COLUMNS)  # counted per campaign only (no message row)
        out.deliveries.rows.append(row)

    def _event_rows(self, out: BatchOutput, d: Decision, record: SourceRecord) -> None:
        ip = truncate_ip(d.hit.ip) if self._truncate else d.hit.ip
        # Anonymous: the classifier saw the message (in memory, for its settle window), the row does not.
        anon = self._anonymous or not d.hit.message
        if d.previous is not None:
            out.events.rows.append(self._row(d, d.previous_enrichment or d.enrichment, record, d.previous,
                                             d.revision - 1, -1, ip, anon))
            metrics.REVISIONS.inc()
        out.events.rows.append(self._row(d, d.enrichment, record, d.verdict, d.revision, 1, ip, anon))
        key = (d.hit.kind, d.verdict.verdict)
        counts = self._hit_counts
        counts[key] = counts.get(key, 0) + 1
        if not self._publish_classified or anon:
            return  # triggers act on a message's recipient: an anonymous hit has none
        h, v = d.hit, d.verdict
        out.classified_partitions.append(record.partition)
        out.classified.append(Record(self._topics.events_classified, h.message.encode(), ClassifiedEvent(
            h.tenant, h.id, h.kind, h.ts, h.sent_at, h.campaign, h.variant, h.message, h.recipient, h.link,
            h.link_id, h.link_flags, v.verdict, v.source, _reasons(v, h), d.revision).encode()))

    def _count_hits(self) -> None:
        """Adds a batch's decisions to pixeltrack_hits_total: once per (kind, verdict) a batch, not per
        hit (a Counter's increment takes a lock)."""
        for key, n in self._hit_counts.items():
            counter = self._hit_counters.get(key)
            if counter is None:
                counter = self._hit_counters[key] = metrics.HITS.labels(*key)
            counter.inc(n)
        self._hit_counts.clear()

    @staticmethod
    def _row(d: Decision, e: Enrichment, record: SourceRecord, v: Verdict, revision: int, sign: int,
             ip: str, anon: bool = False) -> tuple[object, ...]:
        h = d.hit
        # `anon`: no message, recipient nor exact send time (one would tell a message's hits apart).
        sent_at, message, recipient = (hour_of(h.sent_at), "", "") if anon else (h.sent_at, h.message, h.recipient)
        # Times are epoch seconds: the writer sends rows as JSON, which DateTime64(3) columns read as such.
        # The source position is the record being processed now: a revision row belongs to the batch
        # that caused it, so its position and dedup token are those of that batch.
        return (h.tenant, h.id, h.kind, h.ts, sent_at, h.campaign, h.variant,
                message, recipient, h.link, h.link_id, h.link_flags, h.method, h.host, ip, h.ua, h.edge,
                v.verdict, v.source, list(_reasons(v, h)), e.browser, e.os, e.device, e.mail_client, e.country,
                e.city, e.asn, e.as_org, revision, sign, record.topic, record.partition, record.offset,
                h.click_hit_id, h.origin)

    def _dead_letter_row(self, out: BatchOutput, record: SourceRecord) -> None:
        try:
            d = DeadLetter.decode(record.value or b"")
        except (ValueError, TypeError) as exc:
            d = DeadLetter(id=f"{record.topic}:{record.partition}:{record.offset}", received_at=time.time(),
                           stage="processor", reason="undecodable_dead_letter", detail=str(exc)[:200],
                           raw=(record.value or b"")[:512].decode("utf-8", "backslashreplace"))
        if (self._dnt or self._erased) and self._letter_suppressed(d.path, d.raw, d.host):
            # A letter naming an erased or do-not-track recipient (a fetch of their expired or wrong-kind
            # token, a record of theirs that would not decode): neither stored nor counted.
            metrics.DO_NOT_TRACK.inc()
            return
        if d.stage == "edge":
            # The reason is the record's to say: a metric label takes the first few dozen, then "other".
            reason = d.reason
            if reason not in self._edge_reasons:
                if len(self._edge_reasons) >= MAX_EDGE_REASONS:
                    reason = "other"
                else:
                    self._edge_reasons.add(reason)
            metrics.DEAD_LETTERS.labels("edge", reason).inc()
        self._letter_row(out, d, record)

    def _letter_row(self, out: BatchOutput, d: DeadLetter, record: SourceRecord) -> None:
        """Counts a letter in dead_letter_counts and stores its body when its (stage, reason, edge, minute)
        has stored fewer than `dead_letter_samples` and its hour fewer than HOUR_BUDGET_MINUTES times that;
        its source position is `record`'s."""
        minute = int(d.received_at // 60) * 60
        key: LetterKey = (d.stage, d.reason, d.edge, minute)
        hour_key: LetterKey = (d.stage, d.reason, d.edge, minute - minute % 3600)
        sampled = self._sampled.get(key, 0)
        sampled_hour = self._sampled_hours.get(hour_key, 0)
        stored = sampled < self._samples and sampled_hour < self._samples * HOUR_BUDGET_MINUTES
        count_key = (minute, d.stage, d.reason, d.edge, d.kind, record.topic, record.partition)
        counts = self._letter_counts.get(count_key)
        if counts is None:
            counts = self._letter_counts[count_key] = [0, 0, record.offset]
        counts[0] += 1
        counts[2] = max(counts[2], record.offset)
        if not stored:
            return
        if self._anonymous:
            d = anonymous.redact_letter(d)
        counts[1] += 1
        self._sampled[key] = sampled + 1
        self._sampled_hours[hour_key] = sampled_hour + 1
        if len(self._sampled) > SAMPLED_MINUTES:
            self._sampled.popitem(last=False)
        if len(self._sampled_hours) > SAMPLED_MINUTES:
            self._sampled_hours.popitem(last=False)
        out.dead_letters.rows.append((
            d.id, d.received_at, d.stage, d.reason, d.detail, d.kind, d.method, d.host, d.path,
            truncate_ip(d.ip) if self._truncate else d.ip, d.ua, d.edge, d.raw, record.topic, record.partition,
            record.offset))

    def _count_letters(self, out: BatchOutput) -> None:
        """The batch's letter counts as dead_letter_counts rows (summed by the table as parts merge)."""
        rows = out.dead_letter_counts.rows
        for (minute, stage, reason, edge, kind, topic, partition), (letters, stored, offset) in \
                self._letter_counts.items():
            rows.append((minute, stage, reason, edge, kind, letters, stored, topic, partition, offset))
        self._letter_counts.clear()

    def _letter_suppressed(self, path: str, raw: str, host: str = "") -> bool:
        """Whether a letter names an erased or do-not-track recipient, by schemas.privacy.letter_recipients
        (the rule `forget` deletes letters by); a word of the path is tried as a recipient of the default
        tenant and of the host's. Only asked when someone is suppressed; letters are not the hot path."""
        host_tenant = self._tenants.for_host(host)
        word_tenants = ("", host_tenant[0]) if host_tenant is not None else ("",)
        for tenant, recipient in letter_recipients(path, raw, word_tenants):
            if self._suppressed(tenant, recipient):
                return True
        return False


def _reasons(v: Verdict, h: Hit) -> tuple[str, ...]:
    """The verdict's reasons, and the email platform's own machine flag when it reported one (kept beside
    pixeltrack's verdict, which it does not decide: ingest/esp)."""
    return (*v.reasons, R_PLATFORM_MACHINE) if h.origin_machine else v.reasons

