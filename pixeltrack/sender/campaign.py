"""A campaign on the sender's side: the recipients list (CSV), message ids, file names, and one instrumented
email per recipient written with its manifest and its sends registered (`pixeltrack instrument`).

The HTML side (parsing an email once, filling its slots per recipient) is pixeltrack/sender/instrument.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import TextIO

import orjson

from pixeltrack.sender.instrument import EmailPlan, SkippedLink, instrument
from pixeltrack.sender.sdk import Message, Record, Tracker
from schemas.aggregate import AggregateSends, hour_of
from schemas.consents import CONSENT_STATES, MAX_TEXT_VERSION, Consent
from schemas.sends import MAX_ID, Send


class RecipientsError(ValueError):
    """A recipients file that cannot be used; the message names the file, line and column."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One row of a recipients file. Empty `message` and `variant` mean: generated, the campaign's."""

    recipient: str
    mailbox_domain: str = ""
    message: str = ""
    variant: str = ""
    line: int = 0
    source_id: str = ""
    """The sender's own id when `recipient` is its pseudonym (--hash-recipients); kept in the manifest only."""
    consent: str = ""  # granted, denied, unknown; "" = not given (unknown, and no consent record)
    consent_version: str = ""  # the version of the text the recipient agreed to


RECIPIENT_COLUMNS = ("recipient", "email", "message", "variant", "consent", "consent_version")


def read_recipients(path: Path) -> list[Recipient]:
    """Reads a recipients CSV (UTF-8, optional BOM; comma, semicolon or tab separated). Columns:
    `recipient` (required), `email` (only its domain is kept), `message`, `variant`, `consent`
    (granted, denied, unknown or empty, any case) and `consent_version` (the text agreed to); others
    are ignored. RecipientsError names the line and column of the first problem."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return parse_recipients(f, str(path))
    except UnicodeDecodeError as exc:
        raise RecipientsError(f"{path}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None


def parse_recipients(stream: TextIO, name: str = "recipients") -> list[Recipient]:
    """As read_recipients, from an open text stream (`name` appears in errors)."""
    head = stream.readline().lstrip("\ufeff")
    if not head.strip():
        raise RecipientsError(f"{name}: line 1: no header row; name the columns, e.g. recipient,email")
    delimiter = "," if "," in head else ";" if ";" in head else "\t" if "\t" in head else ","
    rows = csv.reader(_chain(head, stream), delimiter=delimiter, strict=True)
    columns = _header(rows, name)
    index = {col: i for i, col in enumerate(columns) if col in RECIPIENT_COLUMNS}
    out: list[Recipient] = []
    seen_recipients: dict[str, int] = {}
    seen_messages: dict[str, int] = {}
    line = rows.line_num + 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RecipientsError(f"{name}: line {line}: {exc}") from None
        if row and any(cell.strip() for cell in row):
            out.append(_recipient(row, line, columns, index, name, seen_recipients, seen_messages))
        line = rows.line_num + 1
    if not out:
        raise RecipientsError(f"{name}: no recipients after the header row")
    return out


def _chain(head: str, rest: TextIO) -> Iterator[str]:
    yield head
    yield from rest


def _header(rows: Iterator[list[str]], name: str) -> list[str]:
    try:
        columns = [c.strip().lower() for c in next(rows)]
    except csv.Error as exc:
        raise RecipientsError(f"{name}: line 1: {exc}") from None
    for i, col in enumerate(columns):
        if col and col in columns[:i]:
            raise RecipientsError(f'{name}: line 1, column {i + 1}: "{col}" is named twice')
    if "recipient" not in columns:
        found = ", ".join(c for c in columns if c) or "nothing"
        raise RecipientsError(f'{name}: line 1: no "recipient" column (found: {found}); '
                              f"columns: recipient (required), email, message, variant, consent, consent_version")
    return columns


def _recipient(row: list[str], line: int, columns: list[str], index: dict[str, int], name: str,
               seen_recipients: dict[str, int], seen_messages: dict[str, int]) -> Recipient:
    if len(row) > len(columns):
        raise RecipientsError(f"{name}: line {line}: {len(row)} fields but the header names {len(columns)} "
                              f"(quote values that contain the separator)")

    def cell(col: str) -> str:
        i = index.get(col)
        return row[i].strip() if i is not None and i < len(row) else ""

    def bad(col: str, problem: str) -> RecipientsError:
        return RecipientsError(f'{name}: line {line}, column {index[col] + 1} ("{col}"): {problem}')

    for col in ("recipient", "message", "variant"):
        value = cell(col)
        if len(value) > MAX_ID:
            raise bad(col, f"longer than {MAX_ID} characters")
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise bad(col, "contains control characters")
    recipient = cell("recipient")
    if not recipient:
        raise bad("recipient", "is empty; every row needs a recipient id")
    if recipient in seen_recipients:
        raise bad("recipient", f"{recipient!r} is already on line {seen_recipients[recipient]}")
    seen_recipients[recipient] = line
    message = cell("message")
    if message:
        if message in seen_messages:
            raise bad("message", f"{message!r} is already on line {seen_messages[message]}")
        seen_messages[message] = line
    domain = ""
    email = cell("email")
    if email:
        domain = _mailbox_domain(email)
        if not domain:
            raise bad("email", f"{email!r} is not an email address (name@domain)")
    consent = cell("consent").lower()
    if consent and consent not in CONSENT_STATES:
        raise bad("consent", f"{cell('consent')[:40]!r} is not one of {', '.join(CONSENT_STATES)} (or empty)")
    version = cell("consent_version")
    if len(version) > MAX_TEXT_VERSION:
        raise bad("consent_version", f"longer than {MAX_TEXT_VERSION} characters")
    return Recipient(recipient, domain, message, cell("variant"), line, consent=consent, consent_version=version)


def _mailbox_domain(email: str) -> str:
    addr = parseaddr(email)[1]
    local, at, domain = addr.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or not domain or any(ch.isspace() or ch in "<>@,;" for ch in domain):
        return ""
    return domain


def message_id(campaign: str, variant: str, recipient: str) -> str:
    """The generated message id `<campaign>-<variant>-<recipient>` (no variant: `<campaign>-<recipient>`);
    when that would exceed the id bound, a stable hash of the three."""
    mid = "-".join(p for p in (campaign, variant, recipient) if p)
    if len(mid) <= MAX_ID:
        return mid
    digest = hashlib.sha256(f"{campaign}\0{variant}\0{recipient}".encode()).hexdigest()[:32]
    return f"m-{digest}"


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")


def file_names(recipients: Sequence[Recipient], suffix: str = ".html") -> list[str]:
    """A safe, distinct file name per recipient: the id when it is plain ([A-Za-z0-9._@+-], not starting
    with a dot), else a cleaned id plus a short hash of the real one. Distinct also on file systems
    that ignore case."""
    names: list[str] = []
    used: set[str] = set()
    for r in recipients:
        stem = _UNSAFE_NAME.sub("_", r.recipient)[:100].lstrip(".") or "_"
        if stem != r.recipient or stem.lower() in _WINDOWS_RESERVED or stem.lower() in used:
            stem = f"{stem}-{hashlib.sha256(r.recipient.encode()).hexdigest()[:10]}"
        n = 2
        base = stem
        while stem.lower() in used:
            stem, n = f"{base}-{n}", n + 1
        used.add(stem.lower())
        names.append(stem + suffix)
    return names


# --------------------------------------------------------------------------- a whole campaign


@dataclass(frozen=True, slots=True)
class CampaignResult:
    emails: int
    registered: int  # emails whose send was handed to `register` (individual sends, and aggregate ones counted)
    manifest: Path
    links: int  # wrapped links per email (the honeypot excluded)
    unsubscribe_links: int
    skipped: tuple[SkippedLink, ...]
    aggregate: int = 0  # emails tracked in aggregate (campaign-level URLs, counted in AggregateSends)
    consents: int = 0  # consent records handed to `register` (the recipients file's consent column)


def decode_record(line: bytes) -> Record:
    """One line of a sends file: a Send, an AggregateSends (it has `count`) or a Consent (it has `state`)."""
    obj = orjson.loads(line)
    if isinstance(obj, dict) and "state" in obj:
        return Consent.decode(line)
    if isinstance(obj, dict) and "count" in obj:
        return AggregateSends.decode(line)
    return Send.decode(line)


def aggregate_key(tenant: str, campaign: str, sent_at: int, flush: int, variant: str) -> str:
    """The idempotency key of one batch's aggregate sends: from the run (its sent_at) and the batch, never
    from a recipient, so running the same campaign again with the same sent_at counts them once."""
    text = f"{tenant}\0{campaign}\0{sent_at}\0{flush}\0{variant}"
    return "i-" + hashlib.sha256(text.encode()).hexdigest()[:32]


class JsonlSends:
    """A `register` callable that writes sends (and aggregate sends and consents) as JSON lines (their
    encode()), for later registration (`pixeltrack sends post`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: io.BufferedWriter | None = path.open("wb")

    def __call__(self, sends: list[Record]) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(b"".join(s.encode() + b"\n" for s in sends))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def instrument_campaign(plan: EmailPlan, tracker: Tracker, recipients: Sequence[Recipient], out_dir: Path, *,
                        campaign: str, variant: str = "", tenant: str = "", honeypot: bool = False,
                        honeypot_url: str | None = None, register: Callable[[list[Record]], object] | None = None,
                        sent_at: int | None = None, batch_size: int = 5000,
                        progress: Callable[[int, int], None] | None = None,
                        track_images: bool = False) -> CampaignResult:
    """Writes OUT_DIR/<recipient>.html per recipient and OUT_DIR/manifest.jsonl (recipient, message, variant,
    file, pixel, links, the headers to send the email with: List-Unsubscribe and List-Unsubscribe-Post,
    Tracker.unsubscribe_headers; tracking "aggregate" where so), and hands the sends to `register` in batches of
    `batch_size` emails, each batch after its emails are written. One `sent_at` (epoch ms, default now) for the
    whole run keeps the output reproducible. `progress(done, total)` runs after each email.

    A recipient whose consent (the file's column, else the tracker's meaning of unknown) asks for aggregate
    tracking gets campaign-level URLs and no Send: each batch's such emails are counted in one
    AggregateSends per variant. A recipient with a consent cell gets a Consent record (source "csv")."""
    for what, value, required in (("campaign", campaign, True), ("variant", variant, False),
                                  ("tenant", tenant, False)):
        if (required and not value) or len(value) > MAX_ID:
            raise ValueError(f"{what} {value!r}: give 1 to {MAX_ID} characters")
    out_dir.mkdir(parents=True, exist_ok=True)
    at = sent_at or int(time.time() * 1000)
    names = file_names(recipients)
    total = len(recipients)
    messages: dict[str, int] = {}
    batch: list[Record] = []
    counted: dict[str, int] = {}  # this batch's emails tracked in aggregate, per variant
    registered = aggregate = consents = flushes = pending = 0  # pending: emails of this batch

    def flush() -> None:
        nonlocal batch, counted, registered, flushes, pending
        for v, n in counted.items():
            batch.append(AggregateSends(tenant, campaign, v, hour_of(at / 1000), n,
                                        aggregate_key(tenant, campaign, at, flushes, v)))
        if register is not None and batch:
            register(batch)
        registered += sum(1 for r in batch if isinstance(r, Send)) + sum(counted.values())
        batch, counted, flushes, pending = [], {}, flushes + 1, 0

    with (out_dir / "manifest.jsonl").open("wb") as manifest:
        for done, (r, name) in enumerate(zip(recipients, names, strict=True), start=1):
            v = r.variant or variant
            mid = r.message or message_id(campaign, v, r.recipient)
            if mid in messages:
                raise ValueError(f"message id {mid!r} of recipient {r.recipient!r} (#{done}) is already "
                                 f"recipient #{messages[mid]}'s; message ids must be unique")
            messages[mid] = done
            email = instrument(plan, tracker, Message(campaign=campaign, message=mid, recipient=r.recipient,
                                                      variant=v, tenant=tenant, sent_at=at, consent=r.consent),
                               honeypot=honeypot, honeypot_url=honeypot_url, track_images=track_images)
            (out_dir / name).write_bytes(email.to_bytes())
            row: dict[str, object] = {"recipient": r.recipient, "message": "" if email.aggregate else mid, "variant": v,
                                      "file": name, "pixel": email.pixel, "links": len(email.clicks),
                                      "headers": tracker.unsubscribe_headers(email.message)}
            if email.aggregate:
                row["tracking"] = "aggregate"  # campaign-level URLs: no message id in them
            if r.source_id:
                row["recipient_id"] = r.source_id  # the sender's own id behind the pseudonym
            manifest.write(orjson.dumps(row) + b"\n")
            if r.consent:
                batch.append(Consent(tenant, r.recipient, r.consent, at / 1000, "csv", r.consent_version))
                consents += 1
            if email.aggregate:
                counted[v] = counted.get(v, 0) + 1
                aggregate += 1
            else:
                batch.append(email.send(r.mailbox_domain))
            pending += 1
            if register is not None and pending >= batch_size:
                manifest.flush()
                flush()
            if progress is not None:
                progress(done, total)
        if register is not None and pending:
            manifest.flush()
            flush()
    return CampaignResult(total, registered, out_dir / "manifest.jsonl", len(plan.links), plan.unsubscribe_links,
                          plan.skipped, aggregate, consents)
