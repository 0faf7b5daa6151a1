"""Trigger rules: a TOML rules file read into typed, checked rules; every error names the rule and key."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from schemas.consents import CONSENT_SOURCES
from schemas.verdicts import COUNTED, HUMAN

OPENS_WITHOUT_CLICK: Final = "opens_without_click"
"""N opens by a person (verdict human or proxy) of one message, then no human click within T: fire at the
Nth open + T (evaluated once that moment has settled)."""
TAGGED_CLICK: Final = "tagged_click"
"""A human click on a link carrying one of the rule's tags: fire as soon as the click has settled."""
FIRST_OPEN: Final = "first_open"
"""The first open by a person of one message: fire as soon as it has settled (a real-time alert)."""

RuleType = Literal["opens_without_click", "tagged_click", "first_open"]
RULE_TYPES: tuple[RuleType, ...] = (OPENS_WITHOUT_CLICK, TAGGED_CLICK, FIRST_OPEN)

# Verdicts that show a person (docs/architecture.md, "Records"). Machine and duplicate never count.
PERSON_VERDICTS = COUNTED
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_SECRET_CHARS = 16
DEFAULT_REMEMBER = 90 * 86400.0
DEFAULT_TIMEOUT = 10.0
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_TOP_KEYS = ("remember", "default_webhook", "webhooks", "tags", "rules", "recipient_events")
_RECIPIENT_EVENTS_KEYS = ("webhook", "tenants", "events", "consent_sources")
CONSENT_CHANGED: Final = "consent.changed"
RECIPIENT_UNSUBSCRIBED: Final = "recipient.unsubscribed"
RECIPIENT_COMPLAINED: Final = "recipient.complained"
RECIPIENT_EVENT_TYPES = (CONSENT_CHANGED, RECIPIENT_UNSUBSCRIBED, RECIPIENT_COMPLAINED)
"""What a recipient did that the sender must honour, each sent as one webhook (recipient_events.py)."""
_WEBHOOK_KEYS = ("url", "secret", "timeout")
_TAG_KEYS = ("link_ids", "url_contains", "url_regex")
_RULE_KEYS = {
    OPENS_WITHOUT_CLICK: ("name", "type", "webhook", "tenants", "campaigns", "min_opens", "within", "verdicts"),
    TAGGED_CLICK: ("name", "type", "webhook", "tenants", "campaigns", "tags"),
    FIRST_OPEN: ("name", "type", "webhook", "tenants", "campaigns", "verdicts"),
}


class RuleError(ValueError):
    """A rules file that cannot be used. The message names the file, the rule (or table) and the key,
    shows the bad value and says what would be valid."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a rule's actions go: a POST of JSON to `url`, signed with `secret` (UTF-8 bytes)."""

    name: str
    url: str
    secret: bytes = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    """Seconds one attempt may take, answer included."""


@dataclass(frozen=True, slots=True)
class Tag:
    """A set of links: by link id (exact), by a substring of the URL, or by a regular expression
    searched in the URL. A link carries the tag when any of them matches."""

    name: str
    link_ids: frozenset[str] = frozenset()
    url_contains: tuple[str, ...] = ()
    url_regex: tuple[re.Pattern[str], ...] = ()

    def matches(self, link_id: str, link: str) -> bool:
        # A token minted with a link id only carries the id as its link too, so both are tried.
        if link_id in self.link_ids or (link and link in self.link_ids):
            return True
        if any(s in link for s in self.url_contains):
            return True
        return any(p.search(link) for p in self.url_regex)


@dataclass(frozen=True, slots=True)
class Rule:
    """One trigger. `verdicts` are the verdicts that count as a person's open (open rules); clicks
    count only with verdict human, never on unsubscribe or honeypot links."""

    name: str
    type: RuleType
    webhook: str
    verdicts: frozenset[str] = PERSON_VERDICTS
    tenants: frozenset[str] | None = None
    """Only these tenants (None: all)."""
    campaigns: frozenset[str] | None = None
    """Only these campaigns (None: all)."""
    min_opens: int = 1
    within: float = 0.0
    """opens_without_click: seconds after the Nth open in which no human click may come."""
    tags: tuple[Tag, ...] = ()

    def applies(self, tenant: str, campaign: str) -> bool:
        return ((self.tenants is None or tenant in self.tenants)
                and (self.campaigns is None or campaign in self.campaigns))

    def matched_tags(self, link_id: str, link: str) -> list[str]:
        return [t.name for t in self.tags if t.matches(link_id, link)]


@dataclass(frozen=True, slots=True)
class RecipientEvents:
    """The `[recipient_events]` table: which webhook gets each tenant's consent changes, unsubscribes and
    complaints. `tenants` maps a tenant to its webhook ("" = none for it); the others get `webhook`
    (None = nothing). `events`: the event types sent. `consent_sources`: the consent changes sent, by
    source; by default only the recipient's own (`preferences`): what the sender recorded itself (api,
    csv, sdk: a list of a million consents, say) is not sent back to it."""

    webhook: str | None
    tenants: Mapping[str, str] = field(default_factory=dict)
    events: frozenset[str] = frozenset(RECIPIENT_EVENT_TYPES)
    consent_sources: frozenset[str] = frozenset({"preferences"})

    def webhook_for(self, tenant: str, event_type: str) -> str | None:
        """The webhook name an event of `tenant` goes to, or None when it is not sent."""
        if event_type not in self.events:
            return None
        name = self.tenants.get(tenant, self.webhook)
        return name or None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule and webhook of one rules file. `remember` is how long (seconds) what a rule did for a
    recipient and message is kept: within it, a rule fires at most once per recipient and message."""

    rules: tuple[Rule, ...]
    webhooks: Mapping[str, Webhook]
    remember: float = DEFAULT_REMEMBER
    source: str = "<rules>"
    recipient_events: RecipientEvents | None = None
    """Consent changes, unsubscribes and complaints → webhooks (None: not sent)."""

    def rule(self, name: str) -> Rule | None:
        for r in self.rules:
            if r.name == name:
                return r
        return None


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a text such as "90s", "30m", "12h", "3d", "1w", "1d12h"."""
    if isinstance(value, bool):
        raise RuleError(f"{where}: {value!r} is not a duration such as 90s, 30m, 12h, 3d or 1d12h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = _DURATION_RE.findall(text)
        if not parts or _DURATION_RE.sub("", text).strip():
            raise RuleError(f"{where}: {value!r} is not a duration such as 90s, 30m, 12h, 3d or 1d12h")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise RuleError(f"{where}: {value!r} is not a duration such as 90s, 30m, 12h, 3d or 1d12h")
    if seconds <= 0:
        raise RuleError(f"{where}: {value!r} must be longer than zero")
    return seconds


def load_rules(path: Path, default_secret: str | bytes | None = None) -> RuleSet:
    """The rules of a TOML file. `default_secret` signs for webhooks that give no `secret` of their own
    (the global webhook secret from the settings). Raises RuleError naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{path}: cannot read the rules file: {exc.strerror or exc}") from None
    return parse_rules(text, default_secret, source=str(path))


def parse_rules(text: str, default_secret: str | bytes | None = None, source: str = "<rules>") -> RuleSet:
    """The rules of a TOML text (see load_rules)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{source}: not valid TOML: {exc}") from None
    _no_unknown(doc, _TOP_KEYS, source)
    remember = parse_duration(doc["remember"], f"{source}: key 'remember'") if "remember" in doc else DEFAULT_REMEMBER
    secret = default_secret.encode() if isinstance(default_secret, str) else default_secret
    webhooks = {name: _webhook(name, spec, secret, source)
                for name, spec in _table(doc.get("webhooks", {}), f"{source}: key 'webhooks'").items()}
    tags = {name: _tag(name, spec, source)
            for name, spec in _table(doc.get("tags", {}), f"{source}: key 'tags'").items()}
    default_webhook = doc.get("default_webhook")
    if default_webhook is None and len(webhooks) == 1:
        default_webhook = next(iter(webhooks))
    if default_webhook is not None and default_webhook not in webhooks:
        raise RuleError(f"{source}: key 'default_webhook': {default_webhook!r} is not a webhook; defined: "
                        f"{sorted(webhooks) or 'none (add a [webhooks.NAME] table)'}")
    recipient_events = (_recipient_events(doc["recipient_events"], webhooks, default_webhook, source)
                        if "recipient_events" in doc else None)
    specs = doc.get("rules", [])
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise RuleError(f"{source}: key 'rules' must be an array of tables ([[rules]] sections)")
    if not specs and recipient_events is None:
        raise RuleError(f"{source}: no rules: add at least one [[rules]] section (or a [recipient_events] table)")
    rules: list[Rule] = []
    for i, spec in enumerate(specs):
        rule = _rule(i, spec, webhooks, tags, default_webhook, source)
        if any(r.name == rule.name for r in rules):
            raise RuleError(f"{source}: rule {rule.name!r} (rules[{i}]): key 'name': another rule has this name; "
                            "names must be unique (they are part of the idempotency key)")
        rules.append(rule)
    return RuleSet(tuple(rules), webhooks, remember, source, recipient_events)


# --- tables ----------------------------------------------------------------------------------------


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(f"{where} must be a table")
    return value


def _no_unknown(spec: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RuleError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(allowed)}")


def _name(name: object, where: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RuleError(f"{where}: {name!r} is not a name of 1-64 characters of [A-Za-z0-9_.-] "
                        "starting with a letter or digit")
    return name


def _strings(value: object, where: str, allow_empty_items: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{where}: {value!r} must be a non-empty list of strings")
    if not allow_empty_items and any(not v for v in value):
        raise RuleError(f"{where}: {value!r} holds an empty string")
    return tuple(value)


def _webhook(name: str, spec: object, secret: bytes | None, source: str) -> Webhook:
    where = f"{source}: webhook {name!r}"
    _name(name, f"{where}: name")
    s = _table(spec, where)
    _no_unknown(s, _WEBHOOK_KEYS, where)
    url = s.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise RuleError(f"{where}: key 'url': {url!r} is not an http(s) URL such as https://crm.example.com/hook")
    own = s.get("secret")
    if own is not None:
        if not isinstance(own, str) or len(own) < MIN_SECRET_CHARS:
            raise RuleError(f"{where}: key 'secret': must be a string of at least {MIN_SECRET_CHARS} characters")
        key = own.encode()
    elif secret is not None:
        if len(secret) < MIN_SECRET_CHARS:
            raise RuleError(f"{where}: the global webhook secret is shorter than {MIN_SECRET_CHARS} characters")
        key = secret
    else:
        raise RuleError(f"{where}: key 'secret': missing, and no global webhook secret is set "
                        "(PIXELTRACK_TRIGGERS_WEBHOOK_SECRET): give one or the other")
    timeout = parse_duration(s["timeout"], f"{where}: key 'timeout'") if "timeout" in s else DEFAULT_TIMEOUT
    return Webhook(name, url, key, timeout)


def _recipient_events(spec: object, webhooks: Mapping[str, Webhook], default_webhook: str | None,
                      source: str) -> RecipientEvents:
    where = f"{source}: [recipient_events]"
    s = _table(spec, where)
    _no_unknown(s, _RECIPIENT_EVENTS_KEYS, where)
    defined = sorted(webhooks) or "none (add a [webhooks.NAME] table)"
    webhook = s.get("webhook", default_webhook)
    if webhook is not None and (not isinstance(webhook, str) or (webhook and webhook not in webhooks)):
        raise RuleError(f"{where}: key 'webhook': {webhook!r} is not defined; defined webhooks: {defined}")
    tenants = _table(s.get("tenants", {}), f"{where}: key 'tenants'")
    for tenant, name in tenants.items():
        if not isinstance(name, str) or (name and name not in webhooks):
            raise RuleError(f"{where}: key 'tenants': tenant {tenant!r}: {name!r} is not defined (\"\" sends nothing "
                            f"for it); defined webhooks: {defined}")
    if not webhook and not any(tenants.values()):
        raise RuleError(f"{where}: no webhook: give key 'webhook' (or a default_webhook), or one per tenant "
                        "under key 'tenants'")
    events = frozenset(_strings(s["events"], f"{where}: key 'events'")) if "events" in s else frozenset(
        RECIPIENT_EVENT_TYPES)
    unknown = sorted(events - set(RECIPIENT_EVENT_TYPES))
    if unknown:
        raise RuleError(f"{where}: key 'events': {unknown} are not event types; valid: "
                        f"{', '.join(RECIPIENT_EVENT_TYPES)}")
    sources = (frozenset(_strings(s["consent_sources"], f"{where}: key 'consent_sources'"))
               if "consent_sources" in s else frozenset({"preferences"}))
    unknown = sorted(sources - set(CONSENT_SOURCES))
    if unknown:
        raise RuleError(f"{where}: key 'consent_sources': {unknown} are not consent sources; valid: "
                        f"{', '.join(CONSENT_SOURCES)}")
    return RecipientEvents(webhook or None, dict(tenants), events, sources)


def _tag(name: str, spec: object, source: str) -> Tag:
    where = f"{source}: tag {name!r}"
    _name(name, f"{where}: name")
    s = _table(spec, where)
    _no_unknown(s, _TAG_KEYS, where)
    if not any(k in s for k in _TAG_KEYS):
        raise RuleError(f"{where}: give at least one of {', '.join(_TAG_KEYS)}")
    link_ids = frozenset(_strings(s["link_ids"], f"{where}: key 'link_ids'")) if "link_ids" in s else frozenset()
    contains = _strings(s["url_contains"], f"{where}: key 'url_contains'") if "url_contains" in s else ()
    patterns: list[re.Pattern[str]] = []
    for p in _strings(s["url_regex"], f"{where}: key 'url_regex'") if "url_regex" in s else ():
        try:
            patterns.append(re.compile(p))
        except re.error as exc:
            raise RuleError(f"{where}: key 'url_regex': {p!r} is not a regular expression ({exc})") from None
    return Tag(name, link_ids, contains, tuple(patterns))


def _rule(i: int, spec: dict[str, Any], webhooks: Mapping[str, Webhook], tags: Mapping[str, Tag],
          default_webhook: str | None, source: str) -> Rule:
    raw_name = spec.get("name")
    where = f"{source}: rule {raw_name!r} (rules[{i}])" if isinstance(raw_name, str) else f"{source}: rules[{i}]"
    if raw_name is None:
        raise RuleError(f"{where}: key 'name': missing; every rule needs a unique name")
    name = _name(raw_name, f"{where}: key 'name'")
    rtype = spec.get("type")
    if rtype not in RULE_TYPES:
        raise RuleError(f"{where}: key 'type': {rtype!r} is not one of {', '.join(RULE_TYPES)}")
    _no_unknown(spec, _RULE_KEYS[rtype], where)

    webhook = spec.get("webhook", default_webhook)
    if webhook is None:
        raise RuleError(f"{where}: key 'webhook': missing, and there is no default_webhook; defined webhooks: "
                        f"{sorted(webhooks) or 'none (add a [webhooks.NAME] table)'}")
    if webhook not in webhooks:
        raise RuleError(f"{where}: key 'webhook': {webhook!r} is not defined; defined webhooks: {sorted(webhooks)}")
    tenants = frozenset(_strings(spec["tenants"], f"{where}: key 'tenants'", allow_empty_items=True)) \
        if "tenants" in spec else None
    campaigns = frozenset(_strings(spec["campaigns"], f"{where}: key 'campaigns'")) if "campaigns" in spec else None

    verdicts = PERSON_VERDICTS
    if "verdicts" in spec:
        verdicts = frozenset(_strings(spec["verdicts"], f"{where}: key 'verdicts'"))
        bad = sorted(verdicts - PERSON_VERDICTS)
        if bad:
            raise RuleError(f"{where}: key 'verdicts': {bad} cannot count as a person's open; use human and/or "
                            "proxy (machine and duplicate hits never fire a trigger)")

    if rtype == TAGGED_CLICK:
        if "tags" not in spec:
            raise RuleError(f"{where}: key 'tags': missing; name the tags (from [tags.NAME]) whose clicks fire")
        chosen = []
        for t in _strings(spec["tags"], f"{where}: key 'tags'"):
            if t not in tags:
                raise RuleError(f"{where}: key 'tags': {t!r} is not defined; defined tags: "
                                f"{sorted(tags) or 'none (add a [tags.NAME] table)'}")
            chosen.append(tags[t])
        return Rule(name, rtype, webhook, frozenset({HUMAN}), tenants, campaigns, tags=tuple(chosen))
    if rtype == OPENS_WITHOUT_CLICK:
        n = spec.get("min_opens")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
            raise RuleError(f"{where}: key 'min_opens': {n!r} must be a whole number from 1 to 100")
        if "within" not in spec:
            raise RuleError(f"{where}: key 'within': missing; how long after the Nth open a click may come "
                            "(e.g. \"3d\")")
        within = parse_duration(spec["within"], f"{where}: key 'within'")
        return Rule(name, rtype, webhook, verdicts, tenants, campaigns, min_opens=n, within=within)
    return Rule(name, rtype, webhook, verdicts, tenants, campaigns)
