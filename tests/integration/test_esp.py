"""Email platform webhooks end to end: signed webhook → ingest API → real Kafka → processor → chDB.

Per platform, one small campaign with a truth computed by hand: three registered sends; m-1 delivered,
opened by a person (a desktop Chrome) and clicked; m-2 delivered and prefetched by Apple Mail Privacy
Protection (the bare "Mozilla/5.0"; SendGrid and Mailgun flag it as a machine themselves); m-3 bounced
for good; one event of a type no platform documents (a dead letter) and one of a message sent without
pixeltrack's identifiers (another system's mail: counted, not stored). The done-when of the email-platform
work is `test_sendgrid_machine_open_with_apple_mpp_ua_lands_as_apple_mpp_and_a_tampered_one_stores_nothing`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from ingest.api import create_api_app
from ingest.esp.routes import EspSettings
from ingest.publisher import KafkaPublisher
from pixeltrack.sender.esp import mailgun_variables, postmark_metadata, sendgrid_custom_args, ses_tags
from schemas.deliveries import Delivery
from schemas.sends import Send
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_kafka_path import running_processor
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.esp import APPLE_MPP_UA, Signers, fixture
from tests.plugins.kafka import create_topics
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
          "Safari/537.36")
PERSON_IP, MPP_IP = "81.2.69.142", "81.2.69.160"
API_KEY = "k-esp-secret"
SALE = "https://shop.example.com/sale"


@asynccontextmanager
async def running_api(keyring: Keyring, bootstrap: str, topics: Topics, signers: Signers) -> AsyncIterator[str]:
    app = create_api_app(TenantRegistry({}, keyring), [API_KEY], topics,
                         KafkaPublisher(bootstrap, client_id="test-esp-api", linger_ms=1), own_publisher=True,
                         esp=EspSettings(signers.secrets(), 600.0, signers.fetch))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def sends(campaign: str, sent_at: float) -> list[Send]:
    return [Send("", campaign, "", f"{campaign}-m-{i}", f"r-{i}", sent_at, "example.com", 1) for i in (1, 2, 3)]


# --- each platform's webhook requests for the campaign: (path, headers, body) ---------------------------------

Requests = list[tuple[str, dict[str, str], bytes]]


def sendgrid_requests(s: Signers, batch: list[Send], t: float) -> Requests:
    ev = fixture("sendgrid")["events"]
    m1, m2, m3 = (sendgrid_custom_args(x) for x in batch)

    def at(base: dict[str, Any], ids: dict[str, str], ts: float, event_id: str, **extra: Any) -> dict[str, Any]:
        return {**base, **ids, "timestamp": int(ts), "sg_event_id": event_id, **extra}

    events = [
        at(ev["delivered"], m1, t + 5, "d1"), at(ev["delivered"], m2, t + 5, "d2"), at(ev["bounce"], m3, t + 5, "b3"),
        at(ev["open"], m1, t + 3600, "o1", useragent=CHROME, ip=PERSON_IP),
        at(ev["click"], m1, t + 3660, "c1", useragent=CHROME, ip=PERSON_IP, url=SALE),
        at(ev["open"], m2, t + 600, "o2", useragent=APPLE_MPP_UA, ip=MPP_IP, sg_machine_open=True),
        at(ev["open"], m1, t + 3700, "x1", event="brand_new_event"),
        {**ev["open"], "timestamp": int(t + 3700)},  # no identifiers: another system's mail
    ]
    body = orjson.dumps(events)
    return [("/v1/esp/sendgrid", s.sendgrid_headers(body, int(time.time())), body)]


def mailgun_requests(s: Signers, batch: list[Send], t: float) -> Requests:
    ev = fixture("mailgun")["events"]
    m1, m2, m3 = ({k.removeprefix("v:"): v for k, v in mailgun_variables(x).items()} for x in batch)

    def at(base: dict[str, Any], ids: dict[str, str], ts: float, event_id: str, **extra: Any) -> dict[str, Any]:
        return {**base, "user-variables": ids, "timestamp": ts, "id": event_id, **extra}

    person = {**ev["opened"]["client-info"], "user-agent": CHROME}
    events = [
        at(ev["delivered"], m1, t + 5, "d1"), at(ev["delivered"], m2, t + 5, "d2"),
        at(ev["failed_permanent"], m3, t + 5, "b3"),
        at(ev["opened"], m1, t + 3600, "o1", ip=PERSON_IP, **{"client-info": person}),
        at(ev["clicked"], m1, t + 3660, "c1", ip=PERSON_IP, url=SALE, **{"client-info": person}),
        at(ev["opened_apple_bot"], m2, t + 600, "o2", ip=MPP_IP),
        at(ev["opened"], m1, t + 3700, "x1", event="list_member_uploaded"),
        {**ev["opened"], "timestamp": t + 3700, "user-variables": {}},
    ]
    now = int(time.time())
    return [("/v1/esp/mailgun", {}, s.mailgun_body(e, now, token=f"token-{i:040d}")) for i, e in enumerate(events)]


def postmark_requests(s: Signers, batch: list[Send], t: float) -> Requests:
    rec = fixture("postmark")["records"]
    m1, m2, m3 = (postmark_metadata(x) for x in batch)

    def iso(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"

    def at(record: dict[str, Any], ids: dict[str, str], when: str, ts: float, **extra: Any) -> dict[str, Any]:
        return {**record, "Metadata": ids, when: iso(ts), **extra}

    records = [
        at(rec["Delivery"], m1, "DeliveredAt", t + 5, MessageID="pm-1"),
        at(rec["Delivery"], m2, "DeliveredAt", t + 5, MessageID="pm-2"),
        at(rec["Bounce"], m3, "BouncedAt", t + 5, ID=3),
        at(rec["Open"], m1, "ReceivedAt", t + 3600, UserAgent=CHROME, Geo={"IP": PERSON_IP}),
        at(rec["Click"], m1, "ReceivedAt", t + 3660, UserAgent=CHROME, Geo={"IP": PERSON_IP}, OriginalLink=SALE),
        at(rec["Open"], m2, "ReceivedAt", t + 600, UserAgent=APPLE_MPP_UA, Geo={"IP": MPP_IP}),
        at(rec["Open"], m1, "ReceivedAt", t + 3700, RecordType="InboundMessage"),
        {**rec["Open"], "ReceivedAt": iso(t + 3700)},
    ]
    return [("/v1/esp/postmark", s.postmark_headers(), orjson.dumps(r)) for r in records]


def ses_requests(s: Signers, batch: list[Send], t: float) -> Requests:
    ev = fixture("ses")["events"]
    m1, m2, m3 = ({tag["Name"]: [tag["Value"]] for tag in ses_tags(x)} for x in batch)

    def iso(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))

    def at(event: dict[str, Any], tags: dict[str, list[str]], ts: float, **detail: Any) -> dict[str, Any]:
        key = event["eventType"][0].lower() + event["eventType"][1:]
        out = {**event, "mail": {**event["mail"], "tags": tags, "timestamp": iso(t)}}
        if key in event:
            out[key] = {**event[key], "timestamp": iso(ts), **detail}
        return out

    events = [
        at(ev["Delivery"], m1, t + 5), at(ev["Delivery"], m2, t + 5), at(ev["Bounce"], m3, t + 5),
        at(ev["Open"], m1, t + 3600, userAgent=CHROME, ipAddress=PERSON_IP),
        at(ev["Click"], m1, t + 3660, userAgent=CHROME, ipAddress=PERSON_IP, link=SALE),
        at(ev["Open"], m2, t + 600, userAgent=APPLE_MPP_UA, ipAddress=MPP_IP),
        {**at(ev["Open"], m1, t + 3700), "eventType": "Shipped"},
        at(ev["Open"], {}, t + 3700),
    ]
    return [("/v1/esp/ses", {}, orjson.dumps(s.sns_envelope(e, message_id=f"sns-{i}"))) for i, e in enumerate(events)]


PLATFORMS: dict[str, Callable[[Signers, list[Send], float], Requests]] = {
    "sendgrid": sendgrid_requests, "mailgun": mailgun_requests, "postmark": postmark_requests, "ses": ses_requests}
FLAGS_MACHINES = {"sendgrid", "mailgun"}  # platforms whose own bot flag marks the MPP prefetch


async def read_deliveries(bootstrap: str, topics: Topics, expected: int) -> list[Delivery]:
    consumer = AIOKafkaConsumer(topics.deliveries, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[Delivery] = []
    try:
        deadline = time.monotonic() + 30
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            out += [Delivery.decode(m.value) for ms in batches.values() for m in ms if m.value is not None]
    finally:
        await consumer.stop()
    return out


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
async def test_webhooks_reach_clickhouse_as_the_hand_computed_truth(
        platform: str, settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb, signers: Signers) -> None:
    await create_topics(kafka_bootstrap, [kafka_topics.deliveries])
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    campaign, sent_at = f"spring-{platform}", time.time() - 7200
    batch = sends(campaign, sent_at)
    async with running_api(keyring, kafka_bootstrap, kafka_topics, signers) as api, \
            running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, f"g-{kafka_topics.prefix}"), \
            aiohttp.ClientSession() as http:
        async with http.post(f"{api}/v1/sends", json={"sends": [{
                "campaign": x.campaign, "message": x.message, "recipient": x.recipient, "sent_at": x.sent_at,
                "mailbox_domain": x.mailbox_domain, "links": x.links} for x in batch]},
                headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
            assert resp.status == 202
        taken = {"accepted": 0, "ignored": 0, "not_ours": 0, "dead_letters": 0}
        for path, headers, body in PLATFORMS[platform](signers, batch, sent_at):
            async with http.post(f"{api}{path}", data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                for k, v in (await resp.json()).items():
                    taken[k] += v
        # 3 deliveries + 3 hits; nothing ignored; one message not ours; one unknown type.
        assert taken == {"accepted": 6, "ignored": 0, "not_ours": 1, "dead_letters": 1}

        def landed() -> bool:
            return (clickhouse.rows("SELECT count() FROM hits")[0][0] == 3
                    and clickhouse.rows("SELECT count() FROM dead_letters")[0][0] == 1
                    and clickhouse.rows("SELECT count() FROM sends")[0][0] == 3
                    and clickhouse.rows("SELECT count() FROM deliveries")[0][0] == 3)

        await eventually(landed, timeout=60)
    mpp_reasons = ["ua_bare_mozilla", "platform_machine_flag"] if platform in FLAGS_MACHINES else ["ua_bare_mozilla"]
    assert clickhouse.rows("SELECT message_id, kind, verdict, source, reasons, origin, link_url, edge FROM hits "
                           "ORDER BY message_id, kind DESC") == [
        (f"{campaign}-m-1", "open", "human", "direct", ["no_machine_signal"], platform, "", "esp"),
        (f"{campaign}-m-1", "click", "human", "direct", ["no_machine_signal"], platform, SALE, "esp"),
        (f"{campaign}-m-2", "open", "machine", "apple_mpp", mpp_reasons, platform, "", "esp"),
    ]
    assert clickhouse.rows("SELECT stage, reason, edge FROM dead_letters") == [("esp", "esp_unknown_event", "esp")]
    # What campaign_summary says, counted by hand: 3 sent, m-3 hard-bounced, so 2 delivered (both
    # confirmed by the platform); one person opened (m-1) and clicked; m-2 only machine-opened.
    assert clickhouse.rows(
        "SELECT delivered, recipients, unique_opens, unique_human_opens, opens_human, opens_machine, "
        "machine_only_messages, unique_clicks, clicks_human, clicks_filtered, sent, bounced, hard_bounced, "
        f"confirmed_delivered, bounce_rate, open_rate FROM campaign_summary WHERE campaign = '{campaign}'") == [
        (2, 3, 1, 1, 1, 1, 1, 1, 1, 0, 3, 1, 1, 2, 1 / 3, 1 / 2)]
    deliveries = await read_deliveries(kafka_bootstrap, kafka_topics, 3)
    assert sorted((d.message, d.type, d.bounce, d.campaign, d.platform) for d in deliveries) == [
        (f"{campaign}-m-1", "delivered", "", campaign, platform),
        (f"{campaign}-m-2", "delivered", "", campaign, platform),
        (f"{campaign}-m-3", "bounced", "hard", campaign, platform),
    ]


def _bad_signatures() -> float:
    return REGISTRY.get_sample_value("pixeltrack_esp_requests_total",
                                     {"platform": "sendgrid", "result": "bad_signature"}) or 0.0


async def test_sendgrid_machine_open_with_apple_mpp_ua_lands_as_apple_mpp_and_a_tampered_one_stores_nothing(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics, clickhouse: ClickHouseDb,
        signers: Signers) -> None:
    """The done-when: a SendGrid open carrying sg_machine_open and Apple MPP's user agent, validly signed, is
    `machine / apple_mpp` in `events` with its reasons; the same payload with a tampered signature is refused
    (401) and nothing of it is stored."""
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    sent_at = int(time.time() - 3600)
    open_event = {**fixture("sendgrid")["events"]["open"], "timestamp": sent_at + 40, "sg_machine_open": True,
                  "useragent": APPLE_MPP_UA, "ip": MPP_IP, "pt_m": "m-mpp", "pt_c": "launch",
                  "pt_r": "r-1", "pt_s": str(sent_at * 1000)}
    body = orjson.dumps([open_event])
    headers = signers.sendgrid_headers(body, int(time.time()))
    signature = bytearray(base64.b64decode(headers["X-Twilio-Email-Event-Webhook-Signature"]))
    signature[-1] ^= 0x01
    tampered = {**headers, "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(bytes(signature)).decode()}
    tampered_body = body.replace(b'"m-mpp"', b'"m-forged"')
    before = _bad_signatures()
    async with running_api(keyring, kafka_bootstrap, kafka_topics, signers) as api, \
            aiohttp.ClientSession() as http:
        for h, b in ((tampered, body), (headers, tampered_body)):
            async with http.post(f"{api}/v1/esp/sendgrid", data=b, headers=h) as resp:
                assert resp.status in (401, 403)
        assert _bad_signatures() - before == 2
        async with http.post(f"{api}/v1/esp/sendgrid", data=body, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.json() == {"accepted": 1, "ignored": 0, "not_ours": 0, "dead_letters": 0}
    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, f"g-{kafka_topics.prefix}"):
        await eventually(lambda: clickhouse.rows("SELECT count() FROM events")[0][0] >= 1, timeout=60)
        await asyncio.sleep(1)  # a stray record of the refused posts would land with it
    assert clickhouse.rows("SELECT message_id, campaign, kind, verdict, source, reasons, origin, user_agent "
                           "FROM events") == [
        ("m-mpp", "launch", "open", "machine", "apple_mpp", ["ua_bare_mozilla", "platform_machine_flag"],
         "sendgrid", "Mozilla/5.0")]
    assert clickhouse.rows("SELECT count() FROM dead_letters")[0][0] == 0
    # Nothing of the refused posts reached Kafka at all: hits.raw holds the one accepted hit.
    consumer = AIOKafkaConsumer(kafka_topics.hits_raw, kafka_topics.hits_dlq, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()
    assert [m.key for ms in batches.values() for m in ms] == [b"m-mpp"]
