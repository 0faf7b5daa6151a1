"""Recipient ids that are email addresses: spotting them, and keyed pseudonyms to use instead."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from schemas.tokens import Keyring

# Something@something.tld: what an address looks like (no validation: a warning needs no more).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

WARNING = ("recipient ids look like email addresses ({count} of {total}, e.g. {example!r}): an id appears in "
           "every tracking URL, file name and stored row; pass --hash-recipients (the SDK: hash_recipients=True) "
           "to use a keyed pseudonym instead")
MESSAGE_WARNING = ("message ids hold email addresses (e.g. {example!r}): a message id appears in every tracking URL "
                   "and stored row, and hash_recipients does not change it; build message ids from the recipient's "
                   "pseudonym (Tracker.recipient_id), your own opaque id or a counter")


def looks_like_email(recipient: str) -> bool:
    """Whether a recipient id has the shape of an email address."""
    return _EMAIL.fullmatch(recipient.strip()) is not None


def holds_email(text: str) -> bool:
    """Whether an id (a message id, say) holds something shaped like an email address anywhere in it."""
    return "@" in text and _EMAIL.search(text) is not None


def redacted(address: str) -> str:
    """An address as a warning may show it: its domain only."""
    return "…@" + address.rpartition("@")[2]


def email_like(recipients: Iterable[str]) -> tuple[int, int, str]:
    """(how many look like addresses, how many in all, the first such) over `recipients`."""
    count = total = 0
    first = ""
    for r in recipients:
        total += 1
        if looks_like_email(r):
            count += 1
            first = first or r
    return count, total, first


class Pseudonyms:
    """Keyed pseudonyms of recipient ids: `p-` and 32 hex digits of HMAC-SHA256 over the id (trimmed and,
    for an address, lower-cased), keyed with a secret derived from the minting key. The same id always
    gets the same pseudonym under one key, nobody without the key can recompute or test one, and it
    carries nothing of the address. Keep the instrument manifest (id → pseudonym) to map back."""

    def __init__(self, keyring: Keyring) -> None:
        self._key = keyring.derive(b"pixeltrack recipient pseudonyms v1")

    def of(self, recipient: str) -> str:
        canonical = recipient.strip()
        if looks_like_email(canonical):
            canonical = canonical.lower()
        return "p-" + hmac.new(self._key, canonical.encode(), "sha256").hexdigest()[:32]
