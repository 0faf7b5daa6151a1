"""Hit v1: one decoded pixel or click fetch, the unit that enrichment and classification work on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from schemas.timefmt import format_ts, parse_ts

HitKind = Literal["open", "click", "download", "visit"]
# "visit": a page view on the sender's site after a click (the site script, schemas/site.py). A fetch of one of the
# email's own images (/i/) is an open: its Hit has kind "open", the image as `link`.
KINDS: frozenset[str] = frozenset({"open", "click", "download", "visit"})

# The hit v1 JSON-lines fields (docs/architecture.md, "Records"); `label` exists only in fixtures.
# Optional besides: variant, tenant, and link_flags (the token's flags, e.g. FLAG_UNSUBSCRIBE).
V1_FIELDS = ("id", "ts", "kind", "method", "ip", "ua", "headers", "message", "recipient", "campaign",
             "link", "honeypot", "sent_at")


@dataclass(slots=True)
class Hit:
    """A fetch of a signed pixel or link, with the token already verified and decoded.

    `ts` and `sent_at` are epoch seconds. `headers` holds only the few lower-case request headers
    that matter for classification (accept, accept-language, via, x-forwarded-for, sec-purpose,
    purpose, sec-fetch-*). `link` is the destination (or link id) for clicks and downloads, "" for the
    pixel's opens and the image's address for opens through the email's own images.
    """

    id: str
    ts: float
    kind: str
    method: str
    ip: str
    ua: str
    message: str
    recipient: str
    campaign: str
    sent_at: float
    headers: dict[str, str] = field(default_factory=dict)
    link: str = ""
    honeypot: bool = False
    variant: str = ""
    tenant: str = ""
    # Facts from the token and the edge that rows carry but classification does not need.
    link_id: str = ""
    link_flags: int = 0
    host: str = ""
    edge: str = ""
    # Hits an email platform reported (ingest/esp): the platform, and whether it flagged a machine.
    origin: str = ""
    origin_machine: bool = False
    click_hit_id: str = ""  # a visit's: the hit id of the click that brought the visitor

    @classmethod
    def from_v1(cls, obj: dict[str, Any]) -> Hit:
        """Build from a decoded hit v1 JSON object; raises ValueError naming a missing or bad field."""
        try:
            kind = obj["kind"]
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
            headers = obj.get("headers") or {}
            if not isinstance(headers, dict):
                raise ValueError("headers must be an object")
            link_flags = obj.get("link_flags") or 0
            if not isinstance(link_flags, int) or isinstance(link_flags, bool) or link_flags < 0:
                raise ValueError(f"link_flags must be a non-negative integer, got {link_flags!r}")
            return cls(
                id=str(obj["id"]),
                ts=parse_ts(obj["ts"]),
                kind=kind,
                method=str(obj.get("method") or "GET").upper(),
                ip=str(obj.get("ip") or ""),
                ua=str(obj.get("ua") or ""),
                headers={str(k).lower(): str(v) for k, v in headers.items()},
                message=str(obj["message"]),
                recipient=str(obj.get("recipient") or ""),
                campaign=str(obj.get("campaign") or ""),
                link=str(obj.get("link") or ""),
                honeypot=bool(obj.get("honeypot", False)),
                sent_at=parse_ts(obj["sent_at"]),
                variant=str(obj.get("variant") or ""),
                tenant=str(obj.get("tenant") or ""),
                link_flags=link_flags,
            )
        except KeyError as exc:
            raise ValueError(f"hit v1 record lacks the field {exc.args[0]!r}") from None

    def to_v1(self) -> dict[str, Any]:
        """The hit v1 JSON object (timestamps as ISO-8601 UTC)."""
        out: dict[str, Any] = {
            "id": self.id, "ts": format_ts(self.ts), "kind": self.kind, "method": self.method,
            "ip": self.ip, "ua": self.ua, "headers": self.headers, "message": self.message,
            "recipient": self.recipient, "campaign": self.campaign, "link": self.link or None,
            "honeypot": self.honeypot, "sent_at": format_ts(self.sent_at),
        }
        if self.variant:
            out["variant"] = self.variant
        if self.tenant:
            out["tenant"] = self.tenant
        if self.link_flags:
            out["link_flags"] = self.link_flags
        return out


def loads_v1(line: bytes | str) -> Hit:
    """Decode one hit v1 JSON line; raises ValueError with the reason on bad input."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("a hit v1 line must be a JSON object")
    return Hit.from_v1(obj)
