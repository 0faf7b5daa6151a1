"""Edge → real Kafka → processor → ClickHouse (chDB): a minted pixel and link become rows."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ingest.app import create_app
from ingest.publisher import KafkaPublisher
from pixeltrack.sender.sdk import Message, Tracker
from processors.kafka_runner import known_brokers
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.edge import strip_click_id
from tests.plugins.processing import running_processor
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka


@asynccontextmanager
async def running_edge(settings: Settings, keyring: Keyring, bootstrap: str) -> AsyncIterator[str]:
    publisher = KafkaPublisher(bootstrap, client_id="test-edge", linger_ms=1)
    server = TestServer(create_app(settings, publisher=publisher, keyring=keyring), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_pixel_and_click_reach_clickhouse(settings: Settings, keyring: Keyring, kafka_bootstrap: str,
                                                kafka_topics: Topics, clickhouse: ClickHouseDb) -> None:
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "publish_classified": True})
    async with running_edge(s, keyring, kafka_bootstrap) as base, \
            running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, f"g-{kafka_topics.prefix}"):
        tracker = Tracker(base, keyring)
        msg = Message("spring", "m-42", "r-42", variant="B", sent_at=int(time.time() * 1000) - 3_600_000)
        ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Thunderbird/132.0"
        async with aiohttp.ClientSession(headers={"User-Agent": ua}) as http:
            async with http.get(tracker.pixel_url(msg)) as resp:
                assert resp.status == 200
            async with http.get(tracker.click_url(msg, "https://shop.example.com/sale"),
                                allow_redirects=False) as resp:
                assert resp.status == 302
                assert strip_click_id(resp.headers["Location"]) == "https://shop.example.com/sale"
                assert "pt_cid=" in resp.headers["Location"]
            forged = tracker.click_url(msg, "https://shop.example.com/sale")[:-3] + "AAA"
            async with http.get(forged, allow_redirects=False) as resp:
                assert resp.status == 404
                assert "Location" not in resp.headers

        def landed() -> bool:
            return (clickhouse.rows("SELECT count() FROM hits")[0][0] == 2
                    and clickhouse.rows("SELECT count() FROM dead_letters")[0][0] == 1)

        await eventually(landed)

    rows = clickhouse.rows("SELECT kind, campaign, variant, message_id, recipient_id, link_url, method, "
                           "verdict, source, length(reasons) > 0, user_agent FROM hits ORDER BY kind DESC")
    assert rows == [
        ("open", "spring", "B", "m-42", "r-42", "", "GET", "human", "direct", True, ua),
        ("click", "spring", "B", "m-42", "r-42", "https://shop.example.com/sale", "GET", "human", "direct",
         True, ua),
    ]
    assert clickhouse.rows("SELECT stage, reason, kind FROM dead_letters") == [("edge", "bad_signature", "click")]
    # Every verdict went on to events.classified for downstream consumers (triggers).
    from aiokafka import AIOKafkaConsumer

    from schemas.classified import ClassifiedEvent

    consumer = AIOKafkaConsumer(kafka_topics.events_classified, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        assert known_brokers(consumer) == 1  # what the runner's MetadataWatch reads, on a real client
    finally:
        await consumer.stop()
    classified = [ClassifiedEvent.decode(m.value) for ms in batches.values() for m in ms]
    assert sorted((c.kind, c.message, c.verdict, c.revision) for c in classified) == [
        ("click", "m-42", "human", 0), ("open", "m-42", "human", 0)]
    # The processor committed its offsets after the insert, and ClickHouse holds their positions.
    positions = clickhouse.rows("SELECT src_topic, sum(max_offset >= 0) FROM consumer_positions GROUP BY 1")
    assert {t for t, _ in positions} == {kafka_topics.hits_raw, kafka_topics.hits_dlq}


async def test_undecodable_record_becomes_dead_letter(settings: Settings, keyring: Keyring, kafka_bootstrap: str,
                                                      kafka_topics: Topics, clickhouse: ClickHouseDb) -> None:
    from aiokafka import AIOKafkaProducer

    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(kafka_topics.hits_raw, b"\xff not json", key=b"m")
        await producer.send_and_wait(kafka_topics.hits_raw, b'{"v": 1, "id": "x"}', key=b"m")
    finally:
        await producer.stop()
    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, "g-bad"):
        await eventually(lambda: clickhouse.rows("SELECT count() FROM dead_letters")[0][0] == 2)
    reasons = clickhouse.rows("SELECT stage, reason FROM dead_letters ORDER BY id")
    assert reasons == [("processor", "undecodable"), ("processor", "undecodable")]
    assert clickhouse.rows("SELECT count() FROM events")[0][0] == 0
