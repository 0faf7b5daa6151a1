"""POST /v1/esp/<platform>: the tenant, the signature, all-or-nothing publish, counted refusals."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from ingest.api import create_api_app
from ingest.esp.routes import EspSettings
from ingest.publisher import QueuePublisher
from schemas.deliveries import Delivery
from schemas.esp import EspSecrets
from schemas.records import DeadLetter, RawHit, Record
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.esp import CERT_URL, TOPIC, Signers, fixture

NOW = 1_796_000_000
IDS = {"pt_m": "m-42", "pt_c": "spring", "pt_v": "B", "pt_r": "r-42", "pt_s": "1795990000000"}
ACME_KEYS = "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg"


class RefusingPublisher(QueuePublisher):
    async def publish(self, records: Sequence[Record]) -> None:
        raise ConnectionError("no broker")


def registry(keyring: Keyring, signers: Signers) -> TenantRegistry:
    acme = Tenant("acme", ("t.acme.example",), ACME_KEYS, "a1", (), signers.secrets())
    bare = Tenant("bare", ("t.bare.example",), ACME_KEYS.replace("a1", "b1"), "b1")
    nodomain = Tenant("nodomain", (), ACME_KEYS.replace("a1", "n1"), "n1", (), signers.secrets())
    return TenantRegistry({"acme": acme, "bare": bare, "nodomain": nodomain}, keyring)


def client(keyring: Keyring, signers: Signers, bus: asyncio.Queue[Record], refuse: bool = False,
           default: EspSecrets | None = None) -> TestClient:
    publisher = RefusingPublisher(bus) if refuse else QueuePublisher(bus)
    app = create_api_app(registry(keyring, signers), ["k-secret"], Topics(), publisher, own_publisher=False,
                         clock=lambda: float(NOW), esp=EspSettings(default or signers.secrets(), 600.0, signers.fetch))
    return TestClient(TestServer(app, host="127.0.0.1"))


def drained(bus: asyncio.Queue[Record]) -> list[Record]:
    out = []
    while not bus.empty():
        out.append(bus.get_nowait())
    return out


def counted(platform: str, result: str) -> float:
    return REGISTRY.get_sample_value("pixeltrack_esp_requests_total", {"platform": platform, "result": result}) or 0.0


def sendgrid_batch() -> list[dict[str, Any]]:
    events = fixture("sendgrid")["events"]
    return [{**events[name], **IDS} for name in ("delivered", "open", "click")] + [
        {**events["processed"], **IDS}, {**events["open"], "event": "brand_new", **IDS},
        dict(events["bounce"])]  # no identifiers: another system's mail


async def test_sendgrid_signed_batch_is_taken_whole_and_the_unknown_event_is_a_dead_letter(
        keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    body = orjson.dumps(sendgrid_batch())
    async with client(keyring, signers, bus) as c:
        resp = await c.post("/v1/esp/sendgrid", data=body, headers=signers.sendgrid_headers(body, NOW - 5))
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"accepted": 3, "ignored": 1, "not_ours": 1, "dead_letters": 1}
    records = drained(bus)
    assert [(r.topic, r.key) for r in records] == [("deliveries", b"m-42"), ("hits.raw", b"m-42"),
                                                   ("hits.raw", b"m-42"), ("hits.dlq", None)]
    assert Delivery.decode(records[0].value).platform == "sendgrid"
    assert DeadLetter.decode(records[3].value).reason == "esp_unknown_event"


async def test_a_tampered_or_stale_or_unsigned_sendgrid_post_is_refused_counted_and_stores_nothing(
        keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    body = orjson.dumps(sendgrid_batch())
    headers = signers.sendgrid_headers(body, NOW)
    before = counted("sendgrid", "bad_signature"), counted("sendgrid", "stale")
    async with client(keyring, signers, bus) as c:
        tampered = body.replace(b'"m-42"', b'"m-43"', 1)
        assert (await c.post("/v1/esp/sendgrid", data=tampered, headers=headers)).status == 401
        assert (await c.post("/v1/esp/sendgrid", data=body, headers={})).status == 401
        other = Signers().sendgrid_headers(body, NOW)
        assert (await c.post("/v1/esp/sendgrid", data=body, headers=other)).status == 401
        stale = await c.post("/v1/esp/sendgrid", data=body, headers=signers.sendgrid_headers(body, NOW - 601))
        assert stale.status == 401
        assert "replay" in (await stale.json())["error"]
    assert bus.empty()
    assert (counted("sendgrid", "bad_signature") - before[0], counted("sendgrid", "stale") - before[1]) == (3, 1)


async def test_the_tenant_parameter_picks_keys_secrets_and_host(keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    body = orjson.dumps([{**fixture("sendgrid")["events"]["open"], **IDS}])
    async with client(keyring, signers, bus, default=EspSecrets()) as c:
        headers = signers.sendgrid_headers(body, NOW)
        assert (await c.post("/v1/esp/sendgrid", data=body, headers=headers)).status == 404  # default: not set up
        assert (await c.post("/v1/esp/sendgrid?tenant=bare", data=body, headers=headers)).status == 404
        assert (await c.post("/v1/esp/sendgrid?tenant=nobody", data=body, headers=headers)).status == 404
        assert (await c.post("/v1/esp/sendgrid?tenant=nodomain", data=body, headers=headers)).status == 404
        assert (await c.post("/v1/esp/sendgrid?tenant=acme", data=body, headers=headers)).status == 200
    (record,) = drained(bus)
    hit = RawHit.decode(record.value)
    assert hit.host == "t.acme.example"
    acme = registry(keyring, signers).verify_token(hit.host, hit.token, "open")
    assert (acme.tenant, acme.message) == ("acme", "m-42")


async def test_mailgun_postmark_signatures(keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    opened = copy.deepcopy(fixture("mailgun")["events"]["opened"])
    opened["user-variables"] = IDS
    record = {**fixture("postmark")["records"]["Open"], "Metadata": IDS}
    async with client(keyring, signers, bus) as c:
        good = signers.mailgun_body(opened, NOW)
        assert (await c.post("/v1/esp/mailgun", data=good)).status == 200
        forged = signers.mailgun_body(opened, NOW, key="not-the-signing-key-000")
        assert (await c.post("/v1/esp/mailgun", data=forged)).status == 401
        assert (await c.post("/v1/esp/mailgun", data=signers.mailgun_body(opened, NOW - 3600))).status == 401
        assert (await c.post("/v1/esp/mailgun", data=b"[1]")).status == 400
        assert (await c.post("/v1/esp/postmark", data=orjson.dumps(record),
                             headers=signers.postmark_headers())).status == 200
        assert (await c.post("/v1/esp/postmark", data=orjson.dumps(record),
                             headers=signers.postmark_headers(password="guess-guess-guess"))).status == 401
        assert (await c.post("/v1/esp/postmark", data=b"{not json",
                             headers=signers.postmark_headers())).status == 400
    assert [RawHit.decode(r.value).origin for r in drained(bus)] == ["mailgun", "postmark"]


async def test_ses_through_sns(keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    event = copy.deepcopy(fixture("ses")["events"]["Delivery"])
    event["mail"]["tags"].update({k: [v] for k, v in IDS.items()})
    async with client(keyring, signers, bus) as c:
        confirm = signers.sns_envelope("You have chosen to subscribe", kind="SubscriptionConfirmation")
        resp = await c.post("/v1/esp/ses", data=orjson.dumps(confirm))
        assert (resp.status, await resp.json()) == (200, {"accepted": 0, "ignored": 0, "not_ours": 0,
                                                          "dead_letters": 0, "confirmed": TOPIC})
        assert signers.fetched == [CERT_URL, confirm["SubscribeURL"]]
        for version in ("1", "2"):
            resp = await c.post("/v1/esp/ses", data=orjson.dumps(signers.sns_envelope(event, version=version)))
            assert resp.status == 200
        assert signers.fetched == [CERT_URL, confirm["SubscribeURL"]]  # the certificate was cached
        other_topic = signers.sns_envelope(event, topic="arn:aws:sns:us-east-1:123456789012:someone-else")
        assert (await c.post("/v1/esp/ses", data=orjson.dumps(other_topic))).status == 403
        forged = {**signers.sns_envelope(event), "Message": orjson.dumps({**event, "eventType": "Bounce"}).decode()}
        assert (await c.post("/v1/esp/ses", data=orjson.dumps(forged))).status == 403
        elsewhere = {**signers.sns_envelope(event), "SigningCertURL": "https://evil.example/cert.pem"}
        assert (await c.post("/v1/esp/ses", data=orjson.dumps(elsewhere))).status == 403
        assert (await c.post("/v1/esp/ses", data=orjson.dumps(event))).status == 400  # raw delivery: not an envelope
    records = drained(bus)
    assert [r.topic for r in records] == ["deliveries", "deliveries"]
    assert {Delivery.decode(r.value).id for r in records} == {Delivery.decode(records[0].value).id}  # one event
    assert signers.fetched == [CERT_URL, confirm["SubscribeURL"]]  # nothing fetched for the refused ones


async def test_a_publish_that_fails_answers_503_and_the_webhooks_need_no_api_key(
        keyring: Keyring, signers: Signers) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    record = {**fixture("postmark")["records"]["Delivery"], "Metadata": IDS}
    async with client(keyring, signers, bus, refuse=True) as c:
        resp = await c.post("/v1/esp/postmark", data=orjson.dumps(record), headers=signers.postmark_headers())
        assert resp.status == 503
        assert (await c.post("/v1/sends", json={"sends": []})).status == 401  # the rest of the API still needs a key
