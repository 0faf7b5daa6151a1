"""/d/<token> (a document) and /i/<token> (one of the email's images): a 302 to the signed address, never
cached, one RawHit of its kind; a bad or foreign token is never a redirect. The same answers and records
from the fast path and from aiohttp's handlers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ingest.pages import NOT_FOUND_HTML
from ingest.pixel import GIF
from schemas.records import DeadLetter, RawHit
from schemas.tokens import TokenPayload
from tests.unit.ingest.test_fastpath import KEYRING, Served, _serve, exchange, get

NOW = int(time.time() * 1000)
DOC = "https://files.example.com/price-list.pdf?v=2"
IMG = "https://img.example.com/hero.jpg"
DOWNLOAD = KEYRING.mint(TokenPayload("download", "", "c", "A", "m-3", "r-3", NOW, url=DOC, link_id="prices"))
IMAGE = KEYRING.mint(TokenPayload("image", "", "c", "A", "m-4", "r-4", NOW, url=IMG))
CLICK = KEYRING.mint(TokenPayload("click", "", "c", "A", "m-2", "r-2", NOW, url="https://shop.example/p"))
OPEN = KEYRING.mint(TokenPayload("open", "", "c", "A", "m-1", "r-1", NOW))


@pytest.fixture(params=["fast", "plain"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    runner: web.AppRunner
    runner, s = await _serve(request.param == "fast")
    yield s
    await runner.cleanup()


async def test_a_download_redirects_to_its_document_and_records_one_download(served: Served) -> None:
    (status, headers, body), = await exchange(served.port, get(f"/d/{DOWNLOAD}"))
    assert (status, headers["location"], body) == (302, DOC, b"")  # no click id on a document's address
    assert "no-store" in headers["cache-control"]
    assert headers["referrer-policy"] == "no-referrer"
    (record,) = await served.records(1)
    hit = RawHit.decode(record.value)
    assert (record.key, hit.kind, hit.token, hit.path) == (b"m-3", "download", DOWNLOAD, f"/d/{DOWNLOAD}")


async def test_an_image_redirects_to_the_original_never_cached(served: Served) -> None:
    (status, headers, _), = await exchange(served.port, get(f"/i/{IMAGE}"))
    assert (status, headers["location"]) == (302, IMG)
    assert headers["cache-control"] == "no-store, no-cache, must-revalidate, max-age=0"
    assert headers["pragma"] == "no-cache"
    (record,) = await served.records(1)
    assert (record.key, RawHit.decode(record.value).kind) == (b"m-4", "image")


async def test_head_of_a_download_and_an_image_is_answered_and_recorded(served: Served) -> None:
    answers = await exchange(served.port, get(f"/d/{DOWNLOAD}", method="HEAD"), head_only=True)
    answers += await exchange(served.port, get(f"/i/{IMAGE}", method="HEAD"), head_only=True)
    assert [(a[0], a[1]["location"]) for a in answers] == [(302, DOC), (302, IMG)]
    assert [RawHit.decode(r.value).method for r in await served.records(2)] == ["HEAD", "HEAD"]


async def test_bad_or_foreign_tokens_are_never_a_redirect(served: Served) -> None:
    """A forged download token, and a click or open token on /d/, answer 404; an image route with a bad
    token answers the pixel (no broken image in anyone's mail). Each is a dead letter, nothing is counted."""
    forged = DOWNLOAD[:-3] + ("AAA" if not DOWNLOAD.endswith("AAA") else "BBB")
    paths = [f"/d/{forged}", f"/d/{CLICK}", f"/d/{OPEN}", f"/d/{IMAGE}", f"/i/{DOWNLOAD}", f"/i/{CLICK}",
             "/i/garbage"]
    answers = []
    for path in paths:
        answers += await exchange(served.port, get(f"{path}?next=https://evil.example/"))
    assert [(a[0], a[2], "location" in a[1]) for a in answers] == [
        (404, NOT_FOUND_HTML, False)] * 4 + [(200, GIF, False)] * 3
    letters = [DeadLetter.decode(r.value) for r in await served.records(7, "hits.dlq")]
    assert [(d.kind, d.reason) for d in letters] == [
        ("download", "bad_signature"), ("download", "wrong_kind"), ("download", "wrong_kind"),
        ("download", "wrong_kind"), ("image", "wrong_kind"), ("image", "wrong_kind"), ("image", "malformed")]
    assert [r for r in served.publisher.records if r.topic == "hits.raw"] == []


async def test_a_path_that_is_not_one_token_is_a_dead_letter(served: Served) -> None:
    answers = await exchange(served.port, get(f"/d/{DOWNLOAD}/x"))
    answers += await exchange(served.port, get(f"/i/a/{IMAGE}"))
    assert [(a[0], a[2]) for a in answers] == [(404, NOT_FOUND_HTML), (200, GIF)]
    letters = [DeadLetter.decode(r.value) for r in await served.records(2, "hits.dlq")]
    assert [(d.kind, d.reason) for d in letters] == [("download", "malformed"), ("image", "malformed")]


async def test_an_expired_image_still_shows_and_counts_nothing(served: Served) -> None:
    """An old email keeps its pictures: a genuine image token past its expiry redirects to its image, as
    an `expired` dead letter, no hit; an expired download is a 404 like an expired click."""
    old = TokenPayload("image", "", "c", "A", "m-5", "r-5", NOW - 10_000, expires_at=NOW - 5_000, url=IMG)
    old_doc = TokenPayload("download", "", "c", "A", "m-5", "r-5", NOW - 10_000, expires_at=NOW - 5_000, url=DOC)
    answers = await exchange(served.port, get(f"/i/{KEYRING.mint(old)}"))
    answers += await exchange(served.port, get(f"/d/{KEYRING.mint(old_doc)}"))
    assert [(a[0], a[1].get("location")) for a in answers] == [(302, IMG), (404, None)]
    letters = [DeadLetter.decode(r.value) for r in await served.records(2, "hits.dlq")]
    assert [(d.kind, d.reason) for d in letters] == [("image", "expired"), ("download", "expired")]
    assert [r for r in served.publisher.records if r.topic == "hits.raw"] == []
