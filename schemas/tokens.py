"""Signed tokens (open, click, download, image): HMAC-SHA256 over a compact payload, key ids for rotation."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

# Layout: "<kid>.<payload>.<tag>", all URL-safe base64 without padding except kid ([A-Za-z0-9_-]).
# The tag is the first 16 bytes (128 bits) of HMAC-SHA256(key, DOMAIN + kid + "." + payload), so a
# token minted for one key id cannot be replayed under another, and payload bytes are signed as sent.
DOMAIN = b"pixeltrack.token.v1|"
TAG_BYTES = 16
TAG_CHARS = 22  # base64url length of 16 bytes without padding
MAX_TOKEN_CHARS = 4096  # cheap bound checked before any decoding or HMAC work
MAX_URL_CHARS = 2048
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")

FLAG_HONEYPOT = 1
FLAG_UNSUBSCRIBE = 2
FLAG_NO_CLICK_ID = 4
# Not in any token: the processors set it on an open that came through one of the email's own images
# (an /i/ fetch), so analysts tell those from the pixel's (events.link_flags; link_url is the image).
FLAG_IMAGE = 8
DAY_MS = 86_400_000

# Kinds and their codes (a token's first payload field; each edge route takes one kind only, so a token
# minted for one cannot be used on another). Every kind but "open" carries a destination: a click's and a
# download's redirect, an image's original address (the only places those redirects may go).
TokenKind = Literal["open", "click", "download", "image"]
_KIND_CODE = {"open": "o", "click": "c", "download": "d", "image": "i"}
_CODE_KIND: dict[str, TokenKind] = {"o": "open", "c": "click", "d": "download", "i": "image"}


class TokenError(ValueError):
    """A token that must not be trusted; `reason` is a short code for metrics and the dead-letter row."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class TokenPayload:
    """What a token says. Times are epoch milliseconds; `expires_at` 0 means no expiry.
    (Not frozen: a frozen dataclass costs ~6x more to build, and one is built per hit processed.)"""

    kind: TokenKind
    tenant: str
    campaign: str
    variant: str
    message: str
    recipient: str
    sent_at: int
    expires_at: int = 0
    url: str = ""  # click, download and image tokens: the only destination a redirect may go to
    link_id: str = ""
    flags: int = 0

    @property
    def honeypot(self) -> bool:
        return bool(self.flags & FLAG_HONEYPOT)

    @property
    def aggregate(self) -> bool:
        """A campaign-level token (see aggregate_payload): it names no message and no recipient."""
        return not self.message and not self.recipient

    def to_wire(self) -> bytes:
        fields: list[object] = [_KIND_CODE[self.kind], self.tenant, self.campaign, self.variant, self.message,
                                self.recipient, self.sent_at, self.expires_at]
        if self.kind != "open":
            fields += [self.url, self.link_id, self.flags]
        return orjson.dumps(fields)

    @classmethod
    def from_wire(cls, raw: bytes) -> TokenPayload:
        try:
            f = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TokenError("malformed", "payload is not JSON") from None
        if not isinstance(f, list) or len(f) not in (8, 11) or f[0] not in _CODE_KIND:
            raise TokenError("malformed", "payload has the wrong shape")
        kind = _CODE_KIND[f[0]]
        if (kind == "open") != (len(f) == 8):
            raise TokenError("malformed", "payload length does not match its kind")
        # Plain type checks, no generators: this runs for every hit a processor decodes.
        tenant, campaign, variant, message, recipient, sent_at, expires_at = f[1:8]
        url, link_id, flags = (f[8], f[9], f[10]) if kind != "open" else ("", "", 0)
        if not (type(tenant) is str and type(campaign) is str and type(variant) is str and type(message) is str
                and type(recipient) is str and type(url) is str and type(link_id) is str
                and type(sent_at) is int and type(expires_at) is int and type(flags) is int):
            raise TokenError("malformed", "payload field of the wrong type")
        return cls(kind, tenant, campaign, variant, message, recipient, sent_at, expires_at, url, link_id, flags)


def aggregate_payload(kind: TokenKind, tenant: str, campaign: str, variant: str, expires_at: int = 0, url: str = "",
                      link_id: str = "", flags: int = 0) -> TokenPayload:
    """The payload of a campaign-level (aggregate) token: the same kinds and wire shape as any token, with
    the message, the recipient and the send time empty (sent_at 0), and the expiry rounded up to a whole
    UTC day, so every recipient of a campaign's variant gets the same pixel and the same link tokens and
    nothing in them tells one recipient or message from another. Click tokens never get a click id
    (FLAG_NO_CLICK_ID; the edge also appends none to a token without a message)."""
    expires = -(-expires_at // DAY_MS) * DAY_MS if expires_at else 0
    return TokenPayload(kind=kind, tenant=tenant, campaign=campaign, variant=variant, message="", recipient="",
                        sent_at=0, expires_at=expires, url=url, link_id=link_id,
                        flags=(flags | FLAG_NO_CLICK_ID) if kind == "click" else 0)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """base64url without padding, strictly: anything outside the alphabet raises binascii.Error.
    (Two str.replace calls, not str.translate: a sixth of the time, and this runs for every hit.)"""
    return binascii.a2b_base64((text + "=" * (-len(text) % 4)).replace("-", "+").replace("_", "/"),
                               strict_mode=True)


def _prefixed_mac(secret: bytes, prefix: bytes) -> Any:
    """HMAC-SHA256 state after `prefix`, to copy per tag. OpenSSL's HMAC object itself where the hmac
    module wraps one (its copy costs about half the wrapper's), else the hmac object."""
    mac = hmac.new(secret, prefix, "sha256")
    return getattr(mac, "_hmac", None) or mac


class Keyring:
    """Signing keys by id. Mints with `current`; accepts every key it holds, so keys rotate by adding a
    new key, switching `current`, and removing the old one once its tokens no longer matter."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for kid, secret in keys.items():
            if not KID_RE.match(kid):
                raise ValueError(f"key id {kid!r} is not 1-16 characters of [A-Za-z0-9_-]")
            if len(secret) < 16:
                raise ValueError(f"key {kid!r} is {len(secret)} bytes; at least 16 are needed")
        if current not in keys:
            raise ValueError(f"current key id {current!r} is not among the keys {sorted(keys)}")
        self._keys = dict(keys)
        self.current = current
        # HMAC state after each key id's fixed prefix: a tag then costs a copy and one update instead
        # of the key schedule and two hashes of setup (a third of a token check).
        self._prefixed = {kid: _prefixed_mac(secret, DOMAIN + kid.encode() + b".")
                          for kid, secret in self._keys.items()}

    @classmethod
    def parse(cls, spec: str, current: str | None = None) -> Keyring:
        """Keys from "kid:base64url-secret,kid2:secret2"; the current key defaults to the first."""
        keys: dict[str, bytes] = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            if not sep:
                raise ValueError(f"signing key {part[:8]!r}… must be written kid:secret")
            try:
                keys[kid] = _b64d(secret)
            except (binascii.Error, ValueError):
                raise ValueError(f"signing key {kid!r}: the secret is not base64url") from None
        return cls(keys, current or next(iter(keys), ""))

    def derive(self, label: bytes) -> bytes:
        """A secret of its own for another use (named by `label`), derived from the current key."""
        return hmac.new(self._keys[self.current], label, "sha256").digest()

    def has_key(self, kid: str) -> bool:
        """Whether this keyring holds key id `kid`."""
        return kid in self._keys

    def _tag(self, kid: str, payload_b64: str) -> bytes:
        """HMAC-SHA256(key, DOMAIN + kid + "." + payload), first TAG_BYTES bytes."""
        mac = self._prefixed[kid].copy()
        mac.update(payload_b64.encode())
        tag: bytes = mac.digest()[:TAG_BYTES]
        return tag

    def mint(self, payload: TokenPayload) -> str:
        if payload.kind != "open" and not payload.url.startswith(("https://", "http://")):
            raise ValueError(f"a {payload.kind} token needs an http(s) destination, got {payload.url[:60]!r}")
        if len(payload.url) > MAX_URL_CHARS:
            raise ValueError(f"destination is {len(payload.url)} characters; at most {MAX_URL_CHARS}")
        body = _b64e(payload.to_wire())
        token = f"{self.current}.{body}.{_b64e(self._tag(self.current, body))}"
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError(f"token is {len(token)} characters; at most {MAX_TOKEN_CHARS}")
        return token

    def verify(self, token: str, kind: TokenKind | None = None, now_ms: int | None = None) -> TokenPayload:
        """The payload of a genuine token, or TokenError with a reason code.

        Cheap shape checks come first so that junk costs no HMAC; the tag is compared in constant time
        before the payload is decoded, so nothing unsigned is ever parsed.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("too_long", f"{len(token)} characters")
        parts = token.split(".")
        if len(parts) != 3 or len(parts[2]) != TAG_CHARS:
            raise TokenError("malformed", "not kid.payload.tag")
        kid, body, tag_b64 = parts
        if kid not in self._keys:
            raise TokenError("unknown_key", kid[:16])
        # Compared as base64url text (the canonical encoding of the expected tag): no decode needed.
        # binascii and a translate table, not base64.urlsafe_b64encode: two Python calls fewer a hit.
        expected = binascii.b2a_base64(self._tag(kid, body), newline=False)[:TAG_CHARS].translate(_URLSAFE)
        if not hmac.compare_digest(tag_b64.encode("utf-8", "replace"), expected):
            raise TokenError("bad_signature")
        try:
            raw = _b64d(body)
        except (binascii.Error, ValueError):
            raise TokenError("malformed", "payload is not base64url") from None
        payload = TokenPayload.from_wire(raw)
        if kind is not None and payload.kind != kind:
            raise TokenError("wrong_kind", f"a {payload.kind} token used as {kind}")
        if payload.expires_at and now_ms is not None and now_ms > payload.expires_at:
            raise TokenError("expired")
        return payload


def new_secret() -> str:
    """A fresh 256-bit signing secret, base64url."""
    import secrets

    return _b64e(secrets.token_bytes(32))


@dataclass(frozen=True, slots=True)
class ClickRef:
    """What a click id says: which click (the edge's hit id) of which message, on which link. The
    edge appends it to a redirect; a conversion posted with it is attributed without any lookup."""

    tenant: str
    campaign: str
    variant: str
    message: str
    recipient: str
    hit_id: str
    link: str  # the link id, else the destination URL
    sent_at: int = 0  # the message's sent-at (epoch ms, the token's); 0 in click ids minted before it was carried


def mint_click_ref(keyring: Keyring, ref: ClickRef) -> str:
    """A signed click id. Its body starts with kind code "x", which no pixel or link token has, so a
    click id can never be used as a token, nor a token as a click id."""
    body = _b64e(orjson.dumps(["x", ref.tenant, ref.campaign, ref.variant, ref.message, ref.recipient,
                               ref.hit_id, ref.link, ref.sent_at]))
    return f"{keyring.current}.{body}.{_b64e(keyring._tag(keyring.current, body))}"


def verify_click_ref(keyring: Keyring, click_id: str) -> ClickRef:
    """The ClickRef of a genuine click id, or TokenError with a reason code."""
    if len(click_id) > MAX_TOKEN_CHARS:
        raise TokenError("too_long")
    parts = click_id.split(".")
    if len(parts) != 3 or len(parts[2]) != TAG_CHARS:
        raise TokenError("malformed", "not kid.payload.tag")
    kid, body, tag_b64 = parts
    if kid not in keyring._keys:
        raise TokenError("unknown_key", kid[:16])
    try:
        tag = _b64d(tag_b64)
        fields = orjson.loads(_b64d(body)) if hmac.compare_digest(tag, keyring._tag(kid, body)) else None
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None
    if fields is None:
        raise TokenError("bad_signature")
    # Eight fields in click ids minted before the sent-at was carried, nine since.
    if not isinstance(fields, list) or len(fields) not in (8, 9) or fields[0] != "x" or not all(
            isinstance(f, str) for f in fields[1:8]):
        raise TokenError("malformed", "not a click id")
    sent_at = fields[8] if len(fields) == 9 else 0
    if type(sent_at) is not int or sent_at < 0:
        raise TokenError("malformed", "a click id's sent-at is not a whole number")
    tenant, campaign, variant, message, recipient, hit_id, link = fields[1:8]
    return ClickRef(tenant, campaign, variant, message, recipient, hit_id, link, sent_at)


PREFERENCE_STATES = ("", "granted", "denied", "unknown")
"""What a preferences link may say the recipient's consent was when the email was sent ("" = not said)."""


@dataclass(frozen=True, slots=True)
class PreferencesRef:
    """What a preferences link (`/p/<token>`) says: whose consent the page changes (tenant, recipient),
    the email it came in (campaign, message: context only), the disclosure text version the recipient
    is shown (`text_version`, recorded with a consent given there), the consent on record when the
    email was sent (`state`, one of PREFERENCE_STATES; shown on the page) and `expires_at` (epoch ms,
    0 = never)."""

    tenant: str
    recipient: str
    campaign: str = ""
    message: str = ""
    text_version: str = ""
    state: str = ""
    expires_at: int = 0


def mint_preferences(keyring: Keyring, ref: PreferencesRef) -> str:
    """A signed preferences token. Its body starts with kind code "p", which no pixel, link or click id
    has, so none of them can be used for another."""
    if not ref.recipient:
        raise ValueError("a preferences link needs a recipient")
    if ref.state not in PREFERENCE_STATES:
        raise ValueError(f"state {ref.state!r} is not one of {', '.join(s for s in PREFERENCE_STATES if s)}")
    body = _b64e(orjson.dumps(["p", ref.tenant, ref.recipient, ref.campaign, ref.message, ref.text_version,
                               ref.state, ref.expires_at]))
    token = f"{keyring.current}.{body}.{_b64e(keyring._tag(keyring.current, body))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"token is {len(token)} characters; at most {MAX_TOKEN_CHARS}")
    return token


def verify_preferences(keyring: Keyring, token: str, now_ms: int | None = None) -> PreferencesRef:
    """The PreferencesRef of a genuine preferences token, or TokenError with a reason code (the tag is
    checked in constant time before anything is decoded; `now_ms`: also refuse an expired one)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("too_long", f"{len(token)} characters")
    parts = token.split(".")
    if len(parts) != 3 or len(parts[2]) != TAG_CHARS:
        raise TokenError("malformed", "not kid.payload.tag")
    kid, body, tag_b64 = parts
    if not keyring.has_key(kid):
        raise TokenError("unknown_key", kid[:16])
    expected = binascii.b2a_base64(keyring._tag(kid, body), newline=False)[:TAG_CHARS].translate(_URLSAFE)
    if not hmac.compare_digest(tag_b64.encode("utf-8", "replace"), expected):
        raise TokenError("bad_signature")
    try:
        f = orjson.loads(_b64d(body))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "payload is not base64url JSON") from None
    if not isinstance(f, list) or not f or f[0] != "p":
        raise TokenError("wrong_kind", "not a preferences link")
    if (len(f) != 8 or not all(type(x) is str for x in f[1:7]) or type(f[7]) is not int
            or f[6] not in PREFERENCE_STATES):
        raise TokenError("malformed", "payload has the wrong shape")
    ref = PreferencesRef(*f[1:])
    if ref.expires_at and now_ms is not None and now_ms > ref.expires_at:
        raise TokenError("expired")
    return ref
