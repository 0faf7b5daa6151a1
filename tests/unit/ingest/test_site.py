"""The edge's site routes: /s.js served right, and each beacon of /s/e turned into its record or refused."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import orjson

from schemas.records import DeadLetter, RawHit
from schemas.sends import Conversion
from schemas.tokens import ClickRef, Keyring, TokenPayload, mint_click_ref
from tests.plugins.edge import EdgeUnderTest

NOW = int(time.time() * 1000)
CLICK = TokenPayload("click", "", "spring", "B", "m-7", "r-7", NOW, url="https://shop.example.com/land?a=1",
                     link_id="hero")
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
BEACON_HEADERS = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com",
                  "User-Agent": CHROME}


async def click_id_of_a_click(edge_app: EdgeUnderTest, keyring: Keyring) -> tuple[str, str]:
    """The click id a real redirect appends, and the click's hit id (its RawHit's)."""
    resp = await edge_app.client.get(f"/c/{keyring.mint(CLICK)}", allow_redirects=False)
    assert resp.status == 302
    (cid,) = parse_qs(urlsplit(resp.headers["Location"]).query)["pt_cid"]
    (record,) = await edge_app.records(1)
    return cid, RawHit.decode(record.value).id


async def post(edge_app: EdgeUnderTest, body: object) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = await edge_app.client.post("/s/e", data=data, headers=BEACON_HEADERS)
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    return resp.status, await resp.text()


async def test_the_script_is_served_cacheable_with_the_edges_click_id_parameter(edge_app: EdgeUnderTest) -> None:
    resp = await edge_app.client.get("/s.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=3600"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    script = await resp.text()
    assert 'var PARAM = "pt_cid", DAYS = 30,' in script
    assert "eval(" not in script
    assert "document.cookie" not in script
    assert len(script.encode()) < 8 * 1024
    again = await edge_app.client.get("/s.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    head = await edge_app.client.head("/s.js")
    assert head.status == 200


async def test_a_view_with_the_redirects_click_id_is_a_visit_hit(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    cid, _ = await click_id_of_a_click(edge_app, keyring)
    status, _ = await post(edge_app, {"event": "view", "click_id": cid, "page": "https://shop.example.com/land?a=1"})
    assert status == 204
    (record,) = await edge_app.records(1)
    assert (record.topic, record.key) == ("hits.raw", b"m-7")
    hit = RawHit.decode(record.value)
    assert (hit.kind, hit.method, hit.token, hit.path, hit.ua) == (
        "visit", "POST", cid, "https://shop.example.com/land", CHROME)


async def test_a_view_without_a_click_id_keeps_the_sites_origin_only(edge_app: EdgeUnderTest) -> None:
    status, _ = await post(edge_app, {"event": "view", "page": "https://shop.example.com/account/4711?x=1"})
    assert status == 204
    (record,) = await edge_app.records(1)
    assert (record.topic, record.key) == ("hits.raw", b"https://shop.example.com/")
    hit = RawHit.decode(record.value)
    assert (hit.kind, hit.token, hit.path) == ("site_visit", "", "https://shop.example.com/")


async def test_a_conversion_is_published_attributed_through_the_click_id(edge_app: EdgeUnderTest,
                                                                         keyring: Keyring) -> None:
    cid, click_hit = await click_id_of_a_click(edge_app, keyring)
    status, _ = await post(edge_app, {"event": "conversion", "click_id": cid, "page": "https://shop.example.com/thanks",
                                      "value": 49.5, "currency": "EUR", "id": "order-1001"})
    assert status == 204
    (record,) = await edge_app.records(1)
    assert (record.topic, record.key) == ("conversions", b"m-7")
    c = Conversion.decode(record.value)
    assert (c.tenant, c.idempotency_key, c.value, c.currency, c.click_id, c.click_hit_id, c.message, c.campaign,
            c.variant, c.recipient, c.link) == ("", "site:m-7:order-1001", 49.5, "EUR", cid, click_hit, "m-7",
                                                "spring", "B", "r-7", "hero")
    assert abs(c.ts - time.time()) < 60


async def test_junk_gets_a_4xx_and_a_dead_letter(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    other = Keyring({"t1": b"another-secret-0123456789abc"}, "t1")
    forged = mint_click_ref(other, ClickRef("", "spring", "B", "m-7", "r-7", "h", "hero"))
    cases = [
        (b"{not json", 400, "body: not JSON", "malformed"),
        ({"event": "view", "page": "ftp://x.example/"}, 422, "page: must be an http(s) URL", "malformed"),
        ({"event": "view", "click_id": forged, "page": "https://shop.example.com/"}, 422,
         "click_id: not a valid click id (bad_signature)", "bad_signature"),
        ({"event": "conversion", "click_id": forged, "page": "https://shop.example.com/", "id": "o"}, 422,
         "click_id: not a valid click id (bad_signature)", "bad_signature"),
        (b"{}" + b" " * 5000, 413, "body: over 4096 bytes", "too_large"),
    ]
    for body, status, said, reason in cases:
        got = await post(edge_app, body)
        assert got == (status, said + "\n")
        (record,) = await edge_app.records(1)
        assert record.topic == "hits.dlq"
        letter = DeadLetter.decode(record.value)
        assert (letter.stage, letter.kind, letter.reason, letter.path) == ("edge", "beacon", reason, "/s/e")
    assert edge_app.bus.empty()


async def test_a_preflight_is_answered_for_any_origin(edge_app: EdgeUnderTest) -> None:
    resp = await edge_app.client.options("/s/e", headers={"Origin": "https://shop.example.com",
                                                          "Access-Control-Request-Method": "POST"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert edge_app.bus.empty()
