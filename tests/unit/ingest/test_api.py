"""The ingest API: keys, all-or-nothing validation with named fields, sends and attributed conversions."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from ingest.api import create_api_app
from ingest.publisher import QueuePublisher
from schemas.records import Record
from schemas.sends import Conversion, Send
from schemas.tokens import ClickRef, Keyring, mint_click_ref
from schemas.topics import Topics

KEY = {"Authorization": "Bearer k-secret"}


async def client_for(keyring: Keyring, bus: asyncio.Queue[Record]) -> TestClient:
    app = create_api_app(keyring, ["k-secret"], Topics(), QueuePublisher(bus), own_publisher=False,
                         clock=lambda: 1_790_000_000.0)
    return TestClient(TestServer(app, host="127.0.0.1"))


async def test_sends_need_a_key_and_name_the_bad_field(keyring: Keyring) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    async with await client_for(keyring, bus) as client:
        assert (await client.post("/v1/sends", json={"sends": []})).status == 401
        bad = await client.post("/v1/sends", headers=KEY, json={"sends": [
            {"campaign": "c", "message": "m-1", "recipient": "r-1"}, {"campaign": "c", "recipient": "r-2"}]})
        assert bad.status == 422
        body = await bad.json()
        assert body["errors"] == ["sends[1].message: is required"]
        assert bus.empty()  # all or nothing
        ok = await client.post("/v1/sends", headers=KEY, json={"sends": [
            {"campaign": "c", "variant": "B", "message": "m-1", "recipient": "r-1", "mailbox_domain": "Gmail.com"}]})
        assert ok.status == 202
        assert (await ok.json()) == {"accepted": 1}
    record = bus.get_nowait()
    assert (record.topic, record.key) == ("sends", b"m-1")
    send = Send.decode(record.value)
    assert (send.variant, send.mailbox_domain, send.sent_at) == ("B", "gmail.com", 1_790_000_000.0)


async def test_conversion_by_click_id_is_attributed(keyring: Keyring) -> None:
    click_id = mint_click_ref(keyring, ClickRef("", "spring", "A", "m-7", "r-7", "hit-42", "pricing"))
    bus: asyncio.Queue[Record] = asyncio.Queue()
    async with await client_for(keyring, bus) as client:
        forged = await client.post("/v1/conversions", headers=KEY, json={"conversions": [
            {"idempotency_key": "o-1", "value": 10, "currency": "EUR", "click_id": click_id[:-2] + "AA"}]})
        assert forged.status == 422
        assert "click_id: not a valid click id" in (await forged.json())["errors"][0]
        bad_currency = await client.post("/v1/conversions", headers=KEY, json={"conversions": [
            {"idempotency_key": "o-1", "value": 10, "currency": "EURO", "click_id": click_id}]})
        assert "currency" in (await bad_currency.json())["errors"][0]
        ok = await client.post("/v1/conversions", headers=KEY, json={"conversions": [
            {"idempotency_key": "o-1", "value": 49.5, "currency": "eur", "click_id": click_id}]})
        assert ok.status == 202
    c = Conversion.decode(bus.get_nowait().value)
    assert (c.campaign, c.variant, c.message, c.recipient, c.link, c.click_hit_id, c.value, c.currency) == (
        "spring", "A", "m-7", "r-7", "pricing", "hit-42", 49.5, "EUR")
