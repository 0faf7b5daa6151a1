"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent as `X-Pixeltrack-Signature: t=…,v1=…`.

Receivers check a delivery with `verify_signature` (standard library only: copy this file if you do not
install pixeltrack):

    from processors.triggers.signature import SIGNATURE_HEADER, SignatureError, verify_signature

    body = await request.read()                      # the raw bytes, before any JSON parsing
    try:
        verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, tolerance=300)
    except SignatureError as exc:
        return web.Response(status=401, text=exc.reason)
    key = json.loads(body)["id"]                     # process each id once: retries reuse it

The header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. The timestamp is signed
with the body, so a captured delivery cannot be replayed outside the tolerance; each attempt is signed
anew (a new `t`), the body and the idempotency key stay the same. Deduplicate on the body's `id`,
which the signature covers, not on the `Idempotency-Key` header (the same value, unsigned: a delivery
captured on its way could be replayed within the tolerance under another header value).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Pixeltrack-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from the receiver's clock."""
SCHEME = "v1"


class SignatureError(ValueError):
    """A delivery that must not be trusted; `reason` is a short code: malformed, timestamp_out_of_tolerance,
    bad_signature."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for `body` at `timestamp` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={_mac(secret, t, body)}"


def verify_signature(secret: str | bytes | Sequence[str | bytes], header: str, body: bytes,
                     tolerance: float | None = DEFAULT_TOLERANCE, now: float | None = None) -> int:
    """Checks a delivery; returns its signed timestamp or raises SignatureError.

    `secret`: the webhook's secret, or several while rotating (any may match). `header`: the
    X-Pixeltrack-Signature value. `body`: the raw request body. `tolerance`: the most seconds between
    the signed timestamp and `now` (default: the clock), None to skip the check. Comparison is in
    constant time.
    """
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets:
        raise ValueError("verify_signature needs at least one secret")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed", "t is not a whole number of seconds") from None
        elif name == SCHEME:
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        raise SignatureError("malformed", f"expected t=<unix seconds>,{SCHEME}=<hex>")
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise SignatureError("timestamp_out_of_tolerance",
                                 f"signed at {timestamp}, {current - timestamp:+.0f}s from now")
    expected = [_mac(s, timestamp, body).encode() for s in secrets]
    # Every pair is compared (no early exit), so timing does not tell which secret or signature matched.
    matched = False
    for candidate in signatures:
        for e in expected:
            matched |= hmac.compare_digest(candidate.encode(), e)
    if not matched:
        raise SignatureError("bad_signature")
    return timestamp
