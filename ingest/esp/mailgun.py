"""Mailgun's webhooks: the HMAC signature in the body, and the event mapped.

Each POST is one event, `{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`; the
signature is the hex HMAC-SHA256 of timestamp + token with the domain's HTTP webhook signing key. The
sender's variables (X-Mailgun-Variables / "v:" parameters) are the event's "user-variables"; Mailgun's own
bot detection is `client-info.bot` ("apple", "gmail", "generic", or empty).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from ingest.esp.common import Batch, Context, Refused, epoch, event_id, fresh, identity, json_body, smtp_code, text
from schemas.esp import EspSecrets

IGNORED = frozenset({"accepted", "stored"})
KNOWN = frozenset({"delivered", "failed", "rejected", "opened", "clicked", "unsubscribed", "complained"}) | IGNORED


def signature_of(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify(key: str, signature: Any) -> bool:
    """Whether the body's signature object is the key's HMAC of its timestamp and token."""
    if not isinstance(signature, dict):
        return False
    timestamp, token, given = signature.get("timestamp"), signature.get("token"), signature.get("signature")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        return False
    return hmac.compare_digest(signature_of(key, timestamp, token).encode(), given.encode("utf-8", "replace"))


async def take(body: bytes, headers: Mapping[str, str], secrets: EspSecrets, batch: Batch,
               ctx: Context) -> dict[str, Any] | None:
    doc = json_body(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("event-data"), dict):
        raise Refused(400, "bad_request", "body must be Mailgun's {\"signature\": {...}, \"event-data\": {...}}")
    if not verify(secrets.mailgun_signing_key, doc.get("signature")):
        raise Refused(401, "bad_signature", "signature does not verify with this tenant's Mailgun signing key")
    fresh(doc["signature"]["timestamp"], ctx)
    one(doc["event-data"], batch)
    return None


def one(event: dict[str, Any], batch: Batch) -> None:
    kind = event.get("event")
    if kind not in KNOWN:
        batch.letter("esp_unknown_event", f"event type {str(kind)[:40]!r} is not one pixeltrack knows", event)
        return
    if kind in IGNORED:
        batch.ignore()
        return
    variables = event.get("user-variables")
    try:
        who = identity(variables if isinstance(variables, dict) else None)
        ts = epoch(event.get("timestamp"))
    except ValueError as exc:
        batch.letter("esp_malformed_event", str(exc), event)
        return
    if who is None:
        batch.not_ours()
        return
    raw_id = text(event, "id") or event_id(kind, text(event, "message", "headers", "message-id"),
                                           event.get("timestamp"), event.get("url"))
    found = event.get("delivery-status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    diagnostic = text(status, "message") or text(status, "description") or text(event, "reason")
    if kind in ("opened", "clicked"):
        bot = text(event, "client-info", "bot")
        batch.hit(who, "open" if kind == "opened" else "click", raw_id, ts, text(event, "ip"),
                  text(event, "client-info", "user-agent"), url=text(event, "url"), machine=bool(bot), event=event)
    elif kind == "delivered":
        batch.delivery(who, "delivered", raw_id, ts, smtp_code=smtp_code(status.get("code")), diagnostic=diagnostic)
    elif kind == "failed":
        # A temporary failure is retried by Mailgun (a deferral); a permanent one is final.
        if event.get("severity") == "temporary":
            batch.delivery(who, "deferred", raw_id, ts, smtp_code=smtp_code(status.get("code")), diagnostic=diagnostic)
        else:
            batch.delivery(who, "bounced", raw_id, ts, bounce="hard", smtp_code=smtp_code(status.get("code")),
                           diagnostic=diagnostic or text(event, "reason"))
    elif kind == "rejected":
        batch.delivery(who, "bounced", raw_id, ts, bounce="hard",
                       diagnostic=f"rejected by Mailgun: {text(event, 'reject', 'reason')}")
    elif kind == "complained":
        batch.delivery(who, "complained", raw_id, ts)
    else:  # unsubscribed
        batch.delivery(who, "unsubscribed", raw_id, ts)
