"""For senders: mint signed pixel and click URLs for one message to one recipient."""

from __future__ import annotations

import time
from dataclasses import dataclass

from schemas.tokens import FLAG_HONEYPOT, FLAG_NO_CLICK_ID, FLAG_UNSUBSCRIBE, Keyring, TokenKind, TokenPayload

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Message:
    """Who a message goes to and what it belongs to. sent_at is epoch ms (default: now)."""

    campaign: str
    message: str
    recipient: str
    variant: str = ""
    tenant: str = ""
    sent_at: int = 0


class Tracker:
    """Mints URLs on a tracking base URL (e.g. https://t.example.com). Tokens expire after ttl_days
    (0 = never)."""

    def __init__(self, base_url: str, keyring: Keyring, ttl_days: int = 400) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self._keyring = keyring
        self._ttl_ms = ttl_days * DAY_MS

    def _payload(self, m: Message, kind: TokenKind, url: str = "", link_id: str = "",
                 flags: int = 0) -> TokenPayload:
        sent_at = m.sent_at or int(time.time() * 1000)
        return TokenPayload(kind=kind, tenant=m.tenant, campaign=m.campaign, variant=m.variant,
                            message=m.message, recipient=m.recipient, sent_at=sent_at,
                            expires_at=sent_at + self._ttl_ms if self._ttl_ms else 0,
                            url=url, link_id=link_id, flags=flags)

    def pixel_url(self, m: Message) -> str:
        return f"{self.base_url}/o/{self._keyring.mint(self._payload(m, 'open'))}.gif"

    def click_url(self, m: Message, url: str, link_id: str = "", honeypot: bool = False,
                  unsubscribe: bool = False, click_id: bool = True) -> str:
        flags = ((FLAG_HONEYPOT if honeypot else 0) | (FLAG_UNSUBSCRIBE if unsubscribe else 0)
                 | (0 if click_id else FLAG_NO_CLICK_ID))
        token = self._keyring.mint(self._payload(m, "click", url=url, link_id=link_id, flags=flags))
        return f"{self.base_url}/c/{token}"
