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


async def test_a_conversion_value_beyond_the_bound_is_refused_naming_the_field_and_the_limit(keyring: Keyring) -> None:
    """Two posts of 1e308 summed to a revenue of Infinity: a value is at most 1e12 (a 422, nothing sent)."""
    bus: asyncio.Queue[Record] = asyncio.Queue()
    conversion = {"idempotency_key": "k", "message": "m-1"}
    async with await client_for(keyring, bus) as client:
        for value in (1e308, 1e12 + 1, 10**13, -1, "5"):
            bad = await client.post("/v1/conversions", headers=KEY,
                                    json={"conversions": [{**conversion, "value": value}]})
            assert bad.status == 422, value
            assert (await bad.json())["errors"] == ["conversions[0].value: must be a number from 0 to 1e+12"]
        assert bus.empty()
        ok = await client.post("/v1/conversions", headers=KEY, json={"conversions": [{**conversion, "value": 1e12}]})
        assert ok.status == 202
    assert Conversion.decode(bus.get_nowait().value).value == 1e12


async def test_times_outside_what_clickhouse_holds_and_overlong_fields_are_refused_by_name(keyring: Keyring) -> None:
    """One out-of-range time would make ClickHouse refuse the processors' whole batch, again at every
    retry: the API refuses it (the clock here is 2026-09-21) and names the field."""
    bus: asyncio.Queue[Record] = asyncio.Queue()
    send = {"campaign": "c", "message": "m-1", "recipient": "r-1"}
    async with await client_for(keyring, bus) as client:
        for sent_at in (1e300, -1e18, True, "0001-01-01T00:00:00+14:00", 1_790_000_000 + 3 * 86_400, "nan"):
            bad = await client.post("/v1/sends", headers=KEY, json={"sends": [{**send, "sent_at": sent_at}]})
            assert bad.status == 422, sent_at
            assert (await bad.json())["errors"][0].startswith("sends[0].sent_at: "), sent_at
        conversion = {"idempotency_key": "k", "message": "m-1", "value": 1}
        bad = await client.post("/v1/conversions", headers=KEY, json={"conversions": [{**conversion, "ts": 1e300}]})
        assert (await bad.json())["errors"][0].startswith("conversions[0].ts: ")
        for field in ("message", "campaign", "tenant"):
            bad = await client.post("/v1/conversions", headers=KEY,
                                    json={"conversions": [{**conversion, field: "x" * 201}]})
            assert bad.status == 422, field
            assert (await bad.json())["errors"] == [f"conversions[0].{field}: longer than 200 characters"]
        ok = await client.post("/v1/sends", headers=KEY, json={"sends": [{**send, "sent_at": 1_790_000_000 + 3600}]})
        assert ok.status == 202  # an hour ahead: clock skew, taken
    assert bus.qsize() == 1


async def test_an_authorization_header_that_is_not_utf8_is_a_wrong_key_not_an_error(keyring: Keyring) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    async with await client_for(keyring, bus) as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"POST /v1/sends HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                     b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")
        await writer.drain()
        status = await reader.readline()
        writer.close()
    assert status.startswith(b"HTTP/1.1 401"), status


async def test_a_tenants_api_key_writes_for_its_tenant_only_and_its_click_ids_are_checked_with_its_keys(
        keyring: Keyring) -> None:
    """`pixeltrack tenants add` hands a tenant an API key: the API takes it, stamps the tenant on what it
    writes, refuses records naming another tenant, and checks the tenant's click ids (minted on its
    domains with its own signing keys) with those keys; the operator's key may name a known tenant."""
    from schemas.tenants import Tenant, TenantRegistry

    acme = Tenant("acme", ("t.acme.example",), "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg", "a1", ("acme-key",))
    other = Tenant("other", ("t.other.example",), "o1:b3RoZXItc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY", "o1", ("other-key",))
    registry = TenantRegistry({"acme": acme, "other": other}, keyring)
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_api_app(registry, ["k-secret"], Topics(), QueuePublisher(bus), own_publisher=False,
                         clock=lambda: 1_790_000_000.0)
    send = {"campaign": "c", "message": "m-1", "recipient": "r-1"}
    click_id = mint_click_ref(acme.keyring(), ClickRef("acme", "spring", "A", "m-7", "r-7", "hit-42", "pricing"))
    acme_key, other_key = {"Authorization": "Bearer acme-key"}, {"Authorization": "Bearer other-key"}

    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.post("/v1/sends", headers=acme_key, json={"sends": [send]})).status == 202
        assert Send.decode(bus.get_nowait().value).tenant == "acme"
        wrong = await client.post("/v1/sends", headers=acme_key, json={"sends": [{**send, "tenant": "other"}]})
        assert (await wrong.json())["errors"] == [
            "sends[0].tenant: 'other' is not the tenant of this API key ('acme')"]
        unknown = await client.post("/v1/sends", headers=KEY, json={"sends": [{**send, "tenant": "nobody"}]})
        assert (await unknown.json())["errors"] == ["sends[0].tenant: 'nobody' is not a tenant of this installation"]
        named = await client.post("/v1/sends", headers=KEY, json={"sends": [{**send, "tenant": "other"}]})
        assert named.status == 202
        assert Send.decode(bus.get_nowait().value).tenant == "other"

        conversion = {"idempotency_key": "o-1", "value": 5, "currency": "EUR", "click_id": click_id}
        for headers in (acme_key, KEY):  # the tenant's key, and the operator's
            ok = await client.post("/v1/conversions", headers=headers, json={"conversions": [conversion]})
            assert ok.status == 202
            c = Conversion.decode(bus.get_nowait().value)
            assert (c.tenant, c.campaign, c.click_hit_id) == ("acme", "spring", "hit-42")
        theirs = await client.post("/v1/conversions", headers=other_key, json={"conversions": [conversion]})
        assert theirs.status == 422  # another tenant's click id
    assert bus.empty()


async def test_delivery_events_are_validated_all_or_nothing_and_published_by_message(keyring: Keyring) -> None:
    """POST /v1/events: each item names its bad field; a bounce without a class is soft for a 4xx code
    and hard otherwise; an event without an id is named by its type and the time it gives (its type alone when it
    gives none); a tenant's key writes for its tenant only."""
    from schemas.deliveries import Delivery
    from schemas.tenants import Tenant, TenantRegistry

    acme = Tenant("acme", ("t.acme.example",), "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg", "a1", ("acme-key",))
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_api_app(TenantRegistry({"acme": acme}, keyring), ["k-secret"], Topics(), QueuePublisher(bus),
                         own_publisher=False, clock=lambda: 1_790_000_000.0)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        bad = await client.post("/v1/events", headers=KEY, json={"events": [
            {"message": "m-1", "type": "delivered"}, {"message": "m-2", "type": "opened"},
            {"message": "m-3", "type": "delivered", "bounce": "hard"}, {"type": "replied"}]})
        assert bad.status == 422
        assert (await bad.json())["errors"] == [
            "events[1].type: 'opened' is not one of delivered, bounced, deferred, complained, unsubscribed, replied",
            "events[2].bounce: only a bounced event has a bounce class", "events[3].message: is required"]
        assert bus.empty()  # all or nothing
        ok = await client.post("/v1/events", headers=KEY, json=[
            {"message": "m-1", "type": "bounced", "smtp_code": "452", "id": "evt-1", "campaign": "spring"},
            {"message": "m-2", "type": "bounced", "smtp_code": 550, "diagnostic": "5.1.1 unknown user"},
            {"message": "m-3", "type": "complained", "ts": "2026-09-21T14:00:00Z"}])
        assert (ok.status, await ok.json()) == (202, {"accepted": 3})
        events = [bus.get_nowait() for _ in range(3)]
        assert [(r.topic, r.key) for r in events] == [("deliveries", b"m-1"), ("deliveries", b"m-2"),
                                                      ("deliveries", b"m-3")]
        got = [Delivery.decode(r.value) for r in events]
        assert [(d.id, d.bounce, d.smtp_code, d.campaign, d.ts, d.platform) for d in got] == [
            ("evt-1", "soft", 452, "spring", 1_790_000_000.0, ""),
            ("bounced", "hard", 550, "", 1_790_000_000.0, ""),
            ("complained@2026-09-21T14:00:00.000Z", "", 0, "", 1_789_999_200.0, "")]
        theirs = await client.post("/v1/events", headers={"Authorization": "Bearer acme-key"}, json={"events": [
            {"message": "m-4", "type": "replied", "tenant": "other"}]})
        assert (await theirs.json())["errors"] == [
            "events[0].tenant: 'other' is not the tenant of this API key ('acme')"]
        mine = await client.post("/v1/events", headers={"Authorization": "Bearer acme-key"}, json={"events": [
            {"message": "m-4", "type": "replied"}]})
        assert mine.status == 202
        assert Delivery.decode(bus.get_nowait().value).tenant == "acme"
    assert bus.empty()
