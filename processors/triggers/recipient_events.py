"""Recipient events → webhooks: every consent change, unsubscribe and complaint as one signed webhook.

What a recipient decided must reach the sender's CRM or email platform fast (large mailbox providers
want an unsubscribe honoured within two days; a withdrawn consent stops individual tracking at once).
Three topics carry those decisions:

- `consents` (Consent): a choice the recipient made on the preferences page (/p/<token>); what the
  sender recorded itself (api, csv, sdk) only where the table's `consent_sources` names it;
- `unsubscribes` (Unsubscribe): the edge's own one-click unsubscribes (/u/<token>);
- `deliveries` (Delivery) of type `unsubscribed` or `complained` reported by an email platform's
  webhook (`platform` set); what the sender reported itself (`POST /v1/events`) is not sent back.

Each record is one change and one action (event type = the action's rule, sent in X-Pixeltrack-Rule).
Its idempotency key and body are made from the record alone, so a record read again (a restart
before its offset was committed, an edge's spool replayed) is delivered under the same key with the
same bytes: receivers deduplicate on the body's `id`. The runner is recipient_runner.py.
"""

from __future__ import annotations

from typing import Any

from processors.triggers.records import Action, idempotency_key
from processors.triggers.rules import (
    CONSENT_CHANGED,
    RECIPIENT_COMPLAINED,
    RECIPIENT_UNSUBSCRIBED,
    RecipientEvents,
)
from schemas.consents import Consent
from schemas.deliveries import Delivery
from schemas.sends import Unsubscribe
from schemas.topics import Topics

OURS = "pixeltrack"
"""`via` of an unsubscribe taken by pixeltrack's own edge."""
_DELIVERY_EVENTS = {"unsubscribed": RECIPIENT_UNSUBSCRIBED, "complained": RECIPIENT_COMPLAINED}


def consent_action(c: Consent, webhook: str) -> Action:
    key = idempotency_key(CONSENT_CHANGED, c.tenant, c.recipient, f"consent:{c.state}:{c.source}:{c.ts!r}")
    payload: dict[str, Any] = {"id": key, "type": CONSENT_CHANGED, "tenant": c.tenant, "recipient": c.recipient,
                               "state": c.state, "ts": c.ts, "source": c.source, "text_version": c.text_version}
    return Action(key, CONSENT_CHANGED, webhook, payload)


def unsubscribe_action(u: Unsubscribe, webhook: str) -> Action:
    key = idempotency_key(RECIPIENT_UNSUBSCRIBED, u.tenant, u.recipient_hash, f"unsubscribe:{u.message}:{u.ts!r}")
    payload: dict[str, Any] = {"id": key, "type": RECIPIENT_UNSUBSCRIBED, "tenant": u.tenant,
                               "recipient": u.recipient, "campaign": u.campaign, "message": u.message,
                               "ts": u.ts, "via": OURS}
    return Action(key, RECIPIENT_UNSUBSCRIBED, webhook, payload)


def delivery_action(d: Delivery, event_type: str, webhook: str) -> Action:
    key = idempotency_key(event_type, d.tenant, d.message, f"delivery:{d.type}:{d.id}")
    payload: dict[str, Any] = {"id": key, "type": event_type, "tenant": d.tenant, "recipient": d.recipient,
                               "campaign": d.campaign, "message": d.message, "ts": d.ts, "via": d.platform,
                               "event_id": d.id}
    return Action(key, event_type, webhook, payload)


class RecipientEventMapper:
    """Records of the three topics → the action to deliver, or None (not such an event, or no webhook
    for its tenant). Raises ValueError for a record that does not decode (a dead letter)."""

    def __init__(self, topics: Topics, config: RecipientEvents) -> None:
        self.config = config
        self.topics = topics
        self.names = (topics.consents, topics.unsubscribes, topics.deliveries)

    def action(self, topic: str, value: bytes | None) -> Action | None:
        if value is None:
            raise ValueError("empty record")
        try:
            return self._action(topic, value)
        except TypeError as exc:  # a JSON object without a required field
            raise ValueError(f"{topic}: {exc}") from None

    def _action(self, topic: str, value: bytes) -> Action | None:
        if topic == self.topics.consents:
            c = Consent.decode(value)
            webhook = self.config.webhook_for(c.tenant, CONSENT_CHANGED)
            return consent_action(c, webhook) if webhook and c.source in self.config.consent_sources else None
        if topic == self.topics.unsubscribes:
            u = Unsubscribe.decode(value)
            webhook = self.config.webhook_for(u.tenant, RECIPIENT_UNSUBSCRIBED)
            return unsubscribe_action(u, webhook) if webhook else None
        if topic == self.topics.deliveries:
            d = Delivery.decode(value)
            event_type = _DELIVERY_EVENTS.get(d.type)
            if event_type is None or not d.platform:
                return None
            webhook = self.config.webhook_for(d.tenant, event_type)
            return delivery_action(d, event_type, webhook) if webhook else None
        raise ValueError(f"topic {topic!r} carries no recipient events")
