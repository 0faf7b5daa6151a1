"""Campaign-level tokens, aggregate sends, and what a tenant's unknown consent means."""

from __future__ import annotations

import base64
import json
import re

import orjson
import pytest

from schemas.aggregate import AggregateSends
from schemas.tenants import Tenant, TenantRegistry, validate
from schemas.tokens import DAY_MS, FLAG_NO_CLICK_ID, Keyring, TokenPayload, aggregate_payload

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")
NOW = 1_796_000_000.0


def wire_fields(token: str) -> list[object]:
    """The payload of a token as its bytes say, decoded by hand (no pixeltrack code)."""
    body = token.split(".")[1]
    fields: list[object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return fields


def test_an_aggregate_token_carries_no_message_recipient_or_send_time() -> None:
    token = KEYRING.mint(aggregate_payload("click", "acme", "spring", "B", 1_796_000_123_456,
                                           "https://shop.example.com/sale", "sale"))
    # kind, tenant, campaign, variant, message, recipient, sent_at, expires_at, url, link_id, flags
    assert wire_fields(token) == ["c", "acme", "spring", "B", "", "", 0, 1_796_083_200_000,
                                  "https://shop.example.com/sale", "sale", FLAG_NO_CLICK_ID]
    payload = KEYRING.verify(token, "click")
    assert payload.aggregate
    assert (payload.message, payload.recipient, payload.sent_at) == ("", "", 0)
    assert payload.expires_at % DAY_MS == 0  # a whole day: the expiry does not tell one mint from another


def test_every_recipient_of_a_variant_gets_the_same_aggregate_pixel() -> None:
    a = KEYRING.mint(aggregate_payload("open", "", "spring", "A", 1_796_000_000_001))
    b = KEYRING.mint(aggregate_payload("open", "", "spring", "A", 1_796_000_999_999))
    assert a == b
    assert wire_fields(a) == ["o", "", "spring", "A", "", "", 0, 1_796_083_200_000]


def test_an_individual_token_is_not_aggregate() -> None:
    p = TokenPayload("open", "", "spring", "A", "m-1", "r-1", 1_796_000_000_000)
    assert not KEYRING.verify(KEYRING.mint(p), "open").aggregate


def test_aggregate_sends_keep_their_hour_and_survive_kafka() -> None:
    a = AggregateSends.from_api({"campaign": "spring", "variant": "B", "count": 12, "key": "run-1/0",
                                 "sent_at": "2026-11-30T10:20:31Z"}, "aggregate_sends[0]", NOW, tenant="acme")
    assert (a.tenant, a.count, a.sent_at) == ("acme", 12, 1_796_032_800.0)  # 2026-11-30T10:00:00Z
    assert AggregateSends.decode(a.encode()) == a


@pytest.mark.parametrize(("item", "says"), [
    ({"campaign": "c", "key": "k", "count": 0}, "aggregate_sends[0].count: must be a whole number from 1"),
    ({"campaign": "c", "key": "k", "count": True}, "aggregate_sends[0].count: must be a whole number from 1"),
    ({"campaign": "c"}, "aggregate_sends[0].key: is required"),
    ({"key": "k"}, "aggregate_sends[0].campaign: is required"),
])
def test_bad_aggregate_sends_are_refused_naming_the_field(item: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        AggregateSends.from_api(item, "aggregate_sends[0]", NOW)


def test_a_kafka_value_that_is_not_aggregate_sends_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        AggregateSends.decode(orjson.dumps({"tenant": "", "campaign": "c", "variant": "", "sent_at": NOW,
                                            "count": -3, "key": "k"}))


def _tenant(**kw: str) -> Tenant:
    return Tenant("acme", ("t.acme.example",), "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", **kw)


@pytest.mark.parametrize(("fields", "default", "means"), [
    ({}, "individual", "individual"),
    ({}, "aggregate", "aggregate"),
    ({"region": "eu"}, "individual", "aggregate"),
    ({"region": "eu", "unknown_consent": "individual"}, "aggregate", "individual"),
    ({"region": "us"}, "individual", "individual"),
])
def test_what_unknown_consent_means_for_a_tenant(fields: dict[str, str], default: str, means: str) -> None:
    registry = TenantRegistry({"acme": _tenant(**fields)})
    assert registry.unknown_means("acme", default) == means
    assert registry.unknown_means("", default) == default


def test_the_tenants_file_keeps_region_and_unknown_consent(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "tenants.json"
    TenantRegistry({"acme": _tenant(region="eu", unknown_consent="aggregate")}).save(path)
    assert TenantRegistry.load(path).tenants["acme"] == _tenant(region="eu", unknown_consent="aggregate")


@pytest.mark.parametrize(("fields", "says"), [
    ({"unknown_consent": "maybe"}, "unknown_consent 'maybe' must be one of individual, aggregate"),
    ({"region": "Europe!"}, "region 'Europe!' must be 2-8 lower-case letters"),
])
def test_bad_consent_settings_of_a_tenant_are_refused(fields: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        validate(_tenant(**fields), "tenants[0]")
