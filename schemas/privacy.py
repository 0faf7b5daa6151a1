"""Recipient privacy helpers shared by the edge and the processors: IP truncation, recipient hashes."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring, _b64d


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


# A run of token characters and dots: every token (kid.payload.tag, base64url parts) is one or a part of
# one (`x.<token>.gif`), its payload one of the run's parts after the first (the last one if cut short).
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]{12,}")
MIN_PAYLOAD = 8  # characters of base64url: a payload is a JSON list of eight fields or more

DECODE_ROUNDS = 6
"""Percent-decodings a letter's path (or record) is looked through: until the text stops changing, at
most this many. Mail scanners and proxies encode a URL once or twice; beyond a few rounds only someone
who already holds the token would bother, and each round costs a pass over the text."""

# What separates the words of a path a letter keeps: a recipient id typed into a path by hand (junk such
# as /o/<id>.gif) is one of them.
PATH_SEPARATORS = "/.?&=;,"
_PATH_WORDS = re.compile("[" + re.escape(PATH_SEPARATORS) + "]")
# A send's or conversion's record as a letter keeps it (cut to 512 characters: it may not parse).
_RECIPIENT_FIELD = re.compile(r'"recipient"\s*:\s*"((?:[^"\\]|\\.)*)"')
_TENANT_FIELD = re.compile(r'"tenant"\s*:\s*"((?:[^"\\]|\\.)*)"')
# A payload's JSON list up to its last whole string field (each followed by a comma), and such a field.
_LEADING_STRINGS = re.compile(r'\[((?:"(?:[^"\\]|\\.)*",)+)')
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def percent_decodings(text: str) -> list[str]:
    """`text`, then each percent-decoding of the one before, until one changes nothing (at most
    DECODE_ROUNDS): a token or id is looked for in every one of them."""
    forms = [text]
    for _ in range(DECODE_ROUNDS):
        if "%" not in text:
            break
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        forms.append(decoded)
        text = decoded
    return forms


def path_words(path: str) -> set[str]:
    """The words of a path, between PATH_SEPARATORS, in each of its percent-decodings."""
    words: set[str] = set()
    for form in percent_decodings(path):
        for w in _PATH_WORDS.split(form):
            if w:
                words.add(w)
    return words


def claimed_recipients(text: str) -> list[tuple[str, str]]:
    """(tenant, recipient) of every token payload anywhere in `text` (a path, a token, a record as
    received) or in one of its percent-decodings, signed or not, of any kind (pixel, link, click id,
    preferences link): what a letter holding that text would name. Every part of a dotted run but its
    first is tried as a payload, so a token glued to other words (`x.<token>`, `<token>.gif&<token>`) is
    found as well as one standing alone, and one cut short at the end of a kept path."""
    out: list[tuple[str, str]] = []
    tried: set[str] = set()
    for form in percent_decodings(text):
        for run in _TOKEN_RUN.findall(form):
            parts = run.split(".")
            for part in parts[1:]:
                if len(part) < MIN_PAYLOAD or part in tried:
                    continue
                tried.add(part)
                named = _payload_names(part)
                if named is not None:
                    out.append(named)
    return out


def _payload_names(part: str) -> tuple[str, str] | None:
    """(tenant, recipient) a token's payload names, whatever its kind: a pixel's or link's (schemas.tokens.
    TokenPayload) and a click id (ClickRef) keep them second and sixth, a preferences link (PreferencesRef,
    code "p") second and third. A payload cut short (a path longer than a letter keeps) still names them
    when its first fields are whole. None for anything else."""
    try:
        f = orjson.loads(_b64d(part))
    except (binascii.Error, ValueError):
        f = _leading_strings(part)
    if not isinstance(f, list) or len(f) < 3 or not isinstance(f[0], str):
        return None
    tenant, recipient = (f[1], f[2]) if f[0] == "p" else (f[1], f[5] if len(f) > 5 else None)
    if isinstance(tenant, str) and isinstance(recipient, str):
        return tenant, recipient
    return None


def _leading_strings(part: str) -> list[str] | None:
    """The whole string fields a cut payload starts with (every field before its first number is one)."""
    try:
        text = _b64d(part[:len(part) - len(part) % 4]).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    head = _LEADING_STRINGS.match(text)
    if head is None:
        return None
    return [_json_text(s) for s in _JSON_STRING.findall(head.group(1))]


def letter_recipients(path: str, raw: str, word_tenants: Iterable[str]) -> set[tuple[str, str]]:
    """Every (tenant, recipient) a dead letter (or any kept text: `path` and `raw`) may name: the one rule
    by which `pixeltrack forget` deletes letters (processors/privacy.py), the processors drop letters of
    erased and do-not-track recipients (processors/pipeline.py) and the trigger journals are purged
    (processors/triggers/erasure.py), so that what an erasure deletes is what is dropped afterwards.

    - the payload of a token anywhere in the path or in the record, signed or not (claimed_recipients);
    - a word of the path, as a recipient of each of `word_tenants` (an id typed into a path by hand
      carries no tenant: the processors try the default tenant and the host's);
    - the `recipient` fields of the record (a send's, a conversion's, an event's, cut or not), with its
      first `tenant` field ("" without one)."""
    found = set(claimed_recipients(path))
    found.update(claimed_recipients(raw))
    tenants = list(word_tenants)
    for word in path_words(path):
        for t in tenants:
            found.add((t, word))
    recipients = _RECIPIENT_FIELD.findall(raw)
    if recipients:
        tenant_field = _TENANT_FIELD.search(raw)
        tenant = _json_text(tenant_field.group(1)) if tenant_field is not None else ""
        for r in recipients:
            found.add((tenant, _json_text(r)))
    return found


def _json_text(escaped: str) -> str:
    """A JSON string's content as text (escapes undone); as found when it does not parse."""
    try:
        text = orjson.loads(f'"{escaped}"')
    except orjson.JSONDecodeError:
        return escaped
    return text if isinstance(text, str) else escaped
