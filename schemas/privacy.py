"""Recipient privacy helpers shared by the edge and the processors: IP truncation, recipient hashes."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring, TokenError, TokenPayload, _b64d


def truncate_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48 (the last octets zeroed). Anything else → ""."""
    if ip.count(".") == 3 and ":" not in ip:
        head, _, _ = ip.rpartition(".")
        return f"{head}.0"
    return _truncate_parsed(ip)


@functools.lru_cache(maxsize=16384)
def _truncate_parsed(ip: str) -> str:
    """truncate_ip through the ipaddress module (IPv6 and odd spellings): microseconds a call, so the
    addresses seen lately are remembered (proxies and scanners come back many times)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return truncate_ip(str(addr.ipv4_mapped))
    net = ipaddress.ip_network(f"{addr}/{48 if addr.version == 6 else 24}", strict=False)
    return str(net.network_address)


def recipient_hash(tenant: str, recipient: str) -> str:
    """How a recipient is named where its id must not be kept: SHA-256 of "tenant:recipient", hex."""
    return hashlib.sha256(f"{tenant}:{recipient}".encode()).hexdigest()


RECIPIENT_KEY_LABEL = b"pixeltrack recipient key v1"


def recipient_key(tenants: TenantRegistry | Keyring, secret: str | None = None) -> bytes:
    """The installation's key for keyed recipient hashes (what ClickHouse keeps instead of an id):
    `secret` (PIXELTRACK_PRIVACY_KEY, base64url) when given, else derived from the current signing key
    of the default keys, else of the first tenant by name. A derived key changes when that signing key
    is rotated out: set PIXELTRACK_PRIVACY_KEY for an installation that rotates keys."""
    if secret:
        try:
            key = _b64d(secret.strip())
        except (binascii.Error, ValueError):
            raise ValueError("PIXELTRACK_PRIVACY_KEY is not base64url (see `pixeltrack keygen`)") from None
        if len(key) < 16:
            raise ValueError(f"PIXELTRACK_PRIVACY_KEY is {len(key)} bytes; at least 16 are needed")
        return key
    ring = tenants if isinstance(tenants, Keyring) else tenants.default
    if ring is None and isinstance(tenants, TenantRegistry) and tenants.tenants:
        ring = tenants.for_tenant(min(tenants.tenants))
    if ring is None:
        raise ValueError("no key for recipient hashes: set PIXELTRACK_PRIVACY_KEY or PIXELTRACK_SIGNING_KEYS")
    return ring.derive(RECIPIENT_KEY_LABEL)


def keyed_recipient_hash(key: bytes, tenant: str, recipient: str) -> str:
    """How ClickHouse names a recipient where its id must not be kept (erasures, sends.recipient_key,
    campaign_sends_hourly): HMAC-SHA256(key, "tenant:recipient"), hex. Without the key it cannot be
    computed from a guessed id, so it tests no one's membership."""
    return hmac.new(key, f"{tenant}:{recipient}".encode(), "sha256").hexdigest()


class KeyedRecipientHash:
    """keyed_recipient_hash with the key schedule done once: each call copies the keyed HMAC state
    (OpenSSL's own where the hmac module wraps one), a quarter of hmac.new's cost. The processors ask
    it for every hit once anyone is erased."""

    def __init__(self, key: bytes) -> None:
        mac = hmac.new(key, digestmod="sha256")
        self._mac: Any = getattr(mac, "_hmac", None) or mac

    def __call__(self, tenant: str, recipient: str) -> str:
        mac = self._mac.copy()
        mac.update(f"{tenant}:{recipient}".encode())
        return str(mac.hexdigest())


def load_do_not_track(path: Path | None) -> frozenset[str]:
    """Recipient hashes (one per line, `#` comments) whose hits are answered and never stored."""
    if path is None or not path.exists():
        return frozenset()
    out = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if len(line) != 64 or any(c not in "0123456789abcdef" for c in line):
            raise ValueError(f"{path}:{n}: not a SHA-256 hex recipient hash (see `pixeltrack dnt-hash`)")
        out.add(line)
    return frozenset(out)


# A token anywhere in a text: kid.payload.tag, base64url parts (the payload is the middle one).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,16}\.([A-Za-z0-9_-]{8,})\.[A-Za-z0-9_-]+")


# What separates the words of a path a letter keeps: a recipient id typed into a path by hand (junk such
# as /o/<id>.gif) is one of them. forget's SQL splits with the same characters (processors/privacy.py).
PATH_SEPARATORS = "/.?&=;,"
_PATH_WORDS = re.compile("[" + re.escape(PATH_SEPARATORS) + "]")


def path_words(path: str) -> set[str]:
    """The words of a path (percent-encoding undone up to three times), between PATH_SEPARATORS."""
    for _ in range(3):
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    return {w for w in _PATH_WORDS.split(path) if w}


def claimed_recipients(text: str) -> list[tuple[str, str]]:
    """(tenant, recipient) of every token payload in `text` (a path, percent-encoded or not, a token,
    a record as received), signed or not: what a letter holding that text would name. Percent-encoding
    is undone (up to three times: a path may be encoded twice) before looking, as the edge's router does."""
    for _ in range(3):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    out = []
    for m in _TOKEN.finditer(text):
        try:
            p = TokenPayload.from_wire(_b64d(m.group(1)))
        except (TokenError, binascii.Error, ValueError):
            continue
        out.append((p.tenant, p.recipient))
    return out
