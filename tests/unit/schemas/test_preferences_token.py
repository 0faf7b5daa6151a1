"""Preferences tokens (/p/<token>): round trip, tampering, expiry, and no use as another kind."""

from __future__ import annotations

import pytest

from schemas.tokens import (
    ClickRef,
    Keyring,
    PreferencesRef,
    TokenError,
    TokenPayload,
    mint_click_ref,
    mint_preferences,
    verify_click_ref,
    verify_preferences,
)

REF = PreferencesRef("acme", "r-1842", "spring", "m-1842", "disclosure-2026-03", "granted", 0)


def test_round_trip(keyring: Keyring) -> None:
    token = mint_preferences(keyring, REF)
    assert token.startswith("t1.")
    assert verify_preferences(keyring, token) == REF
    # Only the recipient is required; the rest defaults to empty.
    bare = PreferencesRef("", "r-2")
    assert verify_preferences(keyring, mint_preferences(keyring, bare)) == PreferencesRef("", "r-2", "", "", "", "", 0)


@pytest.mark.parametrize("part", [1, 2])
def test_any_changed_character_is_rejected(keyring: Keyring, part: int) -> None:
    pieces = mint_preferences(keyring, REF).split(".")
    for i in range(len(pieces[part])):
        chars = list(pieces[part])
        chars[i] = "A" if chars[i] != "A" else "B"
        forged = ".".join([*pieces[:part], "".join(chars), *pieces[part + 1:]])
        with pytest.raises(TokenError):
            verify_preferences(keyring, forged)


def test_recipient_cannot_be_swapped(keyring: Keyring) -> None:
    a = mint_preferences(keyring, REF).split(".")
    b = mint_preferences(keyring, PreferencesRef("acme", "someone-else")).split(".")
    with pytest.raises(TokenError) as err:
        verify_preferences(keyring, f"{a[0]}.{b[1]}.{a[2]}")
    assert err.value.reason == "bad_signature"


def test_other_key_and_unknown_key(keyring: Keyring) -> None:
    other = Keyring({"t1": b"another-secret-0123456789abcdef"}, "t1")
    with pytest.raises(TokenError) as err:
        verify_preferences(other, mint_preferences(keyring, REF))
    assert err.value.reason == "bad_signature"
    with pytest.raises(TokenError) as err:
        verify_preferences(Keyring({"zz": b"another-secret-0123456789abcdef"}, "zz"), mint_preferences(keyring, REF))
    assert err.value.reason == "unknown_key"


def test_expiry(keyring: Keyring) -> None:
    token = mint_preferences(keyring, PreferencesRef("acme", "r", expires_at=5000))
    assert verify_preferences(keyring, token, now_ms=5000).expires_at == 5000
    with pytest.raises(TokenError) as err:
        verify_preferences(keyring, token, now_ms=5001)
    assert err.value.reason == "expired"


def test_kinds_do_not_cross(keyring: Keyring) -> None:
    """A pixel, a link or a click id is no preferences link, and a preferences link is none of them."""
    pixel = keyring.mint(TokenPayload("open", "acme", "c", "", "m", "r", 1))
    click_id = mint_click_ref(keyring, ClickRef("acme", "c", "", "m", "r", "h", "L"))
    for token in (pixel, click_id):
        with pytest.raises(TokenError) as err:
            verify_preferences(keyring, token)
        assert err.value.reason == "wrong_kind"
    prefs = mint_preferences(keyring, REF)
    for kind in ("open", "click"):
        with pytest.raises(TokenError):
            keyring.verify(prefs, kind)  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        verify_click_ref(keyring, prefs)


@pytest.mark.parametrize("junk", ["", ".", "a.b.c", "t1..", "t1.%%%.AAAAAAAAAAAAAAAAAAAAAA", "x" * 5000])
def test_junk_is_rejected_with_a_reason(keyring: Keyring, junk: str) -> None:
    with pytest.raises(TokenError) as err:
        verify_preferences(keyring, junk)
    assert err.value.reason in {"malformed", "too_long", "bad_signature", "unknown_key"}


def test_mint_refuses_what_the_page_could_not_use(keyring: Keyring) -> None:
    with pytest.raises(ValueError, match="recipient"):
        mint_preferences(keyring, PreferencesRef("acme", ""))
    with pytest.raises(ValueError, match="state"):
        mint_preferences(keyring, PreferencesRef("acme", "r", state="maybe"))
