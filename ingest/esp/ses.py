"""Amazon SES through SNS: the SNS message signature, subscription confirmation, and SES events mapped.

SES publishes events (a configuration set's event destination, or an identity's notifications) to an SNS
topic; SNS POSTs each to the subscribed HTTPS endpoint in a signed JSON envelope. The signature is RSA
(SignatureVersion 1: SHA1, 2: SHA256) over the envelope's fields "Name\\nvalue\\n" in a fixed order, with
the certificate at SigningCertURL, which must be an https URL on an SNS host (sns.<region>.amazonaws.com):
only such certificates are fetched, once each (cached). Only the tenant's allowed topic ARNs are taken.
A SubscriptionConfirmation is confirmed by a GET of its SubscribeURL, again only to an SNS host. SES
events name the sender's identifiers as message tags (mail.tags; pixeltrack.sender.esp makes them).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingest.esp.common import Batch, Context, Identity, Refused, epoch, event_id, identity, json_body, smtp_code, text
from schemas.esp import KEY_SENT_AT, EspSecrets, from_ses_tag_value

Fetch = Callable[[str], Awaitable[bytes]]  # GET an https URL, the body (raises on failure)
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERTIFICATES = 32
IGNORED = frozenset({"Send", "Subscription", "Rendering Failure", "Received"})
KNOWN = frozenset({"Delivery", "Bounce", "Complaint", "DeliveryDelay", "Reject", "Open", "Click"}) | IGNORED


def sns_url(url: str, pem: bool) -> bool:
    """Whether `url` is https on an SNS host (no user, no other port); `pem`: and names a .pem file."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme == "https" and parts.username is None and port in (None, 443)
            and bool(SNS_HOST.match(parts.hostname or "")) and (not pem or parts.path.endswith(".pem")))


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: "Name\\nvalue\\n" for each field of the message's type that it has."""
    names = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else CONFIRMATION_FIELDS
    out = []
    for name in names:
        value = message.get(name)
        if value is None:
            continue  # Subject, when the notification has none
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


async def fetch_https(url: str) -> bytes:
    """The default fetch: GET with a 10 s timeout, no redirects, a body of at most 64 KiB."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
            http.get(url, allow_redirects=False) as resp:
        if resp.status != 200:
            raise ConnectionError(f"{url[:80]} answered {resp.status}")
        return await resp.content.read(64 * 1024)


class SnsVerifier:
    """Checks SNS envelopes. `fetch` GETs certificates and subscription confirmations (injectable: tests
    give their own; nothing else is ever fetched). Certificates are cached by URL."""

    def __init__(self, fetch: Fetch | None = None) -> None:
        self._fetch = fetch or fetch_https
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._keys.get(url)
        if key is not None:
            return key
        try:
            cert = x509.load_pem_x509_certificate(await self._fetch(url))
        except ValueError as exc:
            raise Refused(403, "bad_signature", f"SigningCertURL is not a PEM certificate ({exc})") from None
        except Exception as exc:  # the network: the platform retries later
            raise Refused(503, "unavailable", f"could not fetch SigningCertURL ({type(exc).__name__}); retry") from None
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise Refused(403, "bad_signature", "SigningCertURL's certificate has no RSA key")
        self._keys[url] = public
        if len(self._keys) > MAX_CERTIFICATES:
            self._keys.popitem(last=False)
        return public

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Refused (403) unless the envelope is signed by the certificate of an SNS host."""
        algorithm = HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise Refused(403, "bad_signature", "SignatureVersion must be 1 or 2")
        url = message.get("SigningCertURL")
        if not isinstance(url, str) or not sns_url(url, pem=True):
            raise Refused(403, "bad_signature", "SigningCertURL must be an https .pem URL on an SNS host "
                          "(sns.<region>.amazonaws.com)")
        try:
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise Refused(403, "bad_signature", "Signature is not base64") from None
        key = await self._key(url)
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise Refused(403, "bad_signature", "the SNS signature does not verify") from None

    async def confirm(self, subscribe_url: str) -> None:
        if not sns_url(subscribe_url, pem=False):
            raise Refused(403, "bad_signature", "SubscribeURL is not an https URL on an SNS host")
        try:
            await self._fetch(subscribe_url)
        except Exception as exc:
            raise Refused(503, "unavailable", f"could not confirm the subscription ({type(exc).__name__}); "
                          "SNS sends the confirmation again") from None


async def take(body: bytes, headers: Mapping[str, str], secrets: EspSecrets, batch: Batch,
               ctx: Context) -> dict[str, Any] | None:
    message = json_body(body)
    if not isinstance(message, dict) or message.get("Type") not in (
            "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise Refused(400, "bad_request", "body must be an SNS message (Type Notification, SubscriptionConfirmation "
                      "or UnsubscribeConfirmation); turn raw message delivery off")
    if message.get("TopicArn") not in secrets.ses_topic_arns:
        raise Refused(403, "bad_signature", f"TopicArn {str(message.get('TopicArn'))[:120]!r} is not one of this "
                      "tenant's SES topics")
    verifier: SnsVerifier = ctx.sns
    await verifier.verify(message)
    if message["Type"] == "SubscriptionConfirmation":
        await verifier.confirm(str(message.get("SubscribeURL") or ""))
        return {"confirmed": message["TopicArn"]}
    if message["Type"] == "UnsubscribeConfirmation":
        return {"unsubscribed": message["TopicArn"]}
    try:
        event = json_body(str(message.get("Message") or "").encode())
    except Refused:
        event = None
    if not isinstance(event, dict):
        batch.letter("esp_malformed_event", "the SNS Message is not an SES event (JSON object)",
                     str(message.get("Message"))[:200])
        return None
    one(event, batch)
    return None


def _tag(values: Any) -> Any:
    """An SES tag's value: the first of its list, decoded (schemas.esp.ses_tag_value)."""
    if isinstance(values, list) and values and isinstance(values[0], str):
        try:
            return from_ses_tag_value(values[0])
        except ValueError:
            return None
    return None


def one(event: dict[str, Any], batch: Batch) -> None:
    kind = event.get("eventType") or event.get("notificationType")
    if kind not in KNOWN:
        batch.letter("esp_unknown_event", f"eventType {str(kind)[:40]!r} is not one pixeltrack knows", event)
        return
    if kind in IGNORED:
        batch.ignore()
        return
    found = event.get("mail")
    mail: dict[str, Any] = found if isinstance(found, dict) else {}
    found = event.get(kind[0].lower() + kind[1:])
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    tags = mail.get("tags")
    try:
        who = identity(tags if isinstance(tags, dict) else None, decode=_tag)
        ts = epoch(detail.get("timestamp") or mail.get("timestamp"))
        if who is not None and not who.sent_at_ms and not (isinstance(tags, dict) and KEY_SENT_AT in tags):
            # SES says when it sent the message itself.
            who = Identity(who.message, who.campaign, who.variant, who.recipient,
                           int(epoch(mail.get("timestamp")) * 1000))
    except ValueError as exc:
        batch.letter("esp_malformed_event", str(exc), event)
        return
    if who is None:
        batch.not_ours()
        return
    raw_id = event_id(text(mail, "messageId"), kind, detail.get("timestamp"), detail.get("ipAddress"),
                      detail.get("userAgent"), detail.get("link"), text(detail, "feedbackId"))
    if kind in ("Open", "Click"):
        batch.hit(who, kind.lower(), raw_id, ts, text(detail, "ipAddress"), text(detail, "userAgent"),
                  url=text(detail, "link"), event=event)
    elif kind == "Delivery":
        response = text(detail, "smtpResponse")
        batch.delivery(who, "delivered", raw_id, ts, smtp_code=smtp_code(response), diagnostic=response)
    elif kind == "Bounce":
        recipients = detail.get("bouncedRecipients")
        first = recipients[0] if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict) else {}
        diagnostic = text(first, "diagnosticCode") or f"{text(detail, 'bounceType')}/{text(detail, 'bounceSubType')}"
        # Permanent: the address will not take mail; Transient and Undetermined may pass later.
        batch.delivery(who, "bounced", raw_id, ts, bounce="hard" if detail.get("bounceType") == "Permanent" else "soft",
                       smtp_code=smtp_code(text(first, "diagnosticCode")), diagnostic=diagnostic)
    elif kind == "DeliveryDelay":
        delayed = detail.get("delayedRecipients")
        first = delayed[0] if isinstance(delayed, list) and delayed and isinstance(delayed[0], dict) else {}
        diagnostic = text(first, "diagnosticCode") or text(detail, "delayType")
        batch.delivery(who, "deferred", raw_id, ts, smtp_code=smtp_code(text(first, "diagnosticCode")),
                       diagnostic=diagnostic)
    elif kind == "Reject":
        batch.delivery(who, "bounced", raw_id, ts, bounce="hard",
                       diagnostic=f"rejected by SES: {text(detail, 'reason')}")
    else:  # Complaint
        batch.delivery(who, "complained", raw_id, ts)
