"""The site script's beacons as the edge reads them, and the click id's sent-at (schemas/site.py, tokens.py)."""

from __future__ import annotations

import base64
import re

import orjson
import pytest

from schemas.site import MAX_BEACON_BYTES, Beacon, conversion_key, origin_of, page_of, parse_beacon, site_of
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import ClickRef, Keyring, TokenError, _b64e, mint_click_ref, verify_click_ref

RING = Keyring({"k1": b"site-unit-secret-0123456789"}, "k1")
REF = ClickRef("", "spring", "B", "m-7", "r-7", "hit-42", "pricing", 1_796_000_000_000)


def body(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_a_view_with_a_click_id_keeps_the_page_without_query_fragment_or_user_info() -> None:
    got = parse_beacon(body(event="view", click_id="cid", page="https://ann:pw@Shop.Example.com:8443/p/x?email=a@b#top"))
    assert got == Beacon("view", "https://shop.example.com:8443/p/x", "cid")


def test_a_view_without_a_click_id_is_accepted_and_a_bare_origin_gets_a_slash() -> None:
    assert parse_beacon(body(event="view", page="http://127.0.0.1:9000")) == Beacon("view", "http://127.0.0.1:9000/")


def test_a_conversion_carries_value_currency_and_id() -> None:
    got = parse_beacon(body(event="conversion", click_id="cid", page="https://shop.example.com/thanks",
                            value=49.5, currency="eur", id="order-1001"))
    assert got == Beacon("conversion", "https://shop.example.com/thanks", "cid", 49.5, "EUR", "order-1001")


@pytest.mark.parametrize(("raw", "field"), [
    (b"not json", "body: not JSON"),
    (b"[1, 2]", "body: must be a JSON object"),
    (body(page="https://a.example/"), "event:"),
    (body(event="click", page="https://a.example/"), "event:"),
    (body(event="view", page="javascript:alert(1)"), "page: must be an http(s) URL"),
    (body(event="view", page="https://a.example/", click_id=7), "click_id: must be a string"),
    (body(event="conversion", page="https://a.example/", id="o-1"), "click_id: a conversion needs the click id"),
    (body(event="conversion", page="https://a.example/", click_id="c"), "id: a conversion needs an id"),
    (body(event="conversion", page="https://a.example/", click_id="c", id="o", value=-1), "beacon.value:"),
    (body(event="conversion", page="https://a.example/", click_id="c", id="o", currency="euro"), "beacon.currency:"),
    (body(event="view", page="https://a.example/", click_id="x" * 3000), "click_id: longer than"),
    (b"{" + b" " * MAX_BEACON_BYTES + b"}", "body: over 4096 bytes"),
])
def test_junk_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        parse_beacon(raw)


def test_site_and_origin_of_a_page() -> None:
    assert site_of("https://shop.example.com:8443/p/x") == "shop.example.com:8443"
    assert origin_of("https://shop.example.com:8443/p/x") == "https://shop.example.com:8443/"
    assert page_of("https://[2001:db8::1]:8080/a") == "https://[2001:db8::1]:8080/a"


def test_the_conversion_key_is_per_message_and_id() -> None:
    assert conversion_key("m-7", "order-1001") == "site:m-7:order-1001"


def test_a_click_id_carries_the_messages_sent_at() -> None:
    assert verify_click_ref(RING, mint_click_ref(RING, REF)) == REF


def test_a_click_id_minted_before_the_sent_at_was_carried_still_verifies() -> None:
    old_body = _b64e(orjson.dumps(["x", "", "spring", "B", "m-7", "r-7", "hit-42", "pricing"]))
    old = f"k1.{old_body}.{_b64e(RING._tag('k1', old_body))}"
    assert verify_click_ref(RING, old) == ClickRef("", "spring", "B", "m-7", "r-7", "hit-42", "pricing", 0)


def test_a_click_id_with_a_sent_at_of_the_wrong_type_is_malformed() -> None:
    bad_body = _b64e(orjson.dumps(["x", "", "spring", "B", "m-7", "r-7", "hit-42", "pricing", "soon"]))
    with pytest.raises(TokenError) as refused:
        verify_click_ref(RING, f"k1.{bad_body}.{_b64e(RING._tag('k1', bad_body))}")
    assert refused.value.reason == "malformed"


def test_a_click_id_verifies_on_its_tenants_domain_only() -> None:
    secret = base64.urlsafe_b64encode(b"acme-site-secret-0123456789").decode().rstrip("=")
    acme = Tenant("acme", ("t.acme.example",), f"a1:{secret}", "a1", site_visit_org=True)
    registry = TenantRegistry({"acme": acme}, RING)
    cid = mint_click_ref(acme.keyring(), ClickRef("acme", "c", "A", "m", "r", "h", "l", 1))
    assert registry.verify_click_id("t.acme.example", cid).tenant == "acme"
    with pytest.raises(TokenError):
        registry.verify_click_id("other.example", cid)  # the default tenant's domain: not its keys
    forged = mint_click_ref(RING, ClickRef("acme", "c", "A", "m", "r", "h", "l", 1))
    with pytest.raises(TokenError) as refused:
        registry.verify_click_id("other.example", forged)
    assert refused.value.reason == "wrong_tenant"
    assert registry.site_visit_org("acme") is True
    assert registry.site_visit_org("", default=False) is False
    assert registry.site_visit_org("", default=True) is True
