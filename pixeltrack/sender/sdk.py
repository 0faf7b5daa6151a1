"""For senders: mint signed pixel, click, download and image URLs for one message to one recipient."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import orjson

from pixeltrack.sender.recipient_ids import (
    MESSAGE_WARNING,
    WARNING,
    Pseudonyms,
    holds_email,
    looks_like_email,
    redacted,
)
from schemas.aggregate import AggregateSends, hour_of
from schemas.consents import CONSENT_STATES, TRACKING_MODES, Consent, tracks_individually
from schemas.sends import Send
from schemas.tokens import (
    FLAG_HONEYPOT,
    FLAG_NO_CLICK_ID,
    FLAG_UNSUBSCRIBE,
    Keyring,
    PreferencesRef,
    TokenKind,
    TokenPayload,
    aggregate_payload,
    mint_preferences,
)

DAY_MS = 86_400_000
ONE_CLICK = "List-Unsubscribe=One-Click"  # the List-Unsubscribe-Post header's value (RFC 8058)
_log = logging.getLogger("pixeltrack.sdk")


@dataclass(frozen=True, slots=True)
class Message:
    """Who a message goes to and what it belongs to. sent_at is epoch ms (default: now). `consent`: the
    recipient's consent to individual tracking (granted, denied, unknown; "" = unknown): see Tracker."""

    campaign: str
    message: str
    recipient: str
    variant: str = ""
    tenant: str = ""
    sent_at: int = 0
    consent: str = ""

    def __post_init__(self) -> None:
        if self.consent and self.consent not in CONSENT_STATES:
            raise ValueError(f"consent {self.consent[:20]!r} must be one of {', '.join(CONSENT_STATES)} (or empty)")

Record = Send | AggregateSends | Consent  # what ApiClient.register_sends posts


class Tracker:
    """Mints URLs on a tracking base URL (e.g. https://t.example.com). Tokens expire after ttl_days
    (0 = never). With `hash_recipients`, every URL and Send carries a keyed pseudonym of the recipient
    id (pixeltrack.sender.recipient_ids.Pseudonyms) instead of the id; without it, an id shaped like an email
    address is logged once as a warning, since it would be readable in every URL and row. A message id holding
    an address is logged once too, hashed or not: the message id is in every URL and row as it is."""

    def __init__(self, base_url: str, keyring: Keyring, ttl_days: int = 400, *, hash_recipients: bool = False,
                 unknown_consent: str = "individual", tracking: str = "individual",
                 warn_addresses: bool = True) -> None:
        """`unknown_consent`: what a message of unknown consent gets (the tenant's setting, "individual" or
        "aggregate"); `tracking` "aggregate" (PIXELTRACK_TRACKING): every message is tracked in aggregate.
        `warn_addresses` False: no logged warnings about recipient or message ids holding addresses (a caller
        that said them already).
        A message tracked in aggregate gets campaign-level URLs (schemas.tokens.aggregate_payload): the
        same for every such recipient of its campaign and variant, with no message, recipient nor send time."""
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {base_url!r} must start with http:// or https://")
        for name, mode in (("unknown_consent", unknown_consent), ("tracking", tracking)):
            if mode not in TRACKING_MODES:
                raise ValueError(f"{name} {mode!r} must be one of {', '.join(TRACKING_MODES)}")
        self._unknown = unknown_consent
        self._tracking = tracking
        self.base_url = base_url.rstrip("/")
        self._keyring = keyring
        self._ttl_ms = ttl_days * DAY_MS
        self._pseudonyms = Pseudonyms(keyring) if hash_recipients else None
        self._warned = self._warned_message = not warn_addresses

    def recipient_id(self, recipient: str) -> str:
        """The id that URLs and sends carry for `recipient`: its pseudonym, or itself."""
        if self._pseudonyms is not None:
            return self._pseudonyms.of(recipient)
        if not self._warned and looks_like_email(recipient):
            self._warned = True
            _log.warning("pixeltrack SDK: %s", WARNING.format(count="at least 1", total="the recipients",
                                                              example=redacted(recipient)))
        return recipient

    def individual(self, m: Message) -> bool:
        """Whether `m` is tracked individually: its recipient's consent (tracks_individually), unless the
        installation tracks everyone in aggregate."""
        return self._tracking != "aggregate" and tracks_individually(m.consent or "unknown", self._unknown)

    def _payload(self, m: Message, kind: TokenKind, url: str = "", link_id: str = "",
                 flags: int = 0) -> TokenPayload:
        sent_at = m.sent_at or int(time.time() * 1000)
        if not self.individual(m):
            return aggregate_payload(kind, m.tenant, m.campaign, m.variant,
                                     sent_at + self._ttl_ms if self._ttl_ms else 0, url, link_id, flags)
        return self._identified(m, kind, sent_at, url, link_id, flags)

    def _identified(self, m: Message, kind: TokenKind, sent_at: int, url: str = "", link_id: str = "",
                    flags: int = 0) -> TokenPayload:
        if not self._warned_message and "@" in m.message and holds_email(m.message) and self.individual(m):
            self._warned_message = True  # (a message tracked in aggregate: its URLs carry no message id)
            _log.warning("pixeltrack SDK: %s", MESSAGE_WARNING.format(example=redacted(m.message)))
        return TokenPayload(kind=kind, tenant=m.tenant, campaign=m.campaign, variant=m.variant,
                            message=m.message, recipient=self.recipient_id(m.recipient), sent_at=sent_at,
                            expires_at=sent_at + self._ttl_ms if self._ttl_ms else 0,
                            url=url, link_id=link_id, flags=flags)

    def pixel_url(self, m: Message) -> str:
        return f"{self.base_url}/o/{self._keyring.mint(self._payload(m, 'open'))}.gif"

    def unsubscribe_url(self, m: Message) -> str:
        """The edge's own unsubscribe page for this message (GET confirms, POST unsubscribes: RFC 8058);
        use it as the List-Unsubscribe URL with List-Unsubscribe-Post: List-Unsubscribe=One-Click. It names
        the recipient whatever the consent (whom to unsubscribe: fetching it records no hit); for a message
        tracked in aggregate it names no message and no send time."""
        payload = self._identified(m, "click", m.sent_at or int(time.time() * 1000), url=f"{self.base_url}/u",
                                   link_id="unsubscribe", flags=FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID)
        if not self.individual(m):
            payload.message, payload.sent_at = "", 0
        token = self._keyring.mint(payload)
        return f"{self.base_url}/u/{token}"

    def unsubscribe_headers(self, m: Message) -> dict[str, str]:
        """The message's RFC 8058 one-click headers: List-Unsubscribe (unsubscribe_url, in angle brackets;
        a mailto: of yours may follow it, after a comma) and List-Unsubscribe-Post."""
        return {"List-Unsubscribe": f"<{self.unsubscribe_url(m)}>", "List-Unsubscribe-Post": ONE_CLICK}

    def preferences_url(self, m: Message, text_version: str = "", state: str = "") -> str:
        """The recipient's tracking preferences page (`/p/<token>`, apart from unsubscribe): a GET shows
        the page and changes nothing, its POST gives or withdraws consent to open and click tracking
        (a Consent with source "preferences"). `text_version` names the disclosure the email shows (kept
        with a consent given there); `state` the consent on record as you send (granted, denied,
        unknown; "" = not said: the message's `consent`), shown on the page. Expires with the message's other
        tokens. It names the recipient whatever the consent (whose consent to change); for a message tracked
        in aggregate it names no message."""
        sent_at = m.sent_at or int(time.time() * 1000)
        message = m.message if self.individual(m) else ""
        ref = PreferencesRef(m.tenant, self.recipient_id(m.recipient), m.campaign, message, text_version,
                             state or m.consent, sent_at + self._ttl_ms if self._ttl_ms else 0)
        return f"{self.base_url}/p/{mint_preferences(self._keyring, ref)}"

    def click_url(self, m: Message, url: str, link_id: str = "", honeypot: bool = False,
                  unsubscribe: bool = False, click_id: bool = True) -> str:
        flags = ((FLAG_HONEYPOT if honeypot else 0) | (FLAG_UNSUBSCRIBE if unsubscribe else 0)
                 | (0 if click_id else FLAG_NO_CLICK_ID))
        token = self._keyring.mint(self._payload(m, "click", url=url, link_id=link_id, flags=flags))
        return f"{self.base_url}/c/{token}"

    def download_url(self, m: Message, url: str, link_id: str = "") -> str:
        """A signed download link (/d/) to a document sent with the message (a price list, a whitepaper,
        an invoice): the edge redirects to `url` (or to the object store's signed URL of it) and records
        a `download` event, judged like a click."""
        return f"{self.base_url}/d/{self._keyring.mint(self._payload(m, 'download', url=url, link_id=link_id))}"

    def image_url(self, m: Message, url: str) -> str:
        """One of the email's own images routed through the edge (/i/): the edge redirects to `url`, never
        cached, and the fetch counts as the message's open (one per reading, with the pixel's)."""
        return f"{self.base_url}/i/{self._keyring.mint(self._payload(m, 'image', url=url))}"


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """Everything one email needs: the pixel, the wrapped links (same order as given), and the send
    record to register so rates have their denominator."""

    pixel: str
    clicks: tuple[str, ...]
    send: Send | AggregateSends
    downloads: tuple[str, ...] = ()


def aggregate_send(m: Message) -> AggregateSends:
    """The record that counts one message tracked in aggregate (sent_at set) in its campaign's denominators:
    its campaign, variant and hour, under a random key (so a retried post counts once, and nothing ties
    it to the recipient)."""
    return AggregateSends(m.tenant, m.campaign, m.variant, hour_of(m.sent_at / 1000), 1, uuid.uuid4().hex)


def prepare(tracker: Tracker, m: Message, urls: Sequence[str] = (), mailbox_domain: str = "",
            downloads: Sequence[str] = ()) -> PreparedSend:
    """Mints the pixel, click and download URLs of one message (`downloads`: documents' addresses) and the
    Send that registers it (for a message tracked in aggregate, the AggregateSends that counts it)."""
    sent_at = m.sent_at or int(time.time() * 1000)
    m = replace(m, sent_at=sent_at)
    if not tracker.individual(m):
        return PreparedSend(tracker.pixel_url(m), tuple(tracker.click_url(m, u) for u in urls), aggregate_send(m),
                            tuple(tracker.download_url(m, u) for u in downloads))
    send = Send(tenant=m.tenant, campaign=m.campaign, variant=m.variant, message=m.message,
                recipient=tracker.recipient_id(m.recipient), sent_at=sent_at / 1000,
                mailbox_domain=mailbox_domain.lower(), links=len(urls))
    return PreparedSend(tracker.pixel_url(m), tuple(tracker.click_url(m, u) for u in urls), send,
                        tuple(tracker.download_url(m, u) for u in downloads))


class ApiClient:
    """Registers sends, conversions and delivery events with the ingest API (`POST /v1/sends`,
    `/v1/conversions`, `/v1/events`).
    Blocking (urllib), for scripts and batch jobs; errors raise ApiError with the server's message."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0, attempts: int = 5,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        """`attempts`: tries of a request answered 429 or 5xx, or lost on the network (the API's 202 is
        the only acknowledgement, and sends, conversions and events are idempotent, so a retry is safe); the
        waits double from `backoff` seconds (a Retry-After is honoured, up to 60 s)."""
        self.api_url = api_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep

    def _post(self, path: str, body: object) -> dict[str, object]:
        data = orjson.dumps(body)
        for attempt in range(1, self._attempts + 1):
            req = urllib.request.Request(
                f"{self.api_url}{path}", data=data, method="POST",
                headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"})
            wait = self._backoff * 2 ** (attempt - 1)
            try:
                with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                    answer: dict[str, object] = orjson.loads(resp.read())
                    return answer
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                exc.close()
                if (exc.code != 429 and exc.code < 500) or attempt == self._attempts:
                    raise ApiError(exc.code, detail) from None
                if retry_after and retry_after.strip().isdigit():
                    wait = min(60.0, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self._attempts:
                    raise ApiError(0, f"no answer from {self.api_url}: {exc}") from None
            self._sleep(wait)
        raise AssertionError("unreachable")

    def register_sends(self, sends: Sequence[Record], batch: int = 5000) -> int:
        """Posts sends in batches; returns how many the API accepted. A batch that fails for good raises
        ApiError saying how many were accepted before it (posting all of them again is safe). Aggregate
        sends (prepare's for a message tracked in aggregate) go to /v1/aggregate-sends and consents to
        /v1/consents in the same way."""
        accepted = 0
        for kind, path, name in ((Send, "/v1/sends", "sends"),
                                 (AggregateSends, "/v1/aggregate-sends", "aggregate_sends"),
                                 (Consent, "/v1/consents", "consents")):
            these = [s for s in sends if isinstance(s, kind)]
            accepted += self._post_batches(path, name, these, batch, accepted, len(sends))
        return accepted

    def _post_batches(self, path: str, name: str, sends: Sequence[Record], batch: int, before: int,
                      total: int) -> int:
        accepted = 0
        for i in range(0, len(sends), batch):
            body = {name: [{k: v for k, v in asdict(s).items() if k != "v"} for s in sends[i:i + batch]]}
            try:
                answer = self._post(path, body)
            except ApiError as exc:
                raise ApiError(exc.status, f"{exc.detail} ({before + accepted} of {total} sends were registered "
                                           "before this batch; registering them all again is safe)") from None
            accepted += int(answer.get("accepted", 0))  # type: ignore[call-overload]
        return accepted

    def record_consent(self, recipient: str, state: str, text_version: str = "", tenant: str = "",
                       ts: float | None = None) -> dict[str, object]:
        """`POST /v1/consents` of one change (source "sdk"); `ts` (epoch seconds, default now) is sent, so a
        retry of this call is the same change, counted once."""
        c = Consent(tenant, recipient, state, time.time() if ts is None else ts, "sdk", text_version)
        c.check("consent")
        return self._post("/v1/consents", {"consents": [{k: v for k, v in asdict(c).items() if k != "v"}]})

    def record_conversion(self, idempotency_key: str, value: float = 0.0, currency: str = "",
                          click_id: str = "", message: str = "", campaign: str = "") -> dict[str, object]:
        return self._post("/v1/conversions", {"conversions": [{
            "idempotency_key": idempotency_key, "value": value, "currency": currency, "click_id": click_id,
            "message": message, "campaign": campaign}]})

    def record_events(self, events: Sequence[Mapping[str, object]], batch: int = 5000) -> int:
        """Posts delivery events (`{"message", "type", "id", "ts", "bounce", "smtp_code", "diagnostic"}`,
        see /v1/openapi.json) in batches; returns how many the API accepted. An event counts once per
        (message, type, id), so posting them all again after a failure is safe."""
        accepted = 0
        for i in range(0, len(events), batch):
            try:
                answer = self._post("/v1/events", {"events": [dict(e) for e in events[i:i + batch]]})
            except ApiError as exc:
                raise ApiError(exc.status, f"{exc.detail} ({accepted} of {len(events)} events were recorded "
                                           "before this batch; posting them all again is safe)") from None
            accepted += int(answer.get("accepted", 0))  # type: ignore[call-overload]
        return accepted

    def record_event(self, message: str, type: str, id: str = "", ts: float | str | None = None,
                     bounce: str = "", smtp_code: int = 0, diagnostic: str = "") -> dict[str, object]:
        """One delivery event of one message: `type` is delivered, bounced (`bounce` hard or soft; by
        default soft for a 4xx `smtp_code`, else hard), deferred, complained, unsubscribed or replied.
        `id`: your platform's event id (a retry with it counts once); `ts`: when (default: now)."""
        event: dict[str, object] = {"message": message, "type": type, "id": id, "bounce": bounce,
                                    "smtp_code": smtp_code, "diagnostic": diagnostic}
        if ts is not None:
            event["ts"] = ts
        return self._post("/v1/events", {"events": [event]})


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
