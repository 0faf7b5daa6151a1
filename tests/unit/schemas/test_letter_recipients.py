"""schemas.privacy.letter_recipients: the one rule for which recipients a kept letter names (forget deletes
by it, the processors drop by it, the trigger journals are purged by it)."""

from __future__ import annotations

import base64

import orjson

from schemas.privacy import DECODE_ROUNDS, claimed_recipients, letter_recipients, percent_decodings
from schemas.records import MAX_PATH
from schemas.tokens import ClickRef, Keyring, PreferencesRef, TokenPayload, mint_click_ref, mint_preferences

RING = Keyring({"k1": b"unit-secret-0123456789abcdefgh"}, "k1")
LONG_KID = Keyring({"key-2026-spring": b"long-kid-secret-0123456789ab"}, "key-2026-spring")


def tok(recipient: str, ring: Keyring = RING, tenant: str = "") -> str:
    return ring.mint(TokenPayload("open", tenant, "c", "A", f"m-{recipient}", recipient, 1_796_000_000_000))


def encoded(text: str, times: int) -> str:
    out = "".join(f"%{ord(c):02X}" for c in text)
    for _ in range(times - 1):
        out = out.replace("%", "%25")
    return out


def test_a_token_anywhere_in_a_path_names_its_recipient() -> None:
    for path in (f"/o/x.gif?t={tok('erin')}", f"/o/{tok('carl')}/{tok('erin')}", f"/o//{tok('erin')}.gif",
                 f"/c/junk?u={tok('erin')}", "/o/" + encoded(tok("erin"), 3) + ".gif",
                 "/o/" + tok("erin").replace(".", "%25252E"), f"/o/x.{tok('erin', LONG_KID)}",
                 f"/o/{tok('carl')}.gif&{tok('erin')}", f"/o/{tok('erin', tenant='acme')}"):
        names = letter_recipients(path, "", ())
        assert ("acme" if "acme" in str(claimed_recipients(path)) else "", "erin") in names, path


def test_click_ids_and_preferences_links_name_their_recipient() -> None:
    click_id = mint_click_ref(RING, ClickRef("acme", "c", "A", "m-1", "erin", "h-1", "l"))
    preferences = mint_preferences(RING, PreferencesRef("acme", "erin", "c", "m-1", expires_at=1))
    assert claimed_recipients(f"/s/v?cid={click_id}") == [("acme", "erin")]
    assert claimed_recipients(f"/p/{preferences}") == [("acme", "erin")]


def test_a_token_cut_short_by_the_letters_path_bound_names_its_recipient_when_the_field_is_whole() -> None:
    long_link = RING.mint(TokenPayload("click", "", "c", "A", "m-1", "erin", 1_796_000_000_000, 0,
                                       "https://shop.example.com/" + "a" * 300))
    path = ("/c/" + encoded(long_link, 1))[:MAX_PATH]
    assert claimed_recipients(path) == [("", "erin")]
    cut_in_the_id = long_link[:long_link.index(".") + 40]  # the payload ends inside the recipient field
    assert claimed_recipients(f"/c/{cut_in_the_id}") == []


def test_a_bare_id_is_a_word_of_the_path_for_the_tenants_given_and_a_record_names_its_recipient() -> None:
    assert letter_recipients("/o/erin.gif", "", ("", "acme")) == {("", "o"), ("", "erin"), ("", "gif"),
                                                                  ("acme", "o"), ("acme", "erin"), ("acme", "gif")}
    assert ("", "erin-1") in letter_recipients("/c/erin%252D1?x=1", "", ("",))
    record = '{"tenant":"acme","message":"m","recipient":"er\\"in","sent_at":"not a ti'
    assert letter_recipients("", record, ()) == {("acme", 'er"in')}
    assert letter_recipients("", '{"recipient":"erin"}', ()) == {("", "erin")}


def test_percent_decoding_stops_when_stable_or_after_its_bound() -> None:
    assert percent_decodings("/o/a.gif") == ["/o/a.gif"]
    assert percent_decodings("/o/%2541") == ["/o/%2541", "/o/%41", "/o/A"]
    deep = "/o/%" + "25" * 20 + "41"  # "A" encoded 21 times
    assert len(percent_decodings(deep)) == DECODE_ROUNDS + 1


def test_a_payload_of_the_wrong_shape_is_no_ones_and_raises_nothing() -> None:
    for fields in ([[1], "", "c", "A", "m", "r", 1, 0], {"a": 1}, [None] * 8, "text"):
        payload = base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()
        assert claimed_recipients(f"/o/k1.{payload}.tag") == []
