"""Recipient events: the [recipient_events] table, records → one action each (key, body), signatures."""

from __future__ import annotations

import re

import pytest

from processors.triggers.recipient_events import RecipientEventMapper
from processors.triggers.records import idempotency_key
from processors.triggers.rules import RecipientEvents, RuleError, parse_rules
from processors.triggers.signature import sign, verify_signature
from schemas.consents import Consent
from schemas.deliveries import Delivery
from schemas.sends import Unsubscribe
from schemas.topics import Topics

SECRET = "recipient-events-secret-0123"
WEBHOOKS = f"""
[webhooks.crm]
url = "https://crm.example.com/hook"
secret = "{SECRET}"

[webhooks.acme-crm]
url = "https://acme.example.com/hook"
secret = "{SECRET}"
"""
T = Topics("p.")
TS = 1_796_000_000.25


def mapper(table: str = '[recipient_events]\nwebhook = "crm"\n') -> RecipientEventMapper:
    rules = parse_rules(WEBHOOKS + table)
    assert rules.recipient_events is not None
    assert rules.rules == ()  # no [[rules]] needed for recipient events alone
    return RecipientEventMapper(T, rules.recipient_events)


def test_consent_change_is_one_action_with_a_pinned_body() -> None:
    c = Consent("acme", "r-1", "denied", TS, "preferences")
    action = mapper().action(T.consents, c.encode())
    assert action is not None
    key = idempotency_key("consent.changed", "acme", "r-1", f"consent:denied:preferences:{TS!r}")
    assert (action.key, action.rule, action.webhook) == (key, "consent.changed", "crm")
    assert action.body() == (
        b'{"id":"' + key.encode() + b'","recipient":"r-1","source":"preferences","state":"denied",'
        b'"tenant":"acme","text_version":"","ts":1796000000.25,"type":"consent.changed"}')


def test_a_record_read_again_gives_the_same_key_and_bytes_and_another_change_another_key() -> None:
    m = mapper()
    c = Consent("acme", "r-1", "granted", TS, "preferences", "v3")
    first, again = m.action(T.consents, c.encode()), m.action(T.consents, c.encode())
    assert first is not None
    assert again is not None
    assert (first.key, first.body()) == (again.key, again.body())
    later = m.action(T.consents, Consent("acme", "r-1", "denied", TS + 5, "preferences").encode())
    assert later is not None
    assert later.key != first.key
    other = m.action(T.consents, Consent("acme", "r-2", "granted", TS, "preferences", "v3").encode())
    assert other is not None
    assert other.key != first.key


def test_our_unsubscribe_carries_the_recipient_id_and_message() -> None:
    u = Unsubscribe("acme", "f" * 64, "spring", "m-1", TS, "r-1")
    action = mapper().action(T.unsubscribes, u.encode())
    assert action is not None
    assert action.rule == "recipient.unsubscribed"
    assert action.key == idempotency_key("recipient.unsubscribed", "acme", "f" * 64, f"unsubscribe:m-1:{TS!r}")
    assert action.payload == {"id": action.key, "type": "recipient.unsubscribed", "tenant": "acme",
                              "recipient": "r-1", "campaign": "spring", "message": "m-1", "ts": TS,
                              "via": "pixeltrack"}
    # An unsubscribe from an edge of before the recipient field: sent with the message only.
    old = (b'{"tenant":"acme","recipient_hash":"' + b"f" * 64
           + b'","campaign":"c","message":"m-2","ts":1796000000.0,"v":1}')
    action = mapper().action(T.unsubscribes, old)
    assert action is not None
    assert (action.payload["recipient"], action.payload["message"]) == ("", "m-2")


def test_platform_unsubscribes_and_complaints_only() -> None:
    m = mapper()
    complaint = Delivery("acme", "m-1", "complained", "ses-9", TS, campaign="spring", recipient="r-1", platform="ses")
    action = m.action(T.deliveries, complaint.encode())
    assert action is not None
    assert action.key == idempotency_key("recipient.complained", "acme", "m-1", "delivery:complained:ses-9")
    assert action.payload == {"id": action.key, "type": "recipient.complained", "tenant": "acme", "recipient": "r-1",
                              "campaign": "spring", "message": "m-1", "ts": TS, "via": "ses", "event_id": "ses-9"}
    unsub = m.action(T.deliveries, Delivery("acme", "m-1", "unsubscribed", "e1", TS, platform="postmark").encode())
    assert unsub is not None
    assert unsub.rule == "recipient.unsubscribed"
    for d in (Delivery("acme", "m-1", "delivered", "e2", TS, platform="postmark"),
              Delivery("acme", "m-1", "bounced", "e3", TS, bounce="hard", platform="postmark"),
              Delivery("acme", "m-1", "unsubscribed", "e4", TS)):  # the sender's own report: not sent back
        assert m.action(T.deliveries, d.encode()) is None


def test_tenants_and_events_choose_the_webhook() -> None:
    m = mapper('[recipient_events]\nwebhook = "crm"\nevents = ["consent.changed"]\n'
               'tenants = { acme = "acme-crm", quiet = "" }\n')
    assert m.config == RecipientEvents("crm", {"acme": "acme-crm", "quiet": ""}, frozenset({"consent.changed"}))
    for tenant, webhook in (("acme", "acme-crm"), ("other", "crm"), ("quiet", None)):
        action = m.action(T.consents, Consent(tenant, "r", "denied", TS, "preferences").encode())
        assert (action.webhook if action else None) == webhook
    assert m.action(T.unsubscribes, Unsubscribe("acme", "h", "c", "m", TS, "r").encode()) is None
    only_acme = mapper('[recipient_events]\ntenants = { acme = "acme-crm" }\n')
    assert only_acme.action(T.consents, Consent("other", "r", "denied", TS, "preferences").encode()) is None


def test_consents_the_sender_recorded_itself_are_not_sent_back_unless_asked() -> None:
    own = [Consent("acme", "r", "granted", TS, source, "v1") for source in ("api", "csv", "sdk")]
    assert [mapper().action(T.consents, c.encode()) for c in own] == [None, None, None]
    every = mapper('[recipient_events]\nwebhook = "crm"\nconsent_sources = ["preferences", "api", "csv", "sdk"]\n')
    sent = [every.action(T.consents, c.encode()) for c in own]
    assert [a.payload["source"] for a in sent if a is not None] == ["api", "csv", "sdk"]


@pytest.mark.parametrize("value", [b"{not json", b"[1]", b'{"tenant":"a"}',
                                   b'{"tenant":"a","recipient":"r","state":"maybe","ts":1796000000,"source":"api"}'])
def test_undecodable_records_raise_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the runner turns any of them into a dead letter
        mapper().action(T.consents, value)
    with pytest.raises(ValueError, match="no recipient events"):
        mapper().action(T.sends, b"{}")


@pytest.mark.parametrize(("table", "expected"), [
    ('[recipient_events]\nwebhook = "slack"\n', "key 'webhook': 'slack' is not defined"),
    ('[recipient_events]\ntenants = { acme = "slack" }\n', "key 'tenants': tenant 'acme': 'slack' is not defined"),
    ('[recipient_events]\nwebhook = "crm"\nevents = ["consent.given"]\n',
     "key 'events': ['consent.given'] are not event types"),
    ('[recipient_events]\nurl = "x"\n', "unknown key 'url'"),
    ('[recipient_events]\nwebhook = "crm"\nconsent_sources = ["crm"]\n',
     "key 'consent_sources': ['crm'] are not consent sources; valid: api, csv, sdk, preferences"),
    ('[recipient_events]\n', "no webhook"),
])
def test_table_errors_name_the_key(table: str, expected: str) -> None:
    with pytest.raises(RuleError, match=re.escape("rules.toml: [recipient_events]")) as info:
        parse_rules(WEBHOOKS + table, source="rules.toml")
    assert expected in str(info.value)


def test_the_body_is_signed_as_sent() -> None:
    action = mapper().action(T.consents, Consent("acme", "r-1", "denied", TS, "preferences").encode())
    assert action is not None
    header = sign(SECRET, action.body(), 1_796_000_100)
    assert verify_signature(SECRET, header, action.body(), now=1_796_000_100) == 1_796_000_100
    with pytest.raises(ValueError, match="bad_signature"):
        verify_signature(SECRET, header, action.body().replace(b"denied", b"granted"), now=1_796_000_100)


def test_the_recipient_events_example_in_the_docs_is_valid() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[4] / "docs" / "triggers.md").read_text()
    _rules, example = re.findall(r"```toml\n(.*?)```", doc, re.S)
    rules = parse_rules(example, default_secret="global-secret-0123456789", source="docs/triggers.md")
    assert rules.rules == ()
    assert rules.recipient_events == RecipientEvents(
        "crm", {"acme": "acme-crm", "sandbox": ""},
        frozenset({"consent.changed", "recipient.unsubscribed", "recipient.complained"}))
    assert rules.webhooks["crm"].secret == b"global-secret-0123456789"
