"""Instruments real HTML emails: a signed pixel, wrapped links (downloads for documents), optionally the
email's own images routed through the edge and a honeypot, per recipient.

The HTML is parsed once (`EmailPlan.parse`) with the standard library's tokenizer, which only *locates*
tags and attribute values; the output is the original text spliced at those places. So an instrumented
email equals its source byte for byte except for the replaced href (and, with track_images, img src)
values and the inserted pixel and honeypot, whatever the source's quirks (comments, Outlook conditionals,
CRLF, a BOM, odd quoting).
Signing is per recipient: `instrument` mints the tokens of one message and fills the plan's slots.
The campaign side (recipients list, message ids, files, manifest, sends) is pixeltrack/sender/campaign.py;
which links are documents and which images are content, pixeltrack/sender/documents.py.

Longer than 400 lines because the HTML scan (a tokenizer subclass, exact attribute spans, charset decoding,
link destinations) and the plan it builds share offsets into one source text and the same constants; the
campaign side is campaign.py.
"""

from __future__ import annotations

import codecs
import html
import html.entities
import html.parser
import re
import time
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from pixeltrack.sender.documents import is_document, is_spacer
from pixeltrack.sender.sdk import Message, Tracker, aggregate_send
from schemas.aggregate import AggregateSends
from schemas.sends import MAX_ID, Send
from schemas.tokens import MAX_URL_CHARS

LinkKind = Literal["click", "unsubscribe", "download"]

PIXEL_TAG = ('<img src="{src}" width="1" height="1" alt="" border="0" '
             'style="display:block;width:1px;height:1px;border:0" />')
# Invisible to people (display:none, mso-hide for Outlook, no text) and to assistive technology
# (aria-hidden, out of the tab order); scanners that follow every href still fetch it.
HONEYPOT_TAG = ('<a href="{href}" aria-hidden="true" tabindex="-1" style="display:none!important;'
                'mso-hide:all;visibility:hidden;opacity:0;overflow:hidden;max-height:0;max-width:0;'
                'font-size:0;line-height:0"></a>')
HONEYPOT_LINK_ID = "honeypot"
PREFERENCES_PLACEHOLDER = "{{pixeltrack_preferences_url}}"
"""Where the email wants the recipient's tracking preferences link (/p/<token>): replaced by `instrument`
wherever it appears (an href, or text); a link holding it is otherwise left alone like any merge tag."""

# The attribute that steers one link: off = leave alone, unsubscribe or download = force that kind, click =
# force a plain tracked click (no unsubscribe or document detection); data-pixeltrack-link names the link
# (its link id). On an <img>, off keeps the image out of --track-images.
MARKER_ATTR = "data-pixeltrack"
LINK_ID_ATTR = "data-pixeltrack-link"
MARKERS = ("off", "unsubscribe", "click", "download")

# ESP and template-engine merge tags. A link holding one is left alone: the ESP substitutes it after
# us, and inside a signed token it would never be substituted.
PLACEHOLDER_RE = re.compile(
    r"\{\{.*?\}\}|\{%.*?%\}|\{\$[^}]*\}|\$\{[^}]*\}|\*\|.*?\|\*|%%.*?%%|<%.*?%>|\[\[.*?\]\]"
    r"|%recipient[._][^%]*%|%tag_[^%]*%|\{#.*?#\}", re.S)

_UNSUB_HREF = re.compile(r"un-?subscri|(?<![a-z])opt[-_.]?out|list[-_]?unsub|\bunsub\b|abmeld|abbestell|d[eé]sabonn"
                         r"|d[eé]sinscri", re.I)
_UNSUB_TEXT = re.compile(
    r"un-?subscri|\bopt[- ]?out\b|abmelden|abbestellen|austragen|d[ée]sabonner|d[ée]sinscri|darse de baja"
    r"|cancelar (?:la )?suscripci|anular (?:la )?suscripci|disiscriv|uitschrijven|afmelden|avregistrer"
    r"|avsluta prenumeration|wypisz|odhlásit|配信停止|購読解除|退订|取消订阅|구독 ?취소|отписаться", re.I)
_HINT_ATTRS = ("title", "aria-label", "alt", "class", "id", "name", "rel")
_MAX_HINT_CHARS = 400

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONDITIONAL_RE = re.compile(r"\[if\s[^\]]*\]>")
_ENDIF = "<![endif]"
_UNQUOTED_SAFE = re.compile(r"[^\s\"'=<>`]+")
_URL_WS = str.maketrans("", "", "\t\n\r")
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")

# The tokenizer's own regular expressions, so attribute spans are found exactly as the parser found
# the attributes (copies for Pythons that would not expose them; results are cross-checked anyway).
_TAG_RE: re.Pattern[str] = getattr(html.parser, "tagfind_tolerant",
                                   re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*"))
_ATTR_RE: re.Pattern[str] = getattr(html.parser, "attrfind_tolerant", re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"))


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Link:
    """One link that gets a signed click URL. `start`/`end` delimit its href value in the source text
    (inside the quotes; `quote` is the quote character, "" when unquoted)."""

    tag: str
    start: int
    end: int
    quote: str
    destination: str  # the decoded, absolute http(s) URL the click redirects to
    kind: LinkKind
    link_id: str
    line: int
    column: int
    conditional: bool  # inside an Outlook conditional comment


@dataclass(frozen=True, slots=True)
class Image:
    """One content image that `instrument(track_images=True)` routes through the edge: `start`/`end`
    delimit its src value in the source text (inside the quotes; `quote` as for Link)."""

    start: int
    end: int
    quote: str
    source: str  # the decoded, absolute http(s) address the edge redirects to
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class SkippedLink:
    """A link left as it is, and why: off, empty, anchor, placeholder, relative, scheme (mailto, tel,
    sms, javascript, ...), invalid, too_long, tracked (the tracker's own URL)."""

    tag: str
    href: str
    reason: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class EmailPlan:
    """A parsed email: where each edit goes. Immutable and reusable for any number of recipients."""

    text: str
    encoding: str
    links: tuple[Link, ...]
    skipped: tuple[SkippedLink, ...]
    pixel_at: int  # before the last </body>; else before the last </html>; else the end
    honeypot_at: int  # right after <body ...>; else next to the pixel
    base_href: str  # the <base href> that relative links were resolved against ("" = none)
    has_pixel: bool  # the tracker's pixel is there already (see parse's tracker_base): none is added
    images: tuple[Image, ...]  # content images (`<img src>`) track_images routes through the edge
    _pieces: tuple[str, ...] = field(repr=False, compare=False)
    _slots: tuple[int, ...] = field(repr=False, compare=False)  # link index, or _PIXEL / _HONEYPOT

    @classmethod
    def parse(cls, source: str | bytes, *, encoding: str | None = None, resolve_base: bool = True,
              tracker_base: str | None = None) -> EmailPlan:
        """Plans the edits of one email. Bytes are decoded as `encoding`, else by their UTF-8 BOM, else as
        UTF-8, else as their <meta charset>; ValueError when none fits. With `resolve_base`, relative
        links are resolved against an absolute http(s) <base href> and wrapped; without a <base> they
        stay as they are. `tracker_base` (the tracking base URL): links already on it (an email
        instrumented before, or quoting a tracked link) stay as they are (reason "tracked"), and an
        email that already has its pixel gets no second one."""
        text, enc = decode_html(source, encoding) if isinstance(source, bytes) else (source, encoding or "utf-8")
        return _build_plan(text, enc, resolve_base, tracker_base)

    @property
    def unsubscribe_links(self) -> int:
        return sum(1 for link in self.links if link.kind == "unsubscribe")

    @property
    def download_links(self) -> int:
        return sum(1 for link in self.links if link.kind == "download")


_PIXEL = -1
_HONEYPOT = -2
_IMAGE0 = -3  # image i's slot is _IMAGE0 - i


@dataclass(frozen=True, slots=True)
class InstrumentedEmail:
    """One recipient's email. `clicks` follows `plan.links` (a download link's URL is its /d/ one);
    `honeypot` is "" when none was added; `images` follows `plan.images` when they were tracked, else ()."""

    html: str
    encoding: str
    message: Message  # with its sent_at fixed
    pixel: str
    clicks: tuple[str, ...]
    honeypot: str
    recipient_id: str  # what the tokens carry: the recipient, or its pseudonym (Tracker(hash_recipients=True))
    images: tuple[str, ...] = ()
    preferences: str = ""  # the preferences link put where PREFERENCES_PLACEHOLDER was ("" when none was)
    aggregate: bool = False  # tracked in aggregate: its tokens carry no message, recipient nor send time

    def to_bytes(self) -> bytes:
        # The source round-trips through its codec (checked at parse); only inserted text could fail.
        return self.html.encode(self.encoding, "xmlcharrefreplace")

    def send(self, mailbox_domain: str = "") -> Send | AggregateSends:
        """The Send that registers this email (the denominator of its rates); for an email tracked in
        aggregate, the AggregateSends that counts it (sdk.aggregate_send)."""
        m = self.message
        if self.aggregate:
            return aggregate_send(m)
        return Send(tenant=m.tenant, campaign=m.campaign, variant=m.variant, message=m.message,
                    recipient=self.recipient_id, sent_at=m.sent_at / 1000, mailbox_domain=mailbox_domain.lower(),
                    links=len(self.clicks))


def instrument(plan: EmailPlan, tracker: Tracker, message: Message, *, honeypot: bool = False,
               honeypot_url: str | None = None, track_images: bool = False,
               preferences_text_version: str = "") -> InstrumentedEmail:
    """Mints one message's pixel, click and download URLs and splices them into the plan. Links with the
    same destination, id and kind share one token. The honeypot redirects to `honeypot_url`, by default the
    origin of the email's first link (else the tracking base URL). `track_images`: the content images'
    src become /i/ URLs of the edge (one per distinct image), so loading them counts as the open. Where the
    email holds PREFERENCES_PLACEHOLDER, the recipient's preferences link goes (its disclosure version:
    `preferences_text_version`)."""
    m = message if message.sent_at else replace(message, sent_at=int(time.time() * 1000))
    pixel = tracker.pixel_url(m)
    minted: dict[tuple[str, str, LinkKind], str] = {}
    clicks: list[str] = []
    for link in plan.links:
        key = (link.destination, link.link_id, link.kind)
        url = minted.get(key)
        if url is None:
            unsub = link.kind == "unsubscribe"
            url = minted[key] = (
                tracker.download_url(m, link.destination, link.link_id) if link.kind == "download" else
                tracker.click_url(m, link.destination, link.link_id, unsubscribe=unsub, click_id=not unsub))
        clicks.append(url)
    images: list[str] = []
    if track_images:
        by_source: dict[str, str] = {}
        for img in plan.images:
            url = by_source.get(img.source)
            if url is None:
                url = by_source[img.source] = tracker.image_url(m, img.source)
            images.append(url)
    trap = ""
    if honeypot:
        trap = tracker.click_url(m, honeypot_url or _default_honeypot_url(plan, tracker), HONEYPOT_LINK_ID,
                                 honeypot=True, click_id=False)
    parts: list[str] = [plan._pieces[0]]
    for slot, piece in zip(plan._slots, plan._pieces[1:], strict=True):
        if slot == _PIXEL:
            parts.append(PIXEL_TAG.format(src=html.escape(pixel)))
        elif slot == _HONEYPOT:
            if trap:
                parts.append(HONEYPOT_TAG.format(href=html.escape(trap)))
        elif slot <= _IMAGE0:
            img = plan.images[_IMAGE0 - slot]
            parts.append(_attr_value(images[_IMAGE0 - slot], img.quote) if images else plan.text[img.start:img.end])
        else:
            parts.append(_attr_value(clicks[slot], plan.links[slot].quote))
        parts.append(piece)
    out = "".join(parts)
    preferences = ""
    if PREFERENCES_PLACEHOLDER in plan.text:
        preferences = tracker.preferences_url(m, preferences_text_version)
        out = out.replace(PREFERENCES_PLACEHOLDER, html.escape(preferences, quote=True))
    return InstrumentedEmail(out, plan.encoding, m, pixel, tuple(clicks), trap, tracker.recipient_id(m.recipient),
                             images=tuple(images), preferences=preferences, aggregate=not tracker.individual(m))


def _attr_value(url: str, quote_char: str) -> str:
    value = html.escape(url, quote=True)
    if quote_char or _UNQUOTED_SAFE.fullmatch(value):
        return value
    return f'"{value}"'  # an unquoted value that would not survive unquoted


def _default_honeypot_url(plan: EmailPlan, tracker: Tracker) -> str:
    if plan.links:
        parts = urlsplit(plan.links[0].destination)
        return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    return f"{tracker.base_url}/"


# --------------------------------------------------------------------------- decoding


def decode_html(raw: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text of an email file and the codec that gives its bytes back exactly. A UTF-8 BOM stays in
    the text (as U+FEFF) so that it is written back."""
    if encoding:
        candidates = [encoding]
    elif raw.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8"]
    else:
        candidates = ["utf-8"]
        declared = _META_CHARSET.search(raw[:4096])
        if declared:
            candidates.append(declared.group(1).decode("ascii"))
    for enc in candidates:
        try:
            codecs.lookup(enc)
            text = raw.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
        if text.encode(enc) == raw:
            return text, enc
    tried = ", ".join(candidates)
    raise ValueError(f"the email is not valid in {tried} (or does not round-trip); give its encoding")


def unescape_attribute(value: str) -> str:
    """Decodes character references in an attribute value as browsers do. Unlike html.unescape, a legacy
    reference without ';' stays literal before '=' or an alphanumeric, so "?a=1&copy=2" or
    "&currency=EUR" keep their query parameters (HTML spec, "named character reference state")."""
    if "&" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref[0] == "#":
            return html.unescape(m.group(0))
        known = html.entities.html5.get(ref)
        if known is None or ref.endswith(";"):
            return known if known is not None else m.group(0)
        after = value[m.end():m.end() + 1]
        return m.group(0) if after == "=" or after.isalnum() else known

    return _CHARREF.sub(one, value)


# --------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _Candidate:
    tag: str
    tag_start: int
    start: int
    end: int
    quote: str
    href: str
    marker: str
    link_id: str
    conditional: bool
    hints: list[str]
    hint_chars: int = 0

    def hint(self, text: str) -> None:
        if self.hint_chars < _MAX_HINT_CHARS and text.strip():
            self.hints.append(text)
            self.hint_chars += len(text)


@dataclass(slots=True)
class _Scan:
    """What the parsers found, in absolute offsets of the whole text."""

    candidates: list[_Candidate] = field(default_factory=list)
    images: list[_Candidate] = field(default_factory=list)  # <img src>, href holding the src
    collecting: _Candidate | None = None
    base_href: str | None = None
    body_open_end: int | None = None
    body_close: int | None = None
    html_close: int | None = None


class _Tokenizer(html.parser.HTMLParser):
    """Reports tags with absolute offsets. A conditional comment's body is tokenized by a nested
    instance whose offsets start where the body starts, because Outlook renders what is inside."""

    def __init__(self, text: str, base: int, scan: _Scan, conditional: bool) -> None:
        super().__init__(convert_charrefs=True)
        self._text = text
        self._base = base
        self._scan = scan
        self._conditional = conditional
        starts = [0]
        find = text.find
        i = find("\n")
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        self._line_starts = starts

    def run(self) -> None:
        self.feed(self._text)
        self.close()

    def _here(self) -> int:
        line, col = self.getpos()  # the tokenizer counts lines by "\n" only, as we do
        return self._line_starts[line - 1] + col

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # "<![foo ...>" with an unknown keyword: a bogus comment, as browsers treat it, not a crash.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            return self.parse_bogus_comment(i, report)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        scan = self._scan
        local = self._here()
        raw = self.get_starttag_text() or ""
        if self._text[local:local + len(raw)] != raw:
            return  # cannot happen with the tokenizer as written; never guess a position
        top = not self._conditional
        if tag == "body" and top and scan.body_open_end is None:
            scan.body_open_end = self._base + local + len(raw)
        if tag in ("a", "area", "base", "img") or tag.startswith("v:"):
            spans = _attribute_spans(self._text, local, local + len(raw))
            if [name for name, _, _ in spans] != [name for name, _ in attrs]:
                return  # the tokenizer saw other attributes than our scan: leave the tag alone
            values = {}
            for name, value_span, quote_char in spans:
                if value_span is not None and name not in values:
                    values[name] = (value_span, quote_char)
            self._link_tag(tag, local, values, top)

    def _link_tag(self, tag: str, local: int, values: dict[str, tuple[tuple[int, int], str]], top: bool) -> None:
        scan = self._scan
        text = self._text

        def value(name: str) -> str | None:
            if name not in values:
                return None
            (s, e), _ = values[name]
            return unescape_attribute(text[s:e])

        if tag == "img":  # an image inside a link: its alt text describes the link
            alt = value("alt")
            if alt and scan.collecting:
                scan.collecting.hint(alt)
            if "src" in values and not is_spacer(value("width"), value("height")):
                (s, e), quote_char = values["src"]
                scan.images.append(_Candidate(
                    tag=tag, tag_start=self._base + local, start=self._base + s, end=self._base + e,
                    quote=quote_char, href=value("src") or "", marker=(value(MARKER_ATTR) or "").strip().lower(),
                    link_id="", conditional=not top, hints=[]))
            return
        if tag == "base":
            href = value("href")
            if top and href is not None and scan.base_href is None:
                scan.base_href = href
            return
        if tag == "a":
            scan.collecting = None  # an <a> does not nest: a new one ends the previous
        if "href" not in values:
            return
        (s, e), quote_char = values["href"]
        cand = _Candidate(tag=tag, tag_start=self._base + local, start=self._base + s, end=self._base + e,
                          quote=quote_char, href=value("href") or "",
                          marker=(value(MARKER_ATTR) or "").strip().lower(),
                          link_id=(value(LINK_ID_ATTR) or "").strip(), conditional=not top, hints=[])
        for name in _HINT_ATTRS:
            hint = value(name)
            if hint:
                cand.hint(hint)
        scan.candidates.append(cand)
        if tag != "area":
            scan.collecting = cand

    def handle_endtag(self, tag: str) -> None:
        scan = self._scan
        if scan.collecting is not None and tag == scan.collecting.tag:
            scan.collecting = None
        if not self._conditional and tag in ("body", "html"):
            at = self._base + self._here()
            if tag == "body":
                scan.body_close = at
            else:
                scan.html_close = at

    def handle_data(self, data: str) -> None:
        if self._scan.collecting is not None:
            self._scan.collecting.hint(data)

    def handle_comment(self, data: str) -> None:
        m = _CONDITIONAL_RE.match(data)
        if not m:
            return
        local = self._here()
        body_at = local + 4 + m.end()
        if self._text[local:local + 4] != "<!--" or self._text[local + 4:local + 4 + len(data)] != data:
            return
        body = data[m.end():]
        if body.endswith(_ENDIF):
            body = body[:-len(_ENDIF)]
        _Tokenizer(body, self._base + body_at, self._scan, conditional=True).run()


def _attribute_spans(text: str, start: int, end: int) -> list[tuple[str, tuple[int, int] | None, str]]:
    """(lower-case name, span of the value inside any quotes or None, quote character) of each attribute
    of the start tag text[start:end], scanned with the tokenizer's own patterns."""
    m = _TAG_RE.match(text, start + 1)
    if not m:
        return []
    k = m.end()
    out: list[tuple[str, tuple[int, int] | None, str]] = []
    while k < end:
        a = _ATTR_RE.match(text, k, end)
        if not a:
            break
        name = a.group(1).lower()
        if not a.group(2):
            out.append((name, None, ""))
        else:
            s, e = a.span(3)
            q = text[s] if e - s >= 2 and text[s] in "'\"" and text[e - 1] == text[s] else ""
            out.append((name, (s + 1, e - 1) if q else (s, e), q))
        k = a.end()
    return out


def _build_plan(text: str, encoding: str, resolve_base: bool, tracker_base: str | None = None) -> EmailPlan:
    scan = _Scan()
    _Tokenizer(text, 0, scan, conditional=False).run()
    starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(offset: int) -> tuple[int, int]:
        line = bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1

    base = ""
    if resolve_base and scan.base_href is not None:
        b = _clean_url(scan.base_href)
        if _SCHEME_RE.match(b) and b.lower().startswith(("http://", "https://")) and not PLACEHOLDER_RE.search(b):
            base = b
    links: list[Link] = []
    skipped: list[SkippedLink] = []
    for c in scan.candidates:
        line, col = where(c.tag_start)
        destination, reason = _destination(c, base)
        if not reason and tracker_base and _is_tracked(destination, tracker_base):
            reason = "tracked"
        if reason:
            skipped.append(SkippedLink(c.tag, c.href, reason, line, col))
            continue
        kind: LinkKind = "unsubscribe" if c.marker == "unsubscribe" or (
            c.marker not in ("click", "download") and _is_unsubscribe(c.href, c.hints)) else "download" if (
            c.marker == "download" or (c.marker != "click" and is_document(destination))) else "click"
        links.append(Link(c.tag, c.start, c.end, c.quote, destination, kind, c.link_id[:MAX_ID], line, col,
                          c.conditional))

    pixel_at = next(p for p in (scan.body_close, scan.html_close, len(text)) if p is not None)
    honeypot_at = scan.body_open_end if scan.body_open_end is not None and scan.body_open_end <= pixel_at \
        else pixel_at
    # Edits in text order; at one offset the honeypot goes before the pixel.
    images: list[Image] = []
    for c in scan.images:
        source, reason = _destination(c, base)
        if not reason and not (tracker_base and _is_tracked(source, tracker_base)):
            images.append(Image(c.start, c.end, c.quote, source, *where(c.tag_start)))
    edits: list[tuple[int, int, int, int]] = [(link.start, 1, link.end, i) for i, link in enumerate(links)]
    edits += [(img.start, 1, img.end, _IMAGE0 - i) for i, img in enumerate(images)]
    has_pixel = bool(tracker_base and f"{tracker_base.rstrip('/')}/o/" in text)
    edits += [(honeypot_at, 0, honeypot_at, _HONEYPOT)] + ([] if has_pixel else [(pixel_at, 0, pixel_at, _PIXEL)])
    edits.sort(key=lambda e: (e[0], e[1], e[3] != _HONEYPOT))
    pieces: list[str] = []
    slots: list[int] = []
    pos = 0
    for s, _, e, slot in edits:
        pieces.append(text[pos:s])
        slots.append(slot)
        pos = e
    pieces.append(text[pos:])
    return EmailPlan(text, encoding, tuple(links), tuple(skipped), pixel_at, honeypot_at, base, has_pixel,
                     tuple(images), tuple(pieces), tuple(slots))


def _is_tracked(url: str, tracker_base: str) -> bool:
    """A URL the tracker serves: a pixel, a wrapped link or an unsubscribe page of `tracker_base`."""
    mine, it = urlsplit(tracker_base), urlsplit(url)
    prefix = mine.path.rstrip("/")
    return (it.hostname or "") == (mine.hostname or "") and it.port == mine.port and it.path.startswith(
        tuple(f"{prefix}/{route}/" for route in "ocudip"))


def _clean_url(href: str) -> str:
    # As the URL parser does: no leading/trailing C0 controls or spaces, no tabs or newlines anywhere.
    return href.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14"
                      "\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ").translate(_URL_WS)


def _destination(c: _Candidate, base: str) -> tuple[str, str]:
    """(absolute destination, "") for a link to wrap, or ("", reason) for one to leave alone."""
    if c.marker == "off":
        return "", "off"
    url = _clean_url(c.href)
    if not url:
        return "", "empty"
    if url.startswith("#"):
        return "", "anchor"
    if PLACEHOLDER_RE.search(url):
        return "", "placeholder"
    scheme = _SCHEME_RE.match(url)
    if scheme is None:
        if not base:
            return "", "relative"
        url = urljoin(base, url)
    elif scheme.group(1).lower() not in ("http", "https"):
        return "", scheme.group(1).lower()
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", "invalid"
    if not parts.hostname:
        return "", "invalid"
    url = ascii_url(url)
    if len(url) > MAX_URL_CHARS:
        return "", "too_long"
    # Normalise the scheme's case only, so the edge's http(s) check and the redirect agree.
    return parts.scheme.lower() + url[len(parts.scheme):], ""


def ascii_url(url: str) -> str:
    """The URL a browser would request for a link: a non-ASCII host in IDNA, other non-ASCII characters
    and spaces percent-encoded as UTF-8. ASCII URLs without spaces are returned unchanged."""
    if url.isascii() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":") if not hostport.startswith("[") else (hostport, "", "")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            host = quote(host, safe="")
        netloc = f"{quote(userinfo, safe=':%')}{at}{host}{colon}{port}"
    safe = "!#$%&'()*+,-./:;=?@[]~_|^{}\\`\"<>"
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=safe), quote(parts.query, safe=safe),
                       quote(parts.fragment, safe=safe)))


def _is_unsubscribe(href: str, hints: list[str]) -> bool:
    """An unsubscribe link by its href ("unsubscribe", "opt-out", "list-unsubscribe", ...) or by what a
    reader sees or hears: its text, an image's alt, title, aria-label, class or id, in a few languages.
    Wrong guesses are corrected in the HTML with data-pixeltrack="click" or ="unsubscribe"."""
    if _UNSUB_HREF.search(href):
        return True
    text = " ".join(" ".join(hints).split())
    return bool(_UNSUB_TEXT.search(unicodedata.normalize("NFKC", text)))
