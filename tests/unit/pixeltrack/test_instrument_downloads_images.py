"""`instrument`: links to documents become download links (/d/), and with track_images the email's own
images go through the edge (/i/), the email staying byte for byte the original elsewhere."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixeltrack.sender.documents import is_document, is_spacer
from pixeltrack.sender.instrument import EmailPlan, InstrumentedEmail, instrument
from pixeltrack.sender.sdk import Tracker
from schemas.tokens import Keyring
from tests.plugins.edge import EdgeUnderTest
from tests.unit.pixeltrack.test_instrument import (
    BASE_URL,
    EMAILS,
    MESSAGE,
    SNIPPETS,
    _run_cli,
    _token,
    no_env_keys,  # noqa: F401 (a fixture)
    unsplice,
)

# The edge under test has no tenants: its tokens are the default tenant's.
DEFAULT_TENANT = dataclasses.replace(MESSAGE, tenant="")
IMAGE_URL = re.compile(re.escape(BASE_URL) + r"/i/[A-Za-z0-9_.-]+")


@pytest.fixture
def tracker(keyring: Keyring) -> Tracker:
    return Tracker(BASE_URL, keyring)


@pytest.mark.parametrize(("url", "document"), [
    ("https://x.example/price-list.pdf", True), ("https://x.example/a/Invoice-2026.PDF?sig=1#page=2", True),
    ("https://x.example/deck.pptx", True), ("https://x.example/data.csv", True), ("https://x.example/w.docx", True),
    ("https://x.example/pdf/", False), ("https://x.example/report.pdf.html", False),
    ("https://x.example/download?file=a.pdf", False), ("https://x.example/.pdf", False),
    ("https://x.example/", False), ("https://x.example/photo.jpg", False), ("https://[::1/x.pdf", False)])
def test_documents_by_extension(url: str, document: bool) -> None:
    assert is_document(url) is document


@pytest.mark.parametrize(("width", "height", "spacer"), [
    ("1", "1", True), ("1px", " 1 ", True), ("0", "0", True), ("1", None, False), ("600", "1", False),
    (None, None, False), ("1", "2", False)])
def test_spacers_by_size(width: str | None, height: str | None, spacer: bool) -> None:
    assert is_spacer(width, height) is spacer


@pytest.mark.parametrize(("anchor", "kind"), [
    ('<a href="https://files.example/price-list.pdf">Prices</a>', "download"),
    ('<a href="https://files.example/get?id=7" data-pixeltrack="download">Whitepaper</a>', "download"),
    ('<a href="https://files.example/terms.pdf" data-pixeltrack="click">Terms</a>', "click"),
    ('<a href="https://files.example/terms.pdf" data-pixeltrack="off">Terms</a>', None),
    ('<a href="https://x.example/unsubscribe">Unsubscribe</a>', "unsubscribe"),
    ('<a href="https://x.example/shop">Shop</a>', "click")])
def test_links_to_documents_are_download_links(anchor: str, kind: str | None, tracker: Tracker,
                                               keyring: Keyring) -> None:
    plan = EmailPlan.parse(f"<html><body>{anchor}</body></html>")
    assert [link.kind for link in plan.links] == ([kind] if kind else [])
    if kind is None:
        return
    email = instrument(plan, tracker, MESSAGE)
    route = {"download": "/d/", "click": "/c/", "unsubscribe": "/c/"}[kind]
    assert urlsplit(email.clicks[0]).path.startswith(route)
    payload = keyring.verify(_token(email.clicks[0]), "download" if kind == "download" else "click")
    assert payload.url == plan.links[0].destination
    assert plan.download_links == (1 if kind == "download" else 0)


async def test_a_download_link_redirects_through_the_edge_to_its_document(
        edge_app: EdgeUnderTest, tracker: Tracker) -> None:
    plan = EmailPlan.parse('<a href="https://files.example/price-list.pdf" data-pixeltrack-link="prices">P</a>')
    email = instrument(plan, tracker, DEFAULT_TENANT, track_images=True)
    resp = await edge_app.client.get(urlsplit(email.clicks[0]).path, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "https://files.example/price-list.pdf")
    (record,) = await edge_app.records(1)
    assert orjson.loads(record.value)["kind"] == "download"


def restore_images(email: InstrumentedEmail, plan: EmailPlan) -> str:
    """The tracked email with each /i/ URL put back to its image's src as written in the source, found
    independently of the plan's offsets: by the edge's URL shape, in order."""
    out, pos = email.html, 0
    for img in plan.images:
        m = IMAGE_URL.search(out, pos)
        assert m is not None
        original = plan.text[img.start:img.end]
        out = out[:m.start()] + original + out[m.end():]
        pos = m.start() + len(original)
    assert IMAGE_URL.search(out, pos) is None
    return out


@pytest.mark.parametrize("name", ["newsletter.html", "receipt.html", "legacy.html", "intl.html", "template.html"])
def test_tracked_images_change_nothing_but_their_src(name: str, tracker: Tracker) -> None:
    plan = EmailPlan.parse((EMAILS / name).read_bytes(), tracker_base=BASE_URL)
    plain = instrument(plan, tracker, MESSAGE, honeypot=True)
    tracked = instrument(plan, tracker, MESSAGE, honeypot=True, track_images=True)
    assert len(tracked.images) == len(plan.images)
    assert restore_images(tracked, plan) == plain.html  # byte for byte, pixel and links included
    assert plain.images == ()
    assert unsplice(plan, plain) == plan.text  # without track_images, images are left as they are


def test_which_images_are_tracked(tracker: Tracker, keyring: Keyring) -> None:
    source = ('<html><head><base href="https://mail.example/"></head><body>\r\n'
              '<img src="https://img.example/hero.jpg" width="600" alt="Hero">\n'
              "<IMG SRC=rel/logo.png ALT=Logo>\n"
              '<img src="https://img.example/hero.jpg" alt="again">\n'
              '<img src="https://img.example/spacer.gif" width="1" height="1" alt="">\n'
              '<img src="https://img.example/x.png" data-pixeltrack="off">\n'
              '<img src="cid:part1@example"><img src="data:image/png;base64,AAAA">\n'
              '<img src="https://img.example/{{ user.avatar }}.png">\n'
              '<img src="https://t.example.net/o/abc.gif" width="2" height="2">\n'
              '<img src="https://img.example/a%20b.png?x=1&amp;y=2" srcset="https://img.example/a@2x.png 2x">\n'
              "<!--[if mso]><img src='https://img.example/outlook.png'><![endif]-->\n"
              '<img alt="no src"></body></html>')
    plan = EmailPlan.parse(source, tracker_base=BASE_URL)
    assert [img.source for img in plan.images] == [
        "https://img.example/hero.jpg", "https://mail.example/rel/logo.png", "https://img.example/hero.jpg",
        "https://img.example/a%20b.png?x=1&y=2", "https://img.example/outlook.png"]
    email = instrument(plan, tracker, MESSAGE, track_images=True)
    assert email.images[0] == email.images[2]  # one token per distinct image
    assert len(set(email.images)) == 4
    assert [keyring.verify(_token(u), "image").url for u in email.images] == [img.source for img in plan.images]
    assert restore_images(email, plan) == instrument(plan, tracker, MESSAGE).html
    assert "<IMG SRC=" + html.escape(email.images[1]) + " ALT=Logo>" in email.html  # unquoted stays unquoted
    assert "srcset=\"https://img.example/a@2x.png 2x\"" in email.html
    # An email instrumented before keeps its tracked images as they are (no /i/ of an /i/).
    again = EmailPlan.parse(email.html, tracker_base=BASE_URL)
    assert again.images == ()


async def test_a_tracked_image_redirects_to_the_original(edge_app: EdgeUnderTest, tracker: Tracker) -> None:
    plan = EmailPlan.parse('<img src="https://img.example/hero.jpg" alt="Hero">')
    email = instrument(plan, tracker, DEFAULT_TENANT, track_images=True)
    resp = await edge_app.client.get(urlsplit(email.images[0]).path, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "https://img.example/hero.jpg")
    assert "no-store" in resp.headers["Cache-Control"]
    (record,) = await edge_app.records(1)
    assert orjson.loads(record.value)["kind"] == "image"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from([*SNIPPETS, '<img src="https://i.example/a.png">', "<img src=x.png>",
                                       '<img src="https://i.example/b.png" width=1 height=1>',
                                       '<a href="https://f.example/doc.pdf">']) | st.text(max_size=6),
                      max_size=30))
def test_any_markup_with_images_round_trips(parts: list[str], tracker: Tracker) -> None:
    source = "".join(parts)
    plan = EmailPlan.parse(source)
    email = instrument(plan, tracker, MESSAGE, honeypot=True, track_images=True)
    assert unsplice(plan, instrument(plan, tracker, MESSAGE, honeypot=True)) == source
    assert restore_images(email, plan) == instrument(plan, tracker, MESSAGE, honeypot=True).html


@pytest.mark.usefixtures("no_env_keys")
def test_cli_track_images_and_downloads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "list.csv").write_text("recipient\nr-1\n")
    out = tmp_path / "out"
    assert _run_cli(["instrument", str(EMAILS / "legacy.html"), "--campaign", "spring", "--recipients",
                     str(tmp_path / "list.csv"), "--out", str(out), "--base-url", BASE_URL,
                     "--data", str(tmp_path / "data"), "--track-images"]) == 0
    err = capsys.readouterr().err
    assert "1 downloads)" in err
    assert "1 images tracked" in err
    written = (out / "r-1.html").read_text(encoding="latin-1")
    assert f"{BASE_URL}/d/" in written
    assert f"SRC={BASE_URL}/i/" in written
