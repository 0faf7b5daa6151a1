"""Webhook signatures: what the sender signs, what a receiver's verify_signature accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from processors.triggers.signature import SignatureError, sign, verify_signature

SECRET = "whsec-0123456789abcdef"
BODY = b'{"id":"k1","rule":"tell-sales"}'
T = 1_796_000_000


def test_the_header_is_t_and_a_hex_hmac_of_t_dot_body() -> None:
    header = sign(SECRET, BODY, T)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"
    assert verify_signature(SECRET, header, BODY, now=T + 10) == T


@pytest.mark.parametrize(("secret", "header", "body", "now", "reason"), [
    (SECRET, sign(SECRET, BODY, T), BODY + b" ", T, "bad_signature"),
    ("another-secret-0123456789", sign(SECRET, BODY, T), BODY, T, "bad_signature"),
    (SECRET, sign(SECRET, BODY, T).replace(f"t={T}", f"t={T + 1}"), BODY, T, "bad_signature"),
    (SECRET, sign(SECRET, BODY, T), BODY, T + 301, "timestamp_out_of_tolerance"),
    (SECRET, sign(SECRET, BODY, T), BODY, T - 301, "timestamp_out_of_tolerance"),
    (SECRET, "", BODY, T, "malformed"),
    (SECRET, f"t={T}", BODY, T, "malformed"),
    (SECRET, "v1=abc", BODY, T, "malformed"),
    (SECRET, "t=soon,v1=abc", BODY, T, "malformed"),
    (SECRET, f"t={T},v1=ünïcode", BODY, T, "bad_signature"),
])
def test_refused(secret: str, header: str, body: bytes, now: float, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(secret, header, body, tolerance=300, now=now)
    assert info.value.reason == reason


def test_rotation_accepts_any_of_several_secrets_and_signatures() -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    assert verify_signature([new, old], sign(old, BODY, T), BODY, now=T) == T
    header = f"{sign(new, BODY, T)},v1={sign(old, BODY, T).split('v1=')[1]}"
    assert verify_signature(old, header, BODY, now=T) == T
    assert verify_signature(old.encode(), f" t={T} , v1={sign(old, BODY, T).split('v1=')[1]} ", BODY, now=T) == T


def test_no_tolerance_skips_the_clock() -> None:
    assert verify_signature(SECRET, sign(SECRET, BODY, 1000), BODY, tolerance=None) == 1000
