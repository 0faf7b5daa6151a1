"""Instrumenting real HTML emails: byte-exact splicing, links that resolve through the edge, recipients."""

from __future__ import annotations

import argparse
import dataclasses
import html
import http.server
import io
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.pixel import GIF
from pixeltrack.cli import main as cli_main
from pixeltrack.sender.campaign import (
    JsonlSends,
    Recipient,
    RecipientsError,
    file_names,
    instrument_campaign,
    message_id,
    parse_recipients,
    read_recipients,
)
from pixeltrack.sender.instrument import (
    HONEYPOT_TAG,
    PIXEL_TAG,
    EmailPlan,
    InstrumentedEmail,
    instrument,
    unescape_attribute,
)
from pixeltrack.sender.instrument_cli import add_instrument_parser, add_sends_parser
from pixeltrack.sender.sdk import Message, Tracker, prepare
from schemas.sends import Send
from schemas.tokens import FLAG_HONEYPOT, FLAG_NO_CLICK_ID, FLAG_UNSUBSCRIBE, Keyring
from tests.plugins.edge import EdgeUnderTest, strip_click_id
from tests.plugins.http import http_server

EMAILS = Path(__file__).resolve().parents[2] / "fixtures" / "emails"
BASE_URL = "https://t.example.net"
NOW = int(time.time() * 1000)  # tokens must not have expired when the edge checks them
MESSAGE = Message(campaign="spring", message="m-1", recipient="r-1", variant="A", tenant="acme", sent_at=NOW)

C, U, D = "click", "unsubscribe", "download"
# Every http(s) link of each fixture, in document order, with the destination a browser would open.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "newsletter.html": [
        ("https://news.northwind.example/view/2024-spring?src=email", C),
        ("https://www.northwind.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring24", C),
        ("https://www.northwind.example/spring?utm_source=newsletter&utm_medium=email&utm_content=hero", C),
        ("https://www.northwind.example/spring/shop?utm_content=button&mso=1", C),  # VML, [if mso]
        ("https://www.northwind.example/spring/shop?utm_content=button", C),
        ("https://www.northwind.example/p/ridge-pack-28?utm_content=grid1", C),
        ("https://www.northwind.example/p/ridge-pack-28?utm_content=grid1-text", C),
        ("https://www.northwind.example/p/summit-boot?utm_content=grid2", C),
        ("https://www.northwind.example/p/summit-boot?utm_content=grid2-text", C),
        ("https://www.facebook.com/northwind.example", C),
        ("https://www.instagram.com/northwind.example/", C),
        ("https://news.northwind.example/preferences?u=8f2c", C),
        ("https://news.northwind.example/u/8f2c?list=spring", U),
    ],
    "receipt.html": [
        ("https://acme-coffee.example/", C),  # <area>
        ("https://acme-coffee.example/beans?ref=receipt", C),
        ("https://acme-coffee.example/p/ethiopia-guji?variant=250g&ref=receipt", C),
        ("https://acme-coffee.example/p/v60-filters?ref=receipt", C),
        ("https://acme-coffee.example/orders/1042?token=ab12&currency=USD", C),  # &curren… stays literal
        ("https://acme-coffee.example/legal/privacy", C),
        ("https://acme-coffee.example/legal/terms", C),
    ],
    "legacy.html": [  # <BASE HREF="http://www.hardware-barn.example/weekly/">
        ("http://www.hardware-barn.example/?from=email", C),
        ("http://www.hardware-barn.example/drills.asp?id=17&promo=WEEKLY", C),
        ("http://www.hardware-barn.example/weekly/specials.html", C),
        ("http://www.hardware-barn.example/stores/locator.asp", C),
        ("http://www.hardware-barn.example/catalog.pdf", D),
        ("http://www.hardware-barn.example/coupon.asp?c=1", C),
        ("http://www.hardware-barn.example/video.asp", C),
        ("http://www.hardware-barn.example/cgi-bin/optout.pl?e=4711", U),
    ],
    "template.html": [
        ("https://app.lumen.example/billing?src=renewal", C),
        ("https://app.lumen.example/pricing", C),
        ("https://blog.lumen.example/2024/why-people-unsubscribe", C),  # data-pixeltrack="click"
        ("https://app.lumen.example/notifications", U),  # data-pixeltrack="unsubscribe"
    ],
    "intl.html": [
        ("https://buecher.example/angebote?kategorie=roman&sort=neu&seite=1&ansicht=liste", C),
        ("https://xn--bcher-kva.example/s%C3%BC%C3%9Fes?geschmack=zartbitter", C),
        ("https://buecher.example/veranstaltungen/lesung-2024", C),
        ("https://BUECHER.EXAMPLE/Geschenkgutschein?wert=25&euro=1", C),
        ("https://buecher.example/suche?q=caf%C3%A9&lang=fr", C),
        ('https://buecher.example/zitat?text="Carpe%20diem"', C),
        ("https://mail.buecher.example/a?u=42&l=fruehling", U),  # "Newsletter abbestellen"
        ("https://mail.buecher.example/p?u=42", U),  # title="Abmelden"
    ],
}
FIXTURES = sorted(EXPECTED)


@pytest.fixture
def tracker(keyring: Keyring) -> Tracker:
    return Tracker(BASE_URL, keyring)


def _plan(name: str) -> EmailPlan:
    return EmailPlan.parse((EMAILS / name).read_bytes())


def unsplice(plan: EmailPlan, email: InstrumentedEmail) -> str:
    """Takes the tracking back out: drops the pixel and honeypot, puts each original href value back."""
    out = email.html
    added = [PIXEL_TAG.format(src=html.escape(email.pixel))]
    if email.honeypot:
        added.append(HONEYPOT_TAG.format(href=html.escape(email.honeypot)))
    for tag in added:
        assert out.count(tag) == 1
        out = out.replace(tag, "", 1)
    pos = 0
    for link, click in zip(plan.links, email.clicks, strict=True):
        written = html.escape(click)
        i = out.index(written, pos)
        original = plan.text[link.start:link.end]
        out = out[:i] + original + out[i + len(written):]
        pos = i + len(original)
    return out


# --------------------------------------------------------------------------- fixtures, byte for byte


@pytest.mark.parametrize("name", FIXTURES)
def test_every_http_link_is_planned_with_its_destination_and_kind(name: str) -> None:
    plan = _plan(name)
    assert [(link.destination, link.kind) for link in plan.links] == EXPECTED[name]


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("honeypot", [False, True])
def test_output_differs_from_input_only_where_tracking_was_added(name: str, honeypot: bool,
                                                                 tracker: Tracker) -> None:
    raw = (EMAILS / name).read_bytes()
    plan = EmailPlan.parse(raw)
    email = instrument(plan, tracker, MESSAGE, honeypot=honeypot)
    out = email.to_bytes()
    assert out != raw
    assert unsplice(plan, email).encode(plan.encoding) == raw
    in_hrefs = sum(plan.text[link.start:link.end].count("\r\n") for link in plan.links)  # a wrapped href's own
    assert out.count(b"\r\n") == raw.count(b"\r\n") - in_hrefs
    assert out.startswith(b"\xef\xbb\xbf") == raw.startswith(b"\xef\xbb\xbf")
    for link in plan.links:  # the source's own href text is gone from its place; nothing else moved
        assert BASE_URL + "/c/" not in plan.text[link.start:link.end]


def test_bom_crlf_and_non_ascii_text_survive() -> None:
    raw = (EMAILS / "intl.html").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    plan = EmailPlan.parse(raw)
    assert plan.encoding == "utf-8"
    out = instrument(plan, Tracker(BASE_URL, Keyring({"k": b"0123456789abcdef"}, "k")), MESSAGE).to_bytes()
    assert out.startswith(b"\xef\xbb\xbf<!DOCTYPE html>\r\n")
    for text in ("Frühlingsangebote – Bücherstube Müller", "🌷 Romane", "春の新刊もあります。", "Königstraße"):
        assert text.encode() in out


def test_pixel_goes_before_the_real_closing_body(tracker: Tracker) -> None:
    plan = _plan("newsletter.html")
    out = instrument(plan, tracker, MESSAGE).html
    pixel = PIXEL_TAG.format(src=html.escape(tracker.pixel_url(MESSAGE)))
    assert out.endswith(pixel + "</body>\n</html>\n")
    assert "/* </body> inside CSS is not the end of the body */" in out  # the one inside <style> is text


def test_pixel_markup_is_a_borderless_1x1_block(tracker: Tracker) -> None:
    email = instrument(_plan("receipt.html"), tracker, MESSAGE)
    (img,) = [attrs for tag, attrs in _tags(email.html) if tag == "img" and "/o/" in (attrs.get("src") or "")]
    assert img == {"src": email.pixel, "width": "1", "height": "1", "alt": "", "border": "0",
                   "style": "display:block;width:1px;height:1px;border:0"}


def test_legacy_html_without_closing_body_gets_the_pixel_before_closing_html(tracker: Tracker) -> None:
    out = instrument(_plan("legacy.html"), tracker, MESSAGE).html
    assert re.search(r'<img src="[^"]+/o/[^"]+\.gif"[^>]*/></HTML>\n$', out)
    assert "<A NAME=top></A>" in out
    assert '<A HREF="#top">Back to top</A>' in out


@pytest.mark.parametrize(("source", "expected_tail"), [
    ('<p><a href="https://x.example/">x</a></p>\n', "</p>\n<img"),  # neither </body> nor </html>: the end
    ("<html><body><p>hi</p></html>", "<p>hi</p><img"),
    ("<html><body><p>a</p></BODY ></html>", "<p>a</p><img"),
])
def test_pixel_without_closing_tags(source: str, expected_tail: str, tracker: Tracker) -> None:
    plan = EmailPlan.parse(source)
    out = instrument(plan, tracker, MESSAGE).html
    assert expected_tail in out
    assert out.replace(PIXEL_TAG.format(src=html.escape(tracker.pixel_url(MESSAGE))), "").count("<img") == 0


def test_base_href_resolution_can_be_turned_off() -> None:
    plan = EmailPlan.parse((EMAILS / "legacy.html").read_bytes(), resolve_base=False)
    assert plan.base_href == ""
    assert [s.href for s in plan.skipped if s.reason == "relative"] == [
        "specials.html", "/stores/locator.asp", "//www.hardware-barn.example/catalog.pdf"]
    assert len(plan.links) == 5


def test_untouched_links_stay_verbatim(tracker: Tracker) -> None:
    plan = _plan("template.html")
    out = instrument(plan, tracker, MESSAGE).html
    assert [(s.href, s.reason) for s in plan.skipped] == [
        ("*|ARCHIVE|*", "placeholder"), ("%%view_email_url%%", "placeholder"),
        ("https://app.lumen.example/redeem?code={{ coupon_code }}", "placeholder"),
        ("#section-2", "anchor"), ("/account", "relative"), ("mailto:support@lumen.example", "mailto"),
        ("tel:+441632960961", "tel"), ("sms:+441632960961?body=HELP", "sms"), ("javascript:void(0)", "javascript"),
        ("", "empty"), ("{$profile_url}", "placeholder"), ("https://app.lumen.example/docs", "off"),
        ("{{unsubscribe_url}}", "placeholder"), ("*|UNSUB|*", "placeholder"),
        ("*|UPDATE_PROFILE|*", "placeholder"), ("%%unsub_center_url%%", "placeholder"),
        ("<%asm_group_unsubscribe_raw_url%>", "placeholder")]
    for s in plan.skipped:
        assert f'href="{s.href}"' in out
    assert "{{first_name | default: \"there\"}}" in out
    assert "{% if has_coupon %}" in out


def test_commented_out_links_are_not_wrapped_but_conditional_ones_are(tracker: Tracker) -> None:
    plan = _plan("newsletter.html")
    out = instrument(plan, tracker, MESSAGE).html
    assert '<a href="https://www.northwind.example/old-promo">' in out  # an ordinary comment: not rendered
    (vml,) = [link for link in plan.links if link.conditional]
    assert vml.tag == "v:roundrect"
    assert re.search(r'<v:roundrect [^>]*href="https://t\.example\.net/c/[^"]+" style=', out)


def test_receipt_names_links_and_respects_off(tracker: Tracker, keyring: Keyring) -> None:
    plan = _plan("receipt.html")
    email = instrument(plan, tracker, MESSAGE)
    ids = [keyring.verify(urlsplit(c).path.rsplit("/", 1)[1], "click").link_id for c in email.clicks]
    assert ids == ["", "", "", "", "order-status", "", ""]
    assert 'href="https://tools.carrier.example/track?num=1Z999AA10123456784" data-pixeltrack="off"' in email.html
    assert email.send("Example.COM") == Send(tenant="acme", campaign="spring", variant="A", message="m-1",
                                             recipient="r-1", sent_at=NOW / 1000, mailbox_domain="example.com",
                                             links=7)


# --------------------------------------------------------------------------- through the real edge


def _token(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


@pytest.mark.parametrize("name", FIXTURES)
async def test_wrapped_links_redirect_through_the_edge_to_their_destination(
        name: str, edge_app: EdgeUnderTest, keyring: Keyring, tracker: Tracker) -> None:
    # The edge under test has no tenants: its links are the default tenant's (a token naming a tenant
    # verifies only with that tenant's keys on its domains).
    email = instrument(_plan(name), tracker, dataclasses.replace(MESSAGE, tenant=""), honeypot=True)
    assert [urlsplit(c).netloc for c in email.clicks] == ["t.example.net"] * len(EXPECTED[name])
    for click, (destination, kind) in zip(email.clicks, EXPECTED[name], strict=True):
        assert urlsplit(click).path.startswith("/d/" if kind == D else "/c/")
        resp = await edge_app.client.get(urlsplit(click).path, allow_redirects=False)
        assert resp.status == 302
        assert strip_click_id(resp.headers["Location"]) == destination
        payload = keyring.verify(_token(click), "download" if kind == D else "click")
        expected_flags = FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID if kind == U else 0
        assert (payload.flags, payload.message, payload.recipient, payload.campaign, payload.variant) == (
            expected_flags, "m-1", "r-1", "spring", "A")
    pixel = await edge_app.client.get(urlsplit(email.pixel).path)
    assert pixel.status == 200
    assert await pixel.read() == GIF
    trap = await edge_app.client.get(urlsplit(email.honeypot).path, allow_redirects=False)
    assert trap.status == 302
    assert keyring.verify(_token(email.honeypot), "click").flags == FLAG_HONEYPOT | FLAG_NO_CLICK_ID
    assert len(await edge_app.records(len(email.clicks) + 2)) == len(email.clicks) + 2


# --------------------------------------------------------------------------- honeypot


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    found: list[tuple[str, dict[str, str | None]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

        def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Tags().feed(text)
    return found


@pytest.mark.parametrize("name", FIXTURES)
def test_honeypot_is_invisible_textless_and_flagged(name: str, tracker: Tracker, keyring: Keyring) -> None:
    plan = _plan(name)
    email = instrument(plan, tracker, MESSAGE, honeypot=True)
    tag = HONEYPOT_TAG.format(href=html.escape(email.honeypot))
    assert email.html.index(tag) == plan.honeypot_at  # right after <body ...>, before anything visible
    assert email.html[plan.honeypot_at - 1] == ">"
    assert re.search(r"<body\b[^>]*>$", email.html[:plan.honeypot_at], re.I)
    ((_, attrs),) = [(t, a) for t, a in _tags(email.html) if t == "a" and a.get("href") == email.honeypot]
    assert attrs["aria-hidden"] == "true"
    assert attrs["tabindex"] == "-1"
    assert "display:none!important" in (attrs["style"] or "")
    assert "mso-hide:all" in (attrs["style"] or "")
    assert tag.endswith("></a>")  # no text for a screen reader or a person
    payload = keyring.verify(_token(email.honeypot), "click")
    assert payload.honeypot
    assert payload.link_id == "honeypot"
    assert urlsplit(payload.url).path == "/"
    assert instrument(plan, tracker, MESSAGE).honeypot == ""


def test_honeypot_follows_the_body_start_tag(tracker: Tracker) -> None:
    email = instrument(_plan("newsletter.html"), tracker, MESSAGE, honeypot=True,
                       honeypot_url="https://www.northwind.example/trap")
    assert '<body style="margin:0; padding:0; background-color:#f4f4f4;"><a href="' in email.html
    no_body = instrument(EmailPlan.parse("<p>hi</p>"), tracker, MESSAGE, honeypot=True)
    assert no_body.html.startswith("<p>hi</p><a href=")  # no <body>: next to the pixel


# --------------------------------------------------------------------------- quirks


@pytest.mark.parametrize(("raw", "decoded"), [
    ("https://x.example/?a=1&amp;b=2", "https://x.example/?a=1&b=2"),
    ("?a=1&#38;b=2&#x26;c=3&#38d", "?a=1&b=2&c=3&d"),
    ("?a=1&copy=2", "?a=1&copy=2"),  # legacy entity before "=": literal in attributes
    ("?a=1&currency=EUR", "?a=1&currency=EUR"),  # "&curren" + alphanumeric: literal
    ("?a=1&notify=1", "?a=1&notify=1"),
    ("?x=&copy", "?x=©"),
    ("?x=&copy;y", "?x=©y"),
    ("&quot;q&quot; &amp &lt", '"q" & <'),
    ("&unknown; &#0; &#x110000;", "&unknown; \ufffd \ufffd"),
])
def test_attribute_entities_decode_like_a_browser(raw: str, decoded: str) -> None:
    assert unescape_attribute(raw) == decoded


def test_unquoted_href_stays_unquoted_unless_it_cannot(keyring: Keyring) -> None:
    source = "<A HREF=https://x.example/a TARGET=_blank>x</A>"
    plain = instrument(EmailPlan.parse(source), Tracker(BASE_URL, keyring), MESSAGE).html
    assert re.match(r"<A HREF=https://t\.example\.net/c/[A-Za-z0-9_.-]+ TARGET=_blank>x</A><img", plain)
    odd = instrument(EmailPlan.parse(source), Tracker("https://t.example.net/x=y", keyring), MESSAGE).html
    assert re.match(r'<A HREF="https://t\.example\.net/x=y/c/[A-Za-z0-9_.-]+" TARGET=_blank>', odd)


@pytest.mark.parametrize("source", [
    "<a href='https://x.example/'>x</a><!--[if mso]><a href=https://y.example/>y</a><![endif]-->",
    "<![foo bar]><a href=\"https://x.example/\">x</a>",
    "<a href=\"https://x.example/\"<a href='https://y.example/'>",
    "<!--[if mso]><a href=\"https://x.example/\">unterminated",
    "<a\nhref\n=\n\"https://x.example/\"\n>x</a>",
    "<a href=\"https://x.example/\" href=\"https://y.example/\">dup</a>",
])
def test_odd_markup_never_breaks_the_splice(source: str, tracker: Tracker) -> None:
    plan = EmailPlan.parse(source)
    email = instrument(plan, tracker, MESSAGE, honeypot=True)
    assert unsplice(plan, email) == source


SNIPPETS = ["<a href=\"https://a.example/x?y=1&amp;z=2\">", "<A HREF=https://b.example/>", "</a>", "</A>",
            "<a href='mailto:x@y.example'>", "<a href=\"{{url}}\">", "<area href=\"https://c.example/\">",
            "<!--[if mso]>", "<![endif]-->", "<!--", "-->", "<![if !mso]>", "<body>", "</body>", "<html>",
            "</html>", "<base href=\"https://d.example/e/\">", "<a href=\"rel/x\">", "&amp;", "&copy=", "<",
            ">", "\r\n", "\ufeff", "ü", "<style>", "</style>", "<script>", "</script>", "<v:roundrect href=\"https://v.example/\">",
            "<a href=\"https://u.example/unsubscribe\">", "<a data-pixeltrack=off href=https://o.example/>", "'", "\"",
            "<a href=\"#top\">", "<![CDATA[", "]]>", "<?xml?>", "<!DOCTYPE html>", "<img alt=\"Unsubscribe\">"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(SNIPPETS) | st.text(max_size=6), max_size=30))
def test_any_markup_round_trips(parts: list[str], tracker: Tracker) -> None:
    source = "".join(parts)
    plan = EmailPlan.parse(source)
    email = instrument(plan, tracker, MESSAGE, honeypot=True)
    assert unsplice(plan, email) == source
    for link in plan.links:
        assert link.destination.startswith(("http://", "https://"))


def test_declared_charset_round_trips_and_decodes_urls(tracker: Tracker) -> None:
    raw = ('<html><head><meta charset="iso-8859-1"></head><body><p>Grüße</p>'
           '<a href="https://x.example/café">Café</a></body></html>').encode("latin-1")
    plan = EmailPlan.parse(raw)
    assert plan.encoding == "iso-8859-1"
    assert plan.links[0].destination == "https://x.example/caf%C3%A9"
    email = instrument(plan, tracker, MESSAGE)
    assert unsplice(plan, email).encode(plan.encoding) == raw
    assert b"<p>Gr\xfc\xdfe</p>" in email.to_bytes()
    with pytest.raises(ValueError, match="not valid in utf-8"):
        EmailPlan.parse(b"<p>Gr\xfc\xdfe</p>")


@pytest.mark.parametrize(("anchor", "kind"), [
    ('<a href="https://x.example/u?id=1">Unsubscribe</a>', U),
    ('<a href="https://x.example/optout">here</a>', U),
    ('<a href="https://x.example/list-unsubscribe?x=1">x</a>', U),
    ('<a href="https://x.example/u"><img src="i.png" alt="Unsubscribe"></a>', U),
    ('<a href="https://x.example/u" aria-label="Opt out of these emails">✕</a>', U),
    ('<a href="https://x.example/u" class="footer-unsubscribe">×</a>', U),
    ('<a href="https://x.example/u">Se\n  désabonner</a>', U),
    ('<a href="https://x.example/u" data-pixeltrack="unsubscribe">Stop</a>', U),
    ('<a href="https://x.example/adopt">Adopt outdoor cats</a>', C),
    ('<a href="https://x.example/u/unsubscribe" data-pixeltrack="click">Why people leave</a>', C),
    ('<a href="https://x.example/prefs">Email preferences</a>', C),
    ('<a href="https://x.example/shop">Shop</a> Unsubscribe below', C),  # the text ends at </a>
])
def test_unsubscribe_detection(anchor: str, kind: str, tracker: Tracker, keyring: Keyring) -> None:
    plan = EmailPlan.parse(anchor)
    assert [link.kind for link in plan.links] == [kind]
    (click,) = instrument(plan, tracker, MESSAGE).clicks
    flags = keyring.verify(_token(click), "click").flags
    assert flags == (FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID if kind == U else 0)


def test_same_destination_shares_one_token_per_message(tracker: Tracker) -> None:
    plan = EmailPlan.parse('<a href="https://x.example/">a</a><a href="https://x.example/">b</a>')
    first, second = instrument(plan, tracker, MESSAGE).clicks
    assert first == second
    other = instrument(plan, tracker, Message("spring", "m-2", "r-2", sent_at=NOW)).clicks[0]
    assert other != first


# --------------------------------------------------------------------------- recipients


def _recipients(text: str) -> list[Recipient]:
    return parse_recipients(io.StringIO(text), "list.csv")


def test_recipients_csv_columns() -> None:
    rows = _recipients("\ufeffRecipient, Email ,message,variant,extra\n"
                       "r1,Dana <dana@Example.COM>,,,x\n"
                       "\n"
                       '"r,2",bo@mail.example.org,msg-2,B,\n'
                       "r3\n")
    assert rows == [Recipient("r1", "example.com", "", "", 2), Recipient("r,2", "mail.example.org", "msg-2", "B", 4),
                    Recipient("r3", "", "", "", 5)]
    assert _recipients("recipient;email\nr1;a@b.example\n") == [Recipient("r1", "b.example", line=2)]


@pytest.mark.parametrize(("text", "error"), [
    ("", "line 1: no header row"),
    ("id,email\nr1,a@b.example\n", 'line 1: no "recipient" column (found: id, email)'),
    ("recipient,recipient\nr1,r2\n", 'line 1, column 2: "recipient" is named twice'),
    ("recipient,email\nr1,a@b.example\n,c@d.example\n", 'line 3, column 1 ("recipient"): is empty'),
    ("recipient,email\nr1,not-an-address\n", "line 2, column 2 (\"email\"): 'not-an-address' is not an email"),
    ("recipient,email\nr1,a@b.example\n\nr1,c@d.example\n",
     "line 4, column 1 (\"recipient\"): 'r1' is already on line 2"),
    ("email,recipient,message\na@b.example,r1,m\nc@d.example,r2,m\n",
     "line 3, column 3 (\"message\"): 'm' is already on line 2"),
    ("recipient\nr1,extra\n", "line 2: 2 fields but the header names 1"),
    ("recipient,variant\nr1," + "v" * 201 + "\n", 'line 2, column 2 ("variant"): longer than 200'),
    ('recipient,note\nr1,"two\nlines"\n"r2,x\n', "line 4: unexpected end of data"),
    ("recipient\n\n\n", "no recipients"),
])
def test_recipients_csv_errors_name_line_and_column(text: str, error: str) -> None:
    with pytest.raises(RecipientsError, match=re.escape(error)):
        _recipients(text)


def test_recipients_file_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"recipient\nJos\xe9\n")
    with pytest.raises(RecipientsError, match="not UTF-8"):
        read_recipients(path)


def test_message_ids_and_file_names() -> None:
    assert message_id("spring", "A", "r-1") == "spring-A-r-1"
    assert message_id("spring", "", "r-1") == "spring-r-1"
    long_id = message_id("c" * 150, "", "r" * 150)
    assert long_id.startswith("m-")
    assert len(long_id) == 34
    names = file_names([Recipient(r) for r in ("dana@example.com", "../etc/passwd", "Bob", "bob", "con", ".hidden",
                                               "ü")])
    assert names[0] == "dana@example.com.html"
    assert all(re.fullmatch(r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*\.html", n) for n in names)
    assert names[2] == "Bob.html"
    assert names[3].startswith("bob-")
    assert len({n.lower() for n in names}) == len(names)


# --------------------------------------------------------------------------- a campaign


def test_two_thousand_recipients_quickly(tmp_path: Path, tracker: Tracker, keyring: Keyring) -> None:
    plan = _plan("newsletter.html")
    recipients = [Recipient(f"r{i}", "example.com", variant="B" if i % 2 else "") for i in range(2000)]
    batches: list[int] = []
    sends: list[Send] = []

    def register(batch: list[Send]) -> None:
        batches.append(len(batch))
        sends.extend(batch)

    started = time.perf_counter()
    result = instrument_campaign(plan, tracker, recipients, tmp_path, campaign="spring", variant="A",
                                 honeypot=True, register=register, sent_at=NOW, batch_size=750)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"2,000 recipients took {elapsed:.1f}s"
    assert (result.emails, result.registered, result.links, result.unsubscribe_links) == (2000, 2000, 13, 1)
    assert batches == [750, 750, 500]
    assert len(list(tmp_path.glob("*.html"))) == 2000
    manifest = [orjson.loads(line) for line in (tmp_path / "manifest.jsonl").read_bytes().splitlines()]
    assert manifest[1] == {"recipient": "r1", "message": "spring-B-r1", "variant": "B", "file": "r1.html",
                           "pixel": manifest[1]["pixel"], "links": 13, "headers": manifest[1]["headers"]}
    assert keyring.verify(_token(manifest[1]["pixel"])[:-4], "open").message == "spring-B-r1"
    assert sends[0] == Send(tenant="", campaign="spring", variant="A", message="spring-A-r0", recipient="r0",
                            sent_at=NOW / 1000, mailbox_domain="example.com", links=13)
    one = (tmp_path / "r7.html").read_text()
    assert manifest[7]["pixel"] in html.unescape(one)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pixeltrack")
    sub = parser.add_subparsers(dest="command", required=True)
    add_instrument_parser(sub)
    add_sends_parser(sub)
    args = parser.parse_args(argv)
    return int(args.fn(args))


@pytest.fixture
def no_env_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No keys in the environment: the key of the data folder tmp_path/data, made as `serve` makes it at
    its first start (instrument, as link, refuses a folder without one)."""
    from pixeltrack.compose.build import data_dir_keyring

    for var in ("PIXELTRACK_SIGNING_KEYS", "PIXELTRACK_SIGNING_KEY_ID", "PIXELTRACK_TOKEN_TTL_DAYS"):
        monkeypatch.delenv(var, raising=False)
    data_dir_keyring(tmp_path / "data")


@pytest.mark.usefixtures("no_env_keys")
def test_cli_writes_emails_manifest_and_sends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "list.csv").write_text("recipient,email\nr-1,ana@example.org\nweird/id,bo@example.net\n")
    out = tmp_path / "out"
    code = _run_cli(["instrument", str(EMAILS / "template.html"), "--campaign", "spring", "--variant", "A",
                     "--recipients", str(tmp_path / "list.csv"), "--out", str(out), "--base-url", BASE_URL,
                     "--data", str(tmp_path / "data"), "--honeypot"])
    assert code == 0
    err = capsys.readouterr().err
    assert "4 links wrapped (1 unsubscribe)" in err
    assert "redeem?code={{ coupon_code }}" in err
    assert "placeholder" in err
    assert "wrote 2 emails" in err
    files = sorted(p.name for p in out.iterdir())
    assert files[:2] == ["manifest.jsonl", "r-1.html"]
    assert files[2] == "sends.jsonl"
    assert files[3].startswith("weird_id-")
    sends = [Send.decode(line) for line in (out / "sends.jsonl").read_bytes().splitlines()]
    assert [(s.message, s.mailbox_domain, s.links) for s in sends] == [
        ("spring-A-r-1", "example.org", 4), ("spring-A-weird/id", "example.net", 4)]
    keyring = Keyring.parse((tmp_path / "data" / "signing.key").read_text().strip())
    first = orjson.loads((out / "manifest.jsonl").read_bytes().splitlines()[0])
    assert keyring.verify(_token(first["pixel"])[:-4], "open").recipient == "r-1"


@pytest.mark.usefixtures("no_env_keys")
def test_cli_reports_csv_errors_and_refuses_to_overwrite_the_email(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("recipient,email\nr1,nope\n")
    base = ["--campaign", "c", "--base-url", BASE_URL, "--data", str(tmp_path / "data")]
    with pytest.raises(RecipientsError, match=r'line 2, column 2 \("email"\)'):
        _run_cli(["instrument", str(EMAILS / "receipt.html"), "--recipients", str(tmp_path / "bad.csv"),
                  "--out", str(tmp_path / "o"), *base])
    (tmp_path / "email.html").write_text("<p>x</p>")
    (tmp_path / "list.csv").write_text("recipient\nemail\n")
    with pytest.raises(ValueError, match="would be overwritten"):
        _run_cli(["instrument", str(tmp_path / "email.html"), "--recipients", str(tmp_path / "list.csv"),
                  "--out", str(tmp_path), *base])
    assert (tmp_path / "email.html").read_text() == "<p>x</p>"


@pytest.fixture
def sends_api() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """A stand-in for the ingest API's POST /v1/sends that keeps what it was sent."""
    received: list[tuple[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers["Authorization"], body))
            answer = orjson.dumps({"accepted": len(body["sends"])})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield url, received


@pytest.mark.usefixtures("no_env_keys")
def test_cli_registers_sends_with_the_api(tmp_path: Path,
                                          sends_api: tuple[str, list[tuple[str, Any]]]) -> None:
    url, received = sends_api
    (tmp_path / "key").write_text("sekret\n")
    (tmp_path / "list.csv").write_text("recipient,email,message\nr-1,a@x.example,m-one\n")
    code = _run_cli(["instrument", str(EMAILS / "receipt.html"), "--campaign", "c", "--recipients",
                     str(tmp_path / "list.csv"), "--out", str(tmp_path / "o"), "--base-url", BASE_URL,
                     "--data", str(tmp_path / "data"), "--api", url, "--api-key-file", str(tmp_path / "key")])
    assert code == 0
    ((auth, body),) = received
    assert auth == "Bearer sekret"
    (send,) = body["sends"]
    assert {k: send[k] for k in ("campaign", "message", "recipient", "mailbox_domain", "links")} == {
        "campaign": "c", "message": "m-one", "recipient": "r-1", "mailbox_domain": "x.example", "links": 7}
    assert not (tmp_path / "o" / "sends.jsonl").exists()


@pytest.mark.usefixtures("no_env_keys")
def test_without_api_the_sends_are_written_not_registered_and_post_registers_them(
        tmp_path: Path, sends_api: tuple[str, list[tuple[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    url, received = sends_api
    (tmp_path / "list.csv").write_text("recipient,email\nr-1,a@x.example\nr-2,b@y.example\n")
    out = tmp_path / "o"
    assert _run_cli(["instrument", str(EMAILS / "receipt.html"), "--campaign", "c", "--recipients",
                     str(tmp_path / "list.csv"), "--out", str(out), "--base-url", BASE_URL,
                     "--data", str(tmp_path / "data")]) == 0
    err = capsys.readouterr().err
    assert "registered" not in err.replace("not registered", "")
    assert f"2 sends written to {out / 'sends.jsonl'}, not registered" in err
    assert received == []
    assert cli_main(["sends", "post", str(out / "sends.jsonl"), "--api", url, "--api-key", "k"]) == 0
    ((auth, body),) = received
    assert auth == "Bearer k"
    assert [s["recipient"] for s in body["sends"]] == ["r-1", "r-2"]
    assert f"2 of 2 sends registered with {url}" in capsys.readouterr().err


def test_sends_post_refuses_a_bad_line_before_posting_anything(
        tmp_path: Path, sends_api: tuple[str, list[tuple[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    url, received = sends_api
    good = Send("", "c", "", "m", "r", 1_790_000_000.0, "example.com", 1).encode().decode()
    (tmp_path / "s.jsonl").write_text(good + "\n" + '{"campaign": "c"}\n')
    assert cli_main(["sends", "post", str(tmp_path / "s.jsonl"), "--api", url, "--api-key", "k"]) == 2
    assert received == []
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pixeltrack sends post: {tmp_path / 's.jsonl'}, line 2: ")
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("no_env_keys")
def test_email_addresses_as_ids_are_warned_about_or_replaced_by_pseudonyms(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "list.csv").write_text("recipient,email\nAna@Example.org,ana@example.org\nr-2,b@y.example\n")
    base = ["instrument", str(EMAILS / "receipt.html"), "--campaign", "c", "--recipients",
            str(tmp_path / "list.csv"), "--base-url", BASE_URL, "--data", str(tmp_path / "data")]
    assert _run_cli([*base, "--out", str(tmp_path / "plain")]) == 0
    warning = capsys.readouterr().err
    assert "recipient ids look like email addresses (1 of 2, e.g. 'Ana@Example.org')" in warning
    assert "--hash-recipients" in warning

    out = tmp_path / "hashed"
    assert _run_cli([*base, "--out", str(out), "--hash-recipients"]) == 0
    assert "look like email addresses" not in capsys.readouterr().err
    keyring = Keyring.parse((tmp_path / "data" / "signing.key").read_text().strip())
    manifest = [orjson.loads(line) for line in (out / "manifest.jsonl").read_bytes().splitlines()]
    assert [m["recipient_id"] for m in manifest] == ["Ana@Example.org", "r-2"]
    for m in manifest:
        assert re.fullmatch(r"p-[0-9a-f]{32}", m["recipient"])
        assert keyring.verify(_token(m["pixel"])[:-4], "open").recipient == m["recipient"]
    # Nothing written but the manifest holds the address: not the file names, emails, URLs or sends.
    for f in out.iterdir():
        if f.name != "manifest.jsonl":
            assert "ana@example.org" not in f.name.lower()
            assert "ana@example.org" not in html.unescape(f.read_text()).lower()
    # The same id gets the same pseudonym (case of an address aside); another key, another one.
    from pixeltrack.sender.recipient_ids import Pseudonyms

    assert Pseudonyms(keyring).of(" ana@example.ORG ") == manifest[0]["recipient"]
    other = Keyring({"k2": b"another-secret-of-32-bytes-length"}, "k2")
    assert Pseudonyms(other).of("Ana@Example.org") != manifest[0]["recipient"]


@pytest.mark.usefixtures("no_env_keys")
def test_instrument_says_the_address_warning_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Its own line, with the counts; not the SDK's logged ones as well (the message ids it makes from
    address-shaped recipient ids hold them: the same warning). Message ids of the list that hold an address
    are a line of their own, since --hash-recipients does not change them."""
    base = ["instrument", str(EMAILS / "receipt.html"), "--campaign", "c", "--base-url", BASE_URL, "--data",
            str(tmp_path / "data")]
    (tmp_path / "list.csv").write_text("recipient\nana@example.org\nbo@example.net\n")
    assert _run_cli([*base, "--recipients", str(tmp_path / "list.csv"), "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().err + "".join(r.getMessage() + "\n" for r in caplog.records)
    assert said.count("email addresses") == 1, said
    assert "look like email addresses (2 of 2, e.g. 'ana@example.org')" in said

    caplog.clear()
    (tmp_path / "ids.csv").write_text("recipient,message\nana@example.org,m-ana@example.org\nbo@example.net,m-2\n")
    assert _run_cli([*base, "--recipients", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "hashed"),
                     "--hash-recipients"]) == 0
    said = capsys.readouterr().err + "".join(r.getMessage() + "\n" for r in caplog.records)
    assert said.count("email addresses") == 1, said
    assert "message ids hold email addresses (e.g. '…@example.org')" in said


def test_the_sdk_warns_once_about_address_ids_and_can_hash_them(caplog: pytest.LogCaptureFixture) -> None:
    keyring = Keyring({"k1": b"0123456789abcdef0123456789abcdef"}, "k1")
    plain = Tracker(BASE_URL, keyring)
    m = Message(campaign="c", message="m-1", recipient="ana@example.org", sent_at=NOW)
    prepare(plain, m, ["https://shop.example.com/"])
    prepare(plain, m, ["https://shop.example.com/"])
    warnings = [r for r in caplog.records if "look like email addresses" in r.getMessage()]
    assert len(warnings) == 1
    assert "ana@" not in warnings[0].getMessage()
    hashed = Tracker(BASE_URL, keyring, hash_recipients=True)
    p = prepare(hashed, m, ["https://shop.example.com/"])
    assert re.fullmatch(r"p-[0-9a-f]{32}", p.send.recipient)
    assert keyring.verify(_token(p.pixel)[:-4], "open").recipient == p.send.recipient
    assert "ana" not in p.pixel + "".join(p.clicks)


def test_jsonl_sends_round_trip(tmp_path: Path) -> None:
    sink = JsonlSends(tmp_path / "s" / "sends.jsonl")
    send = Send("t", "c", "v", "m", "r", 1_790_000_000.5, "example.com", 3)
    sink([send, send])
    sink.close()
    assert [Send.decode(line) for line in sink.path.read_bytes().splitlines()] == [send, send]


def test_an_email_instrumented_twice_is_not_wrapped_twice(tracker: Tracker) -> None:
    """Re-instrumenting an output (or an email quoting a tracked link) wrapped the tracker's own /c/ and
    /u/ URLs in new tokens and added a second pixel: two clicks a person, maybe another message's."""
    source = ('<html><body><a href="https://shop.example.com/p">shop</a>'
              '<a href="https://shop.example.com/unsubscribe">unsubscribe</a></body></html>')
    once = instrument(EmailPlan.parse(source, tracker_base=BASE_URL), tracker, MESSAGE).html
    again_plan = EmailPlan.parse(once, tracker_base=BASE_URL)
    assert again_plan.links == ()
    assert {s.reason for s in again_plan.skipped} == {"tracked"}
    assert again_plan.has_pixel
    assert instrument(again_plan, tracker, MESSAGE).html == once
    # another tracker's links are links like any other
    assert len(EmailPlan.parse(once, tracker_base="https://t.other.example").links) == 2
