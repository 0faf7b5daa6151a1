"""Tokens: round trip, tampering, keys, rotation, expiry, kinds, bounds."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from schemas.tokens import (
    FLAG_HONEYPOT,
    MAX_TOKEN_CHARS,
    TAG_CHARS,
    Keyring,
    TokenError,
    TokenPayload,
)

OPEN = TokenPayload("open", "acme", "spring", "B", "m-1", "r-1", 1_700_000_000_000)
CLICK = TokenPayload("click", "acme", "spring", "A", "m-1", "r-1", 1_700_000_000_000,
                     url="https://shop.example.com/sale?x=1&y=ü", link_id="L1", flags=FLAG_HONEYPOT)


def test_round_trip_open_and_click(keyring: Keyring) -> None:
    assert keyring.verify(keyring.mint(OPEN), "open") == OPEN
    got = keyring.verify(keyring.mint(CLICK), "click")
    assert got == CLICK
    assert got.honeypot


def test_token_is_url_safe_with_128_bit_tag(keyring: Keyring) -> None:
    token = keyring.mint(CLICK)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    kid, _, tag = token.split(".")
    assert kid == "t1"
    assert len(tag) == TAG_CHARS  # 16 bytes = 128 bits


@pytest.mark.parametrize("part", [1, 2])
def test_any_changed_character_is_rejected(keyring: Keyring, part: int) -> None:
    token = keyring.mint(CLICK)
    pieces = token.split(".")
    for i in range(len(pieces[part])):
        chars = list(pieces[part])
        chars[i] = "A" if chars[i] != "A" else "B"
        forged = ".".join([*pieces[:part], "".join(chars), *pieces[part + 1:]])
        with pytest.raises(TokenError):
            keyring.verify(forged, "click")


def test_destination_cannot_be_swapped(keyring: Keyring) -> None:
    """A valid tag with another payload (e.g. another URL) is a forgery."""
    a = keyring.mint(CLICK).split(".")
    b = keyring.mint(TokenPayload("click", "acme", "spring", "A", "m-1", "r-1", 1, url="https://evil.example/")
                     ).split(".")
    with pytest.raises(TokenError) as err:
        keyring.verify(f"{a[0]}.{b[1]}.{a[2]}", "click")
    assert err.value.reason == "bad_signature"


def test_wrong_key_is_rejected(keyring: Keyring) -> None:
    other = Keyring({"t1": b"another-secret-0123456789abcdef"}, "t1")
    with pytest.raises(TokenError) as err:
        other.verify(keyring.mint(OPEN), "open")
    assert err.value.reason == "bad_signature"


def test_unknown_key_id_is_rejected(keyring: Keyring) -> None:
    other = Keyring({"zz": b"another-secret-0123456789abcdef"}, "zz")
    with pytest.raises(TokenError) as err:
        keyring.verify(other.mint(OPEN), "open")
    assert err.value.reason == "unknown_key"


def test_rotation_accepts_old_and_new_keys() -> None:
    old = Keyring({"k1": b"k1-secret-0123456789abcdef"}, "k1")
    rotated = Keyring({"k1": b"k1-secret-0123456789abcdef", "k2": b"k2-secret-0123456789abcdef"}, "k2")
    old_token = old.mint(OPEN)
    new_token = rotated.mint(OPEN)
    assert new_token.startswith("k2.")
    assert rotated.verify(old_token, "open") == OPEN
    assert rotated.verify(new_token, "open") == OPEN
    retired = Keyring({"k2": b"k2-secret-0123456789abcdef"}, "k2")
    with pytest.raises(TokenError):
        retired.verify(old_token, "open")


def test_expiry(keyring: Keyring) -> None:
    p = TokenPayload("open", "", "c", "", "m", "r", 1000, expires_at=5000)
    token = keyring.mint(p)
    assert keyring.verify(token, "open", now_ms=4999) == p
    with pytest.raises(TokenError) as err:
        keyring.verify(token, "open", now_ms=5001)
    assert err.value.reason == "expired"


def test_kind_is_signed(keyring: Keyring) -> None:
    with pytest.raises(TokenError) as err:
        keyring.verify(keyring.mint(OPEN), "click")
    assert err.value.reason == "wrong_kind"


@pytest.mark.parametrize("junk", ["", ".", "..", "a.b.c", "t1..", "t1.%%%.AAAAAAAAAAAAAAAAAAAAAA",
                                  "t1.e30.AAAAAAAAAAAAAAAAAAAAAA", "x" * (MAX_TOKEN_CHARS + 1), "t1.\u00e9.\u00e9"])
def test_junk_is_rejected_with_a_reason(keyring: Keyring, junk: str) -> None:
    with pytest.raises(TokenError) as err:
        keyring.verify(junk, "open")
    assert err.value.reason in {"malformed", "too_long", "bad_signature", "unknown_key"}


def test_click_needs_http_destination(keyring: Keyring) -> None:
    with pytest.raises(ValueError, match="http"):
        keyring.mint(TokenPayload("click", "", "c", "", "m", "r", 1, url="javascript:alert(1)"))


def test_keyring_parse_and_validation() -> None:
    ring = Keyring.parse("a:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE" + ",b:" + "QkJCQkJCQkJCQkJCQkJCQkJCQkI", "b")
    assert ring.current == "b"
    with pytest.raises(ValueError, match="kid:secret"):
        Keyring.parse("nocolon")
    with pytest.raises(ValueError, match="at least 16"):
        Keyring({"a": b"short"}, "a")
    with pytest.raises(ValueError, match="current key id"):
        Keyring({"a": b"0123456789abcdefXX"}, "b")


DOWNLOAD = TokenPayload("download", "acme", "spring", "A", "m-1", "r-1", 1_700_000_000_000,
                        url="https://files.example.com/price-list.pdf", link_id="prices")
IMAGE = TokenPayload("image", "acme", "spring", "A", "m-1", "r-1", 1_700_000_000_000,
                     url="https://img.example.com/hero.jpg")


@pytest.mark.parametrize("payload", [DOWNLOAD, IMAGE], ids=["download", "image"])
def test_round_trip_download_and_image(keyring: Keyring, payload: TokenPayload) -> None:
    token = keyring.mint(payload)
    assert keyring.verify(token, payload.kind) == payload
    # The kind's code is the first payload field, signed: "d" for downloads, "i" for images.
    body = token.split(".")[1]
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).startswith(
        b'["d",' if payload.kind == "download" else b'["i",')


@pytest.mark.parametrize(("payload", "used_as"), [
    (DOWNLOAD, "click"), (DOWNLOAD, "image"), (DOWNLOAD, "open"), (IMAGE, "download"), (IMAGE, "click"),
    (CLICK, "download"), (CLICK, "image"), (OPEN, "download"), (OPEN, "image")])
def test_a_token_of_one_kind_is_refused_as_another(keyring: Keyring, payload: TokenPayload, used_as: str) -> None:
    """A click token cannot be fetched as a download or an image (nor the other way round): each edge
    route takes its own kind, so no route redirects on another route's token."""
    with pytest.raises(TokenError) as err:
        keyring.verify(keyring.mint(payload), used_as)  # type: ignore[arg-type]
    assert err.value.reason == "wrong_kind"


@pytest.mark.parametrize("payload", [DOWNLOAD, IMAGE], ids=["download", "image"])
def test_tampered_download_and_image_tokens_are_refused(keyring: Keyring, payload: TokenPayload) -> None:
    kid, body, tag = keyring.mint(payload).split(".")
    swapped = keyring.mint(dataclasses.replace(payload, url="https://evil.example/x.pdf")).split(".")[1]
    for forged in (f"{kid}.{swapped}.{tag}", f"{kid}.{body}.{'A' * len(tag)}"):
        with pytest.raises(TokenError) as err:
            keyring.verify(forged, payload.kind)
        assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("kind", ["download", "image"])
def test_download_and_image_need_an_http_destination(keyring: Keyring, kind: str) -> None:
    for url in ("", "javascript:alert(1)", "file:///etc/passwd", "//evil.example/"):
        with pytest.raises(ValueError, match="http"):
            keyring.mint(TokenPayload(kind, "", "c", "", "m", "r", 1, url=url))  # type: ignore[arg-type]


def test_a_payload_of_the_wrong_length_for_its_kind_is_malformed() -> None:
    assert TokenPayload.from_wire(b'["d","","c","","m","r",1,0,"https://x.example/a.pdf","",0]').kind == "download"
    for raw in (b'["d","","c","","m","r",1,0]', b'["i","","c","","m","r",1,0,"https://x.example/a.png",""]',
                b'["o","","c","","m","r",1,0,"https://x.example/","",0]', b'["z","","c","","m","r",1,0]'):
        with pytest.raises(TokenError):
            TokenPayload.from_wire(raw)
