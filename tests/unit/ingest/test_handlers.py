"""Edge answers: pixel, redirect, not-found, and what each forwards."""

from __future__ import annotations

import asyncio
import base64
import time

from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.pixel import GIF
from ingest.publisher import QueuePublisher
from schemas.records import DeadLetter, RawHit, Record
from schemas.settings import Settings
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, TokenPayload
from tests.plugins.edge import EdgeUnderTest

NOW = int(time.time() * 1000)
OPEN = TokenPayload("open", "", "spring", "A", "m-1", "r-1", NOW)
CLICK = TokenPayload("click", "", "spring", "A", "m-1", "r-1", NOW, url="https://shop.example.com/x?a=1")
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
    # the signed destination, with the edge's signed click id appended to its query
    assert resp.headers["Location"].startswith("https://shop.example.com/x?a=1&pt_cid=")
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


async def test_paths_that_are_not_one_token_get_their_routes_answer(edge_app: EdgeUnderTest) -> None:
    resp = await edge_app.client.get("/o/a/b.gif")
    assert (resp.status, await resp.read()) == (200, GIF)
    resp = await edge_app.client.get("/c/a/b", allow_redirects=False)
    assert resp.status == 404
    assert "Location" not in resp.headers
    letters = [DeadLetter.decode(r.value) for r in await edge_app.records(2)]
    assert [(d.kind, d.reason) for d in letters] == [("open", "malformed"), ("click", "malformed")]


async def test_unsendable_destination_is_not_followed(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    bad = TokenPayload("click", "", "spring", "A", "m-1", "r-1", NOW, url="https://x.example/\r\nSet-Cookie: a")
    resp = await edge_app.client.get(f"/c/{keyring.mint(bad)}", allow_redirects=False)
    assert resp.status == 404
    (record,) = await edge_app.records(1)
    assert DeadLetter.decode(record.value).reason == "bad_destination"


async def test_readiness_reports_transport_and_spool(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    await edge_app.client.get(f"/o/{keyring.mint(OPEN)}.gif")
    await edge_app.records(1)
    body = await (await edge_app.client.get("/readyz")).json()
    assert body["ready"] is True
    assert body["mode"] == "direct"
    assert body["transport"] == "ok"
    assert {"queue", "spool_bytes", "spool_segments", "dropped"} <= body.keys()


async def test_metrics_count_hits_by_kind_and_result(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    def value(text: str, series: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(series + " ")), f"{series} 0")
        return float(line.rsplit(" ", 1)[1])

    before = await (await edge_app.client.get("/metrics")).text()
    await edge_app.client.get(f"/o/{keyring.mint(OPEN)}.gif")
    await edge_app.client.get("/o/junk.gif")
    await edge_app.records(2)
    after = await (await edge_app.client.get("/metrics")).text()
    for series in ('pixeltrack_edge_hits_total{kind="open",result="ok"}',
                   'pixeltrack_edge_hits_total{kind="open",result="malformed"}'):
        assert value(after, series) == value(before, series) + 1
    for name in ("pixeltrack_edge_queue_depth", "pixeltrack_edge_spool_bytes", "pixeltrack_edge_spool_segments",
                 "pixeltrack_edge_publish_seconds_bucket", "pixeltrack_edge_forwarder_direct"):
        assert name in after


async def test_tokens_are_checked_with_the_keys_of_the_domains_tenant(settings: Settings, keyring: Keyring) -> None:
    acme_keys = Keyring({"a1": b"acme-secret-0123456789abcdef"}, "a1")
    spec = "a1:" + base64.urlsafe_b64encode(b"acme-secret-0123456789abcdef").decode().rstrip("=")
    tenants = TenantRegistry({"acme": Tenant("acme", ("t.acme.example",), spec)}, default=keyring)
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus), tenants=tenants)
    acme_click = acme_keys.mint(TokenPayload("click", "acme", "c", "A", "m", "r", NOW, url="https://acme.example/"))
    default_click = keyring.mint(CLICK)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        cases = [("t.acme.example", acme_click, 302), ("T.ACME.example:443", acme_click, 302),
                 ("other.example", acme_click, 404), ("t.acme.example", default_click, 404),
                 ("other.example", default_click, 302)]
        for host, token, want in cases:
            resp = await client.get(f"/c/{token}", headers={"Host": host}, allow_redirects=False)
            assert resp.status == want, (host, want)
        # signed with acme's key but naming another tenant: a forgery all the same
        posing = acme_keys.mint(TokenPayload("click", "", "c", "A", "m", "r", NOW, url="https://evil.example/"))
        resp = await client.get(f"/c/{posing}", headers={"Host": "t.acme.example"}, allow_redirects=False)
        assert resp.status == 404
        await asyncio.sleep(0.1)
    letters = [DeadLetter.decode(r.value) for r in [bus.get_nowait() for _ in range(bus.qsize())]
               if r.topic == "hits.dlq"]
    assert [d.reason for d in letters] == ["unknown_key", "unknown_key", "wrong_tenant"]
