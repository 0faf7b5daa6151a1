"""SendGrid's Event Webhook: the Signed Event Webhook's ECDSA check, and its events mapped.

SendGrid signs `timestamp + body` with ECDSA P-256 / SHA-256; the signature (base64 DER) and the timestamp
come in the X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers, and the verification key is the
base64 DER public key SendGrid shows when signing is turned on ("Getting started with the Event Webhook
Security Features"). The body is a JSON list of events; the sender's custom_args are top-level fields of
each (pixeltrack.sender.esp puts the identifiers there).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ingest.esp.common import (
    MAX_EVENTS,
    Batch,
    Context,
    Refused,
    epoch,
    event_id,
    fresh,
    identity,
    json_body,
    smtp_code,
)
from schemas.esp import EspSecrets

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
IGNORED = frozenset({"processed", "group_resubscribe", "account_status_change"})
KNOWN = frozenset({"delivered", "bounce", "deferred", "dropped", "open", "click", "spamreport", "unsubscribe",
                   "group_unsubscribe"}) | IGNORED


def public_key(b64: str) -> ec.EllipticCurvePublicKey:
    """The verification key SendGrid shows (base64 DER); ValueError when it is not an EC key."""
    try:
        key = load_der_public_key(base64.b64decode(b64.strip(), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 DER public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def verify(key_b64: str, signature_b64: str, timestamp: str, body: bytes) -> bool:
    """Whether `signature_b64` is the key's ECDSA-SHA256 signature of timestamp + body."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key(key_b64).verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


async def take(body: bytes, headers: Mapping[str, str], secrets: EspSecrets, batch: Batch,
               ctx: Context) -> dict[str, Any] | None:
    signature, timestamp = headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        raise Refused(401, "bad_signature", f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required (turn on "
                      "the Signed Event Webhook)")
    if not verify(secrets.sendgrid_public_key, signature, timestamp, body):
        raise Refused(401, "bad_signature", f"{SIGNATURE_HEADER} does not verify with this tenant's SendGrid key")
    fresh(timestamp, ctx)
    events = json_body(body)
    if not isinstance(events, list):
        raise Refused(400, "bad_request", "body must be a JSON list of SendGrid events")
    if len(events) > MAX_EVENTS:
        raise Refused(413, "too_large", f"{len(events)} events; at most {MAX_EVENTS} per request")
    for event in events:
        one(event, batch)
    return None


def one(event: Any, batch: Batch) -> None:
    """One SendGrid event into the batch."""
    if not isinstance(event, dict):
        batch.letter("esp_malformed_event", "an event is not a JSON object", event)
        return
    kind = event.get("event")
    if kind not in KNOWN:
        batch.letter("esp_unknown_event", f"event type {str(kind)[:40]!r} is not one pixeltrack knows", event)
        return
    if kind in IGNORED:
        batch.ignore()
        return
    try:
        who = identity(event)
        ts = epoch(event.get("timestamp"))
    except ValueError as exc:
        batch.letter("esp_malformed_event", str(exc), event)
        return
    if who is None:
        batch.not_ours()
        return
    raw_id = event.get("sg_event_id") if isinstance(event.get("sg_event_id"), str) else ""
    raw_id = raw_id or event_id(kind, event.get("sg_message_id"), event.get("timestamp"), event.get("url"))
    reason, response = str(event.get("reason") or ""), str(event.get("response") or "")
    if kind in ("open", "click"):
        batch.hit(who, kind, raw_id, ts, str(event.get("ip") or ""), str(event.get("useragent") or ""),
                  url=str(event.get("url") or ""), machine=event.get("sg_machine_open") is True, event=event)
    elif kind == "delivered":
        batch.delivery(who, "delivered", raw_id, ts, smtp_code=smtp_code(response), diagnostic=response)
    elif kind == "bounce":
        # "bounce" is a hard bounce; "blocked" one the receiver may accept later (SendGrid: a soft bounce).
        bounce = "soft" if event.get("type") == "blocked" else "hard"
        batch.delivery(who, "bounced", raw_id, ts, bounce=bounce, smtp_code=smtp_code(reason), diagnostic=reason)
    elif kind == "dropped":
        # Never handed to the recipient's server (suppressed, invalid): it will not be delivered.
        batch.delivery(who, "bounced", raw_id, ts, bounce="hard", diagnostic=f"dropped by SendGrid: {reason}")
    elif kind == "deferred":
        batch.delivery(who, "deferred", raw_id, ts, smtp_code=smtp_code(response), diagnostic=response)
    elif kind == "spamreport":
        batch.delivery(who, "complained", raw_id, ts)
    else:  # unsubscribe, group_unsubscribe
        batch.delivery(who, "unsubscribed", raw_id, ts)
