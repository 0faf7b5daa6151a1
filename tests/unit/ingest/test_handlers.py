"""Edge answers: pixel, redirect, not-found, and what each forwards."""

from __future__ import annotations

import time

from ingest.pixel import GIF
from schemas.records import DeadLetter, RawHit
from schemas.tokens import Keyring, TokenPayload
from tests.plugins.edge import EdgeUnderTest

NOW = int(time.time() * 1000)
OPEN = TokenPayload("open", "acme", "spring", "A", "m-1", "r-1", NOW)
CLICK = TokenPayload("click", "acme", "spring", "A", "m-1", "r-1", NOW, url="https://shop.example.com/x?a=1")
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"


async def test_pixel_answers_gif_and_forwards_raw_hit(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    token = keyring.mint(OPEN)
    resp = await edge_app.client.get(f"/o/{token}.gif", headers={"User-Agent": "UA/1", "Accept": "image/*"})
    assert resp.status == 200
    assert await resp.read() == GIF
    assert resp.headers["Content-Type"] == "image/gif"
    assert resp.headers["Cache-Control"] == NO_STORE
    assert resp.headers["Pragma"] == "no-cache"
    assert resp.headers["Expires"] == "0"
    (record,) = await edge_app.records(1)
    assert record.topic == "hits.raw"
    assert record.key == b"m-1"
    hit = RawHit.decode(record.value)
    assert (hit.kind, hit.method, hit.token, hit.ua, hit.ip) == ("open", "GET", token, "UA/1", "127.0.0.1")
    assert hit.headers == {"accept": "image/*"}
    assert hit.edge == "test-edge"


async def test_head_pixel_is_answered_and_recorded(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    resp = await edge_app.client.head(f"/o/{keyring.mint(OPEN)}.gif")
    assert resp.status == 200
    (record,) = await edge_app.records(1)
    assert RawHit.decode(record.value).method == "HEAD"


async def test_click_redirects_to_signed_destination(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    resp = await edge_app.client.get(f"/c/{keyring.mint(CLICK)}", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "https://shop.example.com/x?a=1"
    assert "no-store" in resp.headers["Cache-Control"]
    (record,) = await edge_app.records(1)
    assert RawHit.decode(record.value).kind == "click"


async def test_forged_click_is_404_never_redirect(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    kid, body, tag = keyring.mint(CLICK).split(".")
    forged = f"{kid}.{body}.{'A' * len(tag)}"
    resp = await edge_app.client.get(f"/c/{forged}?next=https://evil.example/", allow_redirects=False)
    assert resp.status == 404
    assert "Location" not in resp.headers
    assert "not valid" in await resp.text()
    (record,) = await edge_app.records(1)
    assert record.topic == "hits.dlq"
    letter = DeadLetter.decode(record.value)
    assert (letter.stage, letter.reason, letter.kind) == ("edge", "bad_signature", "click")


async def test_bad_pixel_still_answers_gif(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    for path, reason in [("/o/garbage.gif", "malformed"), (f"/o/{keyring.mint(CLICK)}.gif", "wrong_kind"),
                         ("/o/" + "x" * 5000 + ".gif", "too_long")]:
        resp = await edge_app.client.get(path)
        assert resp.status == 200
        assert await resp.read() == GIF
        (record,) = await edge_app.records(1)
        assert DeadLetter.decode(record.value).reason == reason


async def test_expired_token(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    expired = TokenPayload("click", "", "c", "", "m", "r", 1000, expires_at=2000, url="https://example.com/")
    resp = await edge_app.client.get(f"/c/{keyring.mint(expired)}", allow_redirects=False)
    assert resp.status == 404
    (record,) = await edge_app.records(1)
    assert DeadLetter.decode(record.value).reason == "expired"


async def test_health_and_readiness(edge_app: EdgeUnderTest) -> None:
    assert (await edge_app.client.get("/healthz")).status == 200
    ready = await edge_app.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["ready"] is True
    metrics = await (await edge_app.client.get("/metrics")).text()
    assert "pixeltrack_edge_hits_total" in metrics
