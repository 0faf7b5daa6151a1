"""The edge's domain: what a pixel, click, download, image, unsubscribe or preferences fetch means, whichever
front end parsed it.

Both front ends (the aiohttp handlers in ingest/app.py and the fast path in ingest/fastpath.py) turn a
request into one RequestFacts and hand it to an Edge method; the Edge checks the token, suppresses
do-not-track recipients, encodes the RawHit or the dead letter and queues it, and says what to answer.
Nothing here knows HTTP beyond those facts, so the two front ends cannot differ in what they record.

Longer than 400 lines because the Edge is one class whose every kind of fetch (pixel, click, download, image,
unsubscribe, preferences) goes through the same token check, do-not-track suppression, journal and dead-letter
path; the answers' pages are ingest/pages.py's, the object store's signed URLs ingest/objectstore.py's.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, NamedTuple

import orjson

from ingest import metrics
from ingest.client_ip import ClientIpResolver
from ingest.forwarder import Forwarder
from schemas.consents import Consent
from schemas.privacy import claimed_recipients, keyed_recipient_hash, recipient_hash, recipient_key
from schemas.records import KEPT_HEADERS, MAX_HEADER, MAX_HOST, MAX_PATH, MAX_UA, RAW_HIT_VERSION, DeadLetter, Record
from schemas.sends import Unsubscribe
from schemas.tenants import TenantRegistry
from schemas.tokens import (
    FLAG_HONEYPOT,
    FLAG_NO_CLICK_ID,
    FLAG_UNSUBSCRIBE,
    MAX_TOKEN_CHARS,
    ClickRef,
    Keyring,
    PreferencesRef,
    TokenError,
    TokenKind,
    TokenPayload,
    mint_click_ref,
    verify_preferences,
)
from schemas.topics import Topics

log = logging.getLogger(__name__)

KEPT = frozenset(KEPT_HEADERS)
# A token is base64url and the dots between kid, payload and tag, nothing else.
_token_shape = re.compile(r"[A-Za-z0-9_.-]+").fullmatch


class RequestFacts(NamedTuple):
    """What the edge reads of one request, the same from either front end (a differential test holds
    them to it: tests/unit/ingest/test_edge_properties.py). Text is as aiohttp decodes it: UTF-8, bytes
    that are not as surrogate escapes."""

    method: str
    target: str  # the raw request target, path and query (aiohttp's raw_path)
    host: str  # the Host header ("" without one)
    peer: str | None  # the connection's address
    forwarded_for: str | None  # every X-Forwarded-For line, folded (forwarded_for)
    user_agent: str  # the first User-Agent, uncut ("" without one)
    headers: dict[str, str]  # kept_headers: what a RawHit keeps
    received_at: float  # time.time() when the head was read


def kept_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers a RawHit keeps (KEPT_HEADERS), by lower-case name: the first of each, cut to MAX_HEADER.
    A request has a handful of headers; KEPT_HEADERS has a dozen."""
    kept: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in KEPT and key not in kept:
            kept[key] = value[:MAX_HEADER]
    return kept


def forwarded_for(headers: Any) -> str | None:
    """Every X-Forwarded-For line of a multidict, folded: a client can send its own line first, and a
    proxy appends to the last one, so reading only the first would let the client choose its address."""
    lines = headers.getall("X-Forwarded-For", None)
    return ",".join(lines) if lines else None


def check_token(tenants: TenantRegistry, host: str, token: str, kind: TokenKind, now_ms: int | None) -> TokenPayload:
    """The payload of a genuine token of `kind` fetched on `host` (TenantRegistry.verify_token: the host's
    tenant's keys, naming that tenant; expired at `now_ms`, None: not checked), or TokenError. Junk is turned away
    before any decoding: anything too long or not plain base64url-and-dots costs a length check and one regex
    match, so a token that is not ASCII (a surrogate-escaped byte from the request line included) never reaches
    the HMAC. Whatever else goes wrong in checking a token makes it malformed, never an error page."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("too_long", f"{len(token)} characters")
    if _token_shape(token) is None:
        raise TokenError("malformed", "characters outside base64url")
    try:
        return tenants.verify_token(host, token, kind, now_ms)
    except TokenError:
        raise
    except Exception as exc:  # e.g. a payload of an unexpected shape
        raise TokenError("malformed", type(exc).__name__) from None


def _clean(text: str) -> str:
    # aiohttp hands undecodable request bytes over as surrogate escapes, which JSON cannot carry.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def raw_hit_json(hit_id: str, received_at: float, kind: str, method: str, host: str, path: str, token: str,
                 ip: str, ua: str, edge: str, headers: dict[str, str]) -> bytes:
    """RawHit(...).encode(), byte for byte, without building the dataclass first: orjson encodes a dict
    several times faster than a slots dataclass, and this runs for every hit. The keys are RawHit's
    fields in order (test_records_contract pins the equality, so a new field fails a test here)."""
    fields = {"id": hit_id, "received_at": received_at, "kind": kind, "method": method, "host": host,
              "path": path, "token": token, "ip": ip, "ua": ua, "edge": edge, "headers": headers,
              "v": RAW_HIT_VERSION}
    try:
        return compact(orjson.dumps(fields))
    except orjson.JSONEncodeError:  # surrogate escapes of undecodable request bytes
        fields["headers"] = {k: _clean(v) for k, v in headers.items()}
        for key in ("host", "path", "ua"):
            fields[key] = _clean(fields[key])  # type: ignore[arg-type]
        return compact(orjson.dumps(fields))


def compact(data: bytes) -> bytes:
    """A right-sized copy: orjson hands back its whole output buffer (4-8 KiB for a 650-byte hit), and a
    record waiting in the queue through a slow publish would hold all of it (measured: 4 KiB a hit)."""
    return bytes(memoryview(data))


def with_query_param(url: str, name: str, value: str) -> str:
    """`url` with name=value added to its query, before any #fragment; the rest left as signed."""
    head, hash_, fragment = url.partition("#")
    sep = "&" if "?" in head else "?"
    return f"{head}{sep}{name}={value}{hash_}{fragment}"


def _safe_destination(url: str) -> bool:
    # mint() allows only http(s); a control character would make the header unsendable (an error
    # page), so such a destination is treated like a bad token.
    return url.startswith(("https://", "http://")) and url.isprintable()


class UnsubscribeAnswer(Enum):
    """What /u/<token> answers (ingest/pages.py has the pages)."""

    NOT_FOUND = "not_found"  # not a genuine unsubscribe token: a dead letter, the 404 page
    CONFIRM = "confirm"  # GET: the confirmation form; nothing recorded
    DONE = "done"  # POST, and the unsubscribe is kept
    TRY_AGAIN = "try_again"  # POST, and it could not be kept just now (503, Retry-After)


class PreferencesAnswer(NamedTuple):
    """What /p/<token> answers: `kind` one of not_found (a dead letter, the 404 page), form (GET: the
    page; nothing recorded), bad_choice (a POST without a valid choice: 400, nothing recorded), done (the
    Consent is kept) or try_again (it could not be kept just now: 503); `ref` the link's payload."""

    kind: str
    ref: PreferencesRef | None = None


PREFERENCE_CHOICES = ("granted", "denied")
"""The choices a preferences POST may make (form field `consent`)."""


class Edge:
    """Per-app state and the meaning of each fetch. Front ends parse, call one of open_hit, click_hit,
    download_hit, image_hit, unsubscribe, one_click, preferences or bad_request with the request's facts, and answer;
    nothing else."""

    __slots__ = ("_counters", "_dlq_topic", "_ids", "_pending", "_prefix", "_raw_topic", "click_id_param",
                 "dnt", "edge_id", "forwarder", "ips", "privacy_key", "sign_document", "tenants", "topics")

    def __init__(self, tenants: TenantRegistry, forwarder: Forwarder, ips: ClientIpResolver, edge_id: str,
                 topics: Topics, click_id_param: str = "", dnt: frozenset[str] = frozenset(),
                 privacy_key: bytes | None = None, sign_document: Callable[[str], str] | None = None) -> None:
        """`privacy_key`: the key of the recipient hashes ClickHouse keeps (an unsubscribe's); by default
        schemas.privacy.recipient_key(tenants), as the processors'. `sign_document`: a document's address
        → the URL a download redirects to (ingest.objectstore: a presigned GET of the object store)."""
        self.tenants = tenants
        self.privacy_key = privacy_key if privacy_key is not None else recipient_key(tenants)
        self.click_id_param = click_id_param
        self.sign_document = sign_document
        self.dnt = dnt
        self.forwarder = forwarder
        self.ips = ips
        self.edge_id = edge_id
        self.topics = topics
        self._raw_topic = topics.hits_raw  # one string shared by every record, not one built per hit
        self._dlq_topic = topics.hits_dlq
        self._ids = itertools.count(1)
        self._prefix = os.urandom(8).hex()
        self._counters: dict[tuple[str, str], Any] = {}
        self._pending: dict[tuple[str, str], int] = {}

    def verify(self, host: str, token: str, kind: TokenKind) -> TokenPayload:
        """The payload of a genuine token for the tenant whose domain was fetched, or TokenError (the
        rule is TenantRegistry.verify_token's, the processors' too)."""
        return check_token(self.tenants, host, token, kind, int(time.time() * 1000))

    def keyring_of(self, host: str) -> Keyring | None:
        found = self.tenants.for_host(host)
        return found[1] if found else None

    def do_not_track(self, payload: TokenPayload) -> bool:
        """A recipient who asked not to be tracked: answered as usual, nothing kept."""
        if self.dnt and recipient_hash(payload.tenant, payload.recipient) in self.dnt:
            self.count(payload.kind, "do_not_track")
            return True
        return False

    def next_id(self) -> str:
        # Unique across edges and restarts: 64 random bits per process start, then a counter.
        return f"{self._prefix}{next(self._ids):x}"

    def count(self, kind: str, result: str) -> None:
        """Counts an answer in memory; flush_counts adds the counts to the Prometheus counter (a
        counter's inc takes a lock: a dict update costs a fifth of that, once per hit)."""
        key = (kind, result)
        self._pending[key] = self._pending.get(key, 0) + 1

    def flush_counts(self) -> None:
        """Adds the answers counted since the last flush to pixeltrack_edge_hits_total: before every
        scrape this worker answers, and twice a second for the scrapes other workers answer."""
        pending, self._pending = self._pending, {}
        for (kind, result), n in pending.items():
            counter = self._counters.get((kind, result))
            if counter is None:
                counter = self._counters[(kind, result)] = metrics.HITS.labels(kind, result)
            counter.inc(n)

    def open_hit(self, facts: RequestFacts, name: str) -> None:
        """A fetch of /o/<name>: recorded when the token is genuine, a dead letter when not. The answer
        is the pixel either way (the caller's), so a bad token never shows a broken image."""
        token = name[:-4] if name.endswith(".gif") else name
        try:
            payload = self.verify(facts.host, token, "open")
        except TokenError as exc:
            self.record_bad("open", exc.reason, str(exc), facts)
            return
        if not self.do_not_track(payload):
            self.record_hit("open", token, payload.message or payload.campaign, facts)

    def click_hit(self, facts: RequestFacts, token: str) -> str | None:
        """A fetch of /c/<token>: the Location to redirect to (with the click id appended when
        configured), or None for a token that is not genuine (a dead letter; the caller answers 404).
        Never a redirect on anything unsigned: the destination comes only from a verified token."""
        try:
            payload = self.verify(facts.host, token, "click")
            if not _safe_destination(payload.url):
                raise TokenError("bad_destination", payload.url[:60])
        except TokenError as exc:
            self.record_bad("click", exc.reason, str(exc), facts)
            return None
        if self.do_not_track(payload):
            return payload.url
        hit_id = self.next_id()
        # (A campaign-level token's hits are keyed by campaign: they have no message to keep together.)
        self.record_hit("click", token, payload.message or payload.campaign, facts, hit_id)
        # No click id for a campaign-level token: it would name the click, and none of its recipients agreed.
        if (self.click_id_param and payload.message
                and not payload.flags & (FLAG_NO_CLICK_ID | FLAG_UNSUBSCRIBE | FLAG_HONEYPOT)):
            keyring = self.keyring_of(facts.host)
            if keyring is not None:
                ref = ClickRef(payload.tenant, payload.campaign, payload.variant, payload.message, payload.recipient,
                               hit_id, payload.link_id or payload.url, payload.sent_at)
                return with_query_param(payload.url, self.click_id_param, mint_click_ref(keyring, ref))
        return payload.url

    def download_hit(self, facts: RequestFacts, token: str) -> str | None:
        """A fetch of /d/<token>: the Location of the document (the token's address, or a short-lived
        signed URL of it in the object store when one is configured: `sign_document`), or None for a
        token that is not a genuine download token (a dead letter; the caller answers 404)."""
        url = self._redirect_hit("download", facts, token)
        if url is not None and self.sign_document is not None:
            try:
                return self.sign_document(url)
            except Exception:  # a bad object-store setting must not cost the reader the document
                log.exception("download: the object store's signed URL failed; redirecting to the address")
        return url

    def image_hit(self, facts: RequestFacts, token: str) -> str | None:
        """A fetch of /i/<token>, one of the email's own images: the original image's address to redirect
        to, or None for a token that is not a genuine image token (a dead letter; the caller answers the
        pixel, so a bad token shows no broken image). A genuine token past its expiry still shows its
        image (an old email keeps its pictures), counted as nothing but an `expired` dead letter."""
        return self._redirect_hit("image", facts, token, show_expired=True)

    def _redirect_hit(self, kind: TokenKind, facts: RequestFacts, token: str,
                      show_expired: bool = False) -> str | None:
        """Records a fetch of a redirecting token of `kind` and returns its signed destination, or None
        (a dead letter) when the token is not genuine. Never a redirect on anything unsigned."""
        try:
            payload = self.verify(facts.host, token, kind)
            if not _safe_destination(payload.url):
                raise TokenError("bad_destination", payload.url[:60])
        except TokenError as exc:
            self.record_bad(kind, exc.reason, str(exc), facts)
            if exc.reason == "expired" and show_expired:
                # Signed, of this kind, on its tenant's domain: only the expiry failed.
                try:
                    url = self.tenants.verify_token(facts.host, token, kind).url
                except TokenError:
                    return None
                return url if _safe_destination(url) else None
            return None
        if not self.do_not_track(payload):
            self.record_hit(kind, token, payload.message, facts)
        return payload.url

    def unsubscribe(self, facts: RequestFacts, token: str, confirmed: bool) -> UnsubscribeAnswer:
        """/u/<token> with a link token flagged unsubscribe. Unconfirmed (a GET: a person, or a scanner
        following every link) changes nothing; confirmed (the form's POST, or a mail client's RFC 8058
        one-click POST) records the unsubscribe, and never says so unless it was kept."""
        try:
            payload = self.verify(facts.host, token, "click")
            if not payload.flags & FLAG_UNSUBSCRIBE:
                raise TokenError("not_unsubscribe", "the token is not an unsubscribe link")
            if not payload.recipient:  # a campaign-level link (a message tracked in aggregate): whom?
                raise TokenError("no_recipient", "the unsubscribe link names no recipient")
        except TokenError as exc:
            self.record_bad("unsubscribe", exc.reason, str(exc), facts)
            return UnsubscribeAnswer.NOT_FOUND
        if not confirmed:
            return UnsubscribeAnswer.CONFIRM
        # Kept under the keyed hash, as `erasures` names a recipient: a plain hash of the id would tell
        # anyone with a guess whether that id unsubscribed, after `forget` too.
        record = Unsubscribe(payload.tenant, keyed_recipient_hash(self.privacy_key, payload.tenant, payload.recipient),
                             payload.campaign, payload.message, time.time(), payload.recipient)
        try:
            kept = self.forwarder.submit(Record(self.topics.unsubscribes, payload.message.encode(), record.encode()))
        except Exception:  # the spool's disk failing: the same answer as a spool at its bound
            log.exception("unsubscribe not kept")
            kept = False
        if not kept:
            # The person (or their mail client) tries again later.
            self.count("unsubscribe", "error")
            return UnsubscribeAnswer.TRY_AGAIN
        self.count("unsubscribe", "ok")
        return UnsubscribeAnswer.DONE

    def one_click(self, facts: RequestFacts, token: str) -> UnsubscribeAnswer | None:
        """A POST to /c/<token>. On an unsubscribe link (a genuine click token flagged unsubscribe: the
        email's own unsubscribe links, as `instrument` marks them) it is a mail client's RFC 8058 one-click
        unsubscribe, taken as a POST to /u/ is (`unsubscribe`, confirmed). None for any other token, genuine
        or not: the front end answers 405, as for any method the route does not take, and records nothing."""
        try:
            payload = check_token(self.tenants, facts.host, token, "click", None)  # expired: unsubscribe's 404
        except TokenError:
            return None
        if not payload.flags & FLAG_UNSUBSCRIBE:
            return None
        return self.unsubscribe(facts, token, confirmed=True)

    def preferences(self, facts: RequestFacts, token: str, choice: str | None) -> PreferencesAnswer:
        """/p/<token>, a preferences link. Without a choice (a GET: a person, or a scanner prefetching
        every link) nothing is recorded; with one (the page's POST, `granted` or `denied`) a Consent
        (source "preferences") goes on the consents topic, keyed by recipient, through the same journal
        and forwarder as every record here, and the page says so only once it is kept."""
        try:
            ref = self.verify_preferences(facts.host, token)
        except TokenError as exc:
            self.record_bad("preferences", exc.reason, str(exc), facts)
            return PreferencesAnswer("not_found")
        if choice is None:
            return PreferencesAnswer("form", ref)
        if choice not in PREFERENCE_CHOICES:
            self.count("preferences", "bad_choice")
            return PreferencesAnswer("bad_choice", ref)
        # The disclosure version goes with a consent given, not with a withdrawal (schemas/consents.py).
        record = Consent(ref.tenant, ref.recipient, choice, time.time(), "preferences",
                         ref.text_version if choice == "granted" else "")
        try:
            kept = self.forwarder.submit(Record(self.topics.consents, ref.recipient.encode(), record.encode()))
        except Exception:  # the spool's disk failing: the same answer as a spool at its bound
            log.exception("consent not kept")
            kept = False
        if not kept:
            self.count("preferences", "error")
            return PreferencesAnswer("try_again", ref)
        self.count("preferences", "ok")
        return PreferencesAnswer("done", ref)

    def verify_preferences(self, host: str, token: str) -> PreferencesRef:
        """A genuine preferences link fetched on `host`: checked with that host's tenant's keys and naming
        that tenant (the rule of TenantRegistry.verify_token), else TokenError."""
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("too_long", f"{len(token)} characters")
        if _token_shape(token) is None:
            raise TokenError("malformed", "characters outside base64url")
        found = self.tenants.for_host(host)
        if found is None:
            raise TokenError("unknown_host", host[:100])
        tenant, keyring = found
        ref = verify_preferences(keyring, token, int(time.time() * 1000))
        if ref.tenant != tenant:
            raise TokenError("wrong_tenant", f"a link of {ref.tenant[:64]!r} on a domain of {tenant!r}")
        return ref

    def bad_request(self, facts: RequestFacts, kind: str, reason: str, detail: str = "") -> None:
        """A request of `kind` the edge would not count (a path that is not /o/<token>, ...): a dead letter."""
        self.record_bad(kind, reason, detail, facts)

    def record_hit(self, kind: str, token: str, message: str, facts: RequestFacts, hit_id: str = "") -> None:
        """Journal and queue the hit the edge is about to answer for. Never raises: a hit that cannot
        be kept is counted (result "dropped" or "error") and the answer goes out all the same."""
        try:
            value = raw_hit_json(hit_id or self.next_id(), facts.received_at, kind, facts.method, facts.host[:MAX_HOST],
                                 facts.target[:MAX_PATH], token, self.ips.resolve(facts.peer, facts.forwarded_for),
                                 facts.user_agent[:MAX_UA], self.edge_id, facts.headers)
            ok = self.forwarder.submit(Record(self._raw_topic, message.encode(), value))
        except Exception:
            log.exception("edge: hit not recorded")
            self.count(kind, "error")
            return
        self.count(kind, "ok" if ok else "dropped")

    def record_bad(self, kind: str, reason: str, detail: str, facts: RequestFacts) -> None:
        """A dead letter for input the edge would not count; never raises, like record_hit. No letter for a
        token naming a do-not-track recipient (expired, of the wrong kind, on another tenant's domain,
        percent-encoded, signed or not): answered as usual, and nothing of it leaves the edge."""
        try:
            if self.dnt and any(recipient_hash(t, r) in self.dnt for t, r in claimed_recipients(facts.target)):
                self.count(kind, "do_not_track")
                return
            letter = DeadLetter(id=self.next_id(), received_at=facts.received_at, stage="edge", reason=reason,
                                detail=_clean(detail[:200]), kind=kind, method=facts.method,
                                host=_clean(facts.host[:MAX_HOST]), path=_clean(facts.target[:MAX_PATH]),
                                ip=self.ips.resolve(facts.peer, facts.forwarded_for),
                                ua=_clean(facts.user_agent[:MAX_UA]), edge=self.edge_id)
            self.forwarder.submit(Record(self._dlq_topic, None, compact(letter.encode())))
        except Exception:
            log.exception("edge: dead letter not recorded")
            self.count(kind, "error")
            return
        self.count(kind, reason)
