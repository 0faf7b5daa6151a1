"""Postmark's webhooks: HTTP Basic credentials in the webhook URL, and the record mapped.

Postmark does not sign its webhooks; it sends the Basic credentials written in the webhook's URL
(https://USER:PASSWORD@api.example.com/v1/esp/postmark?tenant=NAME), checked here in constant time. Each
POST is one record named by `RecordType`; the sender's metadata (the message's `Metadata`) is the
record's `Metadata`. Postmark has no machine flag of its own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from ingest.esp.common import Batch, Context, Refused, epoch, event_id, identity, json_body, text
from schemas.esp import EspSecrets

HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unconfirmed", "Blocked", "DMARCPolicy",
                  "SMTPApiError", "TemplateRenderingFailed"})
SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Unknown"})
# Bounce records that are not failures of this message (an auto-reply, a challenge, a notice of a new address).
NOT_FAILURES = frozenset({"AutoResponder", "AddressChange", "Subscribe", "ChallengeVerification", "OpenRelayTest",
                          "VirusNotification", "SpamNotification", "InboundError"})
KNOWN = frozenset({"Delivery", "Bounce", "SpamComplaint", "Open", "Click", "SubscriptionChange"})


def authorised(header: str, user: str, password: str) -> bool:
    """Whether an Authorization header carries exactly these Basic credentials (compared in constant time)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, f"{user}:{password}".encode())


async def take(body: bytes, headers: Mapping[str, str], secrets: EspSecrets, batch: Batch,
               ctx: Context) -> dict[str, Any] | None:
    if not authorised(headers.get("Authorization", ""), secrets.postmark_user, secrets.postmark_password):
        raise Refused(401, "bad_signature", "missing or wrong Basic credentials (write them in the Postmark "
                      "webhook's URL)")
    record = json_body(body)
    if not isinstance(record, dict):
        raise Refused(400, "bad_request", "body must be one Postmark webhook record (a JSON object)")
    one(record, batch)
    return None


def one(record: dict[str, Any], batch: Batch) -> None:
    kind = record.get("RecordType")
    if kind not in KNOWN:
        batch.letter("esp_unknown_event", f"RecordType {str(kind)[:40]!r} is not one pixeltrack knows", record)
        return
    bounce_type = text(record, "Type")
    if kind == "Bounce" and bounce_type not in HARD | SOFT | NOT_FAILURES | {"SpamComplaint", "Unsubscribe"}:
        batch.letter("esp_unknown_event", f"bounce Type {bounce_type[:40]!r} is not one pixeltrack knows", record)
        return
    if (kind == "Bounce" and bounce_type in NOT_FAILURES) or (
            kind == "SubscriptionChange" and record.get("SuppressSending") is not True):
        batch.ignore()  # a resubscription, an auto-reply
        return
    when = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "SpamComplaint": "BouncedAt",
            "SubscriptionChange": "ChangedAt"}.get(kind, "ReceivedAt")
    metadata = record.get("Metadata")
    try:
        who = identity(metadata if isinstance(metadata, dict) else None)
        ts = epoch(record.get(when))
    except ValueError as exc:
        batch.letter("esp_malformed_event", str(exc), record)
        return
    if who is None:
        batch.not_ours()
        return
    message = text(record, "MessageID")
    if kind in ("Open", "Click"):
        ip, ua, url = text(record, "Geo", "IP"), text(record, "UserAgent"), text(record, "OriginalLink")
        batch.hit(who, kind.lower(), event_id(message, kind, record.get(when), ip, ua, url), ts, ip, ua, url=url,
                  event=record)
        return
    raw_id = str(record["ID"]) if isinstance(record.get("ID"), int | str) else event_id(message, kind, record.get(when))
    detail = text(record, "Details") or text(record, "Description")
    if kind == "Delivery":
        batch.delivery(who, "delivered", raw_id, ts, diagnostic=detail)
    elif kind == "SpamComplaint" or bounce_type == "SpamComplaint":
        batch.delivery(who, "complained", raw_id, ts)
    elif kind == "SubscriptionChange" or bounce_type == "Unsubscribe":
        batch.delivery(who, "unsubscribed", raw_id, ts)
    else:
        batch.delivery(who, "bounced", raw_id, ts, bounce="hard" if bounce_type in HARD else "soft",
                       diagnostic=f"{bounce_type}: {detail}")
