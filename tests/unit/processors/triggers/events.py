"""Builders for the triggers' tests: classified events, from the real classifier or by hand, and rules."""

from __future__ import annotations

from collections.abc import Iterable

from processors.classify import Decision
from processors.triggers.rules import RuleSet, parse_rules
from schemas.classified import ClassifiedEvent

SECRET = "test-webhook-secret-0123456789"
NOW = 1_796_000_000.0  # the engine's clock at the start of a test (epoch seconds)


def rules_text(url: str = "http://127.0.0.1:9/hook", *, within: str = "1h", min_opens: int = 3,
               extra: str = "") -> str:
    """One webhook, a `pricing` tag and one rule of each type."""
    return f"""
[webhooks.crm]
url = "{url}"
secret = "{SECRET}"
timeout = "5s"

[tags.pricing]
link_ids = ["pricing"]
url_contains = ["/pricing"]

[[rules]]
name = "tell-sales"
type = "tagged_click"
tags = ["pricing"]

[[rules]]
name = "first-open"
type = "first_open"

[[rules]]
name = "call-them"
type = "opens_without_click"
min_opens = {min_opens}
within = "{within}"
{extra}"""


def make_rules(url: str = "http://127.0.0.1:9/hook", *, within: str = "1h", min_opens: int = 3,
               extra: str = "") -> RuleSet:
    return parse_rules(rules_text(url, within=within, min_opens=min_opens, extra=extra))


def event(hit_id: str, kind: str = "open", *, ts: float = NOW, verdict: str = "human", revision: int = 0,
          message: str = "m-1", recipient: str = "r-1", link: str = "", link_id: str = "", flags: int = 0,
          source: str = "direct", reasons: tuple[str, ...] = ("no_machine_signal",), tenant: str = "acme",
          campaign: str = "spring") -> ClassifiedEvent:
    return ClassifiedEvent(tenant, hit_id, kind, ts, NOW - 3600, campaign, "A", message, recipient, link, link_id,
                           flags, verdict, source, reasons, revision)


def from_decisions(decisions: Iterable[Decision], tenant: str = "acme", link_ids: dict[str, str] | None = None,
                   flags: dict[str, int] | None = None) -> list[ClassifiedEvent]:
    """The events.classified records the processors publish for these decisions (pipeline.py's mapping)."""
    out = []
    for d in decisions:
        h, v = d.hit, d.verdict
        out.append(ClassifiedEvent(tenant, h.id, h.kind, h.ts, h.sent_at, h.campaign, h.variant, h.message,
                                   h.recipient, h.link, (link_ids or {}).get(h.link, h.link_id),
                                   (flags or {}).get(h.link, h.link_flags), v.verdict, v.source, v.reasons,
                                   d.revision))
    return out
