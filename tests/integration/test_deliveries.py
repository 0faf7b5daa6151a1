"""Delivery events: POST /v1/events → Kafka (or the embedded bus) → the processors → ClickHouse's
`deliveries`, and campaign_summary's sent, delivered and the rates over delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.api import create_api_app
from ingest.publisher import KafkaPublisher, Publisher, QueuePublisher
from pixeltrack.compose.build import build_processor
from processors.local_runner import LocalRunner
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.sends import Unsubscribe
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.processing import running_processor
from tests.plugins.waiting import eventually

KEY = {"Authorization": "Bearer k-secret"}
SENT_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
COLUMNS = ("sent", "delivered", "bounced", "hard_bounced", "soft_bounced", "complained", "confirmed_delivered",
           "unique_opens", "unique_clicks", "bounce_rate", "complaint_rate", "open_rate", "ctr", "unsubscribe_rate",
           "reply_rate")


@asynccontextmanager
async def api(keyring: Keyring, topics: Topics, publisher: Publisher, own: bool) -> AsyncIterator[TestClient]:
    app = create_api_app(keyring, ["k-secret"], topics, publisher, own_publisher=own)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def post(client: TestClient, path: str, name: str, items: list[dict[str, Any]]) -> None:
    resp = await client.post(path, headers=KEY, json={name: items})
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"accepted": len(items)}


def sends(campaign: str, n: int) -> list[dict[str, Any]]:
    return [{"campaign": campaign, "variant": "A", "message": f"{campaign}-m{i}", "recipient": f"r{i}",
             "sent_at": SENT_AT.isoformat()} for i in range(n)]


def at(minutes: float) -> str:
    return (SENT_AT + timedelta(minutes=minutes)).isoformat()


DONE_WHEN_EVENTS = [
    {"message": "done-m0", "type": "bounced", "bounce": "hard", "smtp_code": 550, "id": "evt-1",
     "diagnostic": "550 5.1.1 <r0@example.com>: user unknown", "ts": at(1)},
    {"message": "done-m1", "type": "bounced", "smtp_code": 551, "id": "evt-2", "ts": at(1)},  # 5xx: hard
    {"message": "done-m2", "type": "complained", "id": "fbl-1", "ts": at(60)},
]
RETRY_EVENTS = [  # a soft bounce followed by a delivery is delivered; one not followed by any is not
    {"message": "retry-m0", "type": "bounced", "bounce": "soft", "smtp_code": 451, "id": "s-1", "ts": at(1)},
    {"message": "retry-m0", "type": "deferred", "id": "d-1", "ts": at(1)},
    {"message": "retry-m0", "type": "delivered", "id": "ok-1", "ts": at(20)},
    {"message": "retry-m1", "type": "bounced", "smtp_code": 452, "id": "s-2", "ts": at(1)},  # 4xx: soft
    {"message": "retry-m2", "type": "delivered", "id": "ok-2", "ts": at(1)},
    {"message": "retry-m2", "type": "replied", "id": "re-1", "ts": at(90)},
]


def engage(db: ClickHouseDb) -> None:
    """A person's opens on done-m2..m5 and clicks on done-m2, m3 (none on a bounced message), as the
    processors would have stored them."""
    c = db.client()
    try:
        rows = [("", f"h-{kind}-{i}", kind, SENT_AT + timedelta(minutes=30), SENT_AT, "done", "A", f"done-m{i}",
                 f"r{i}", "human", "direct", 0, 1, "hits.raw", 0, n)
                for n, (kind, i) in enumerate([("open", 2), ("open", 3), ("open", 4), ("open", 5), ("click", 2),
                                               ("click", 3)])]
        c.insert("events", rows, column_names=["tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant",
                                               "message_id", "recipient_id", "verdict", "source", "revision", "sign",
                                               "src_topic", "src_partition", "src_offset"])
    finally:
        c.close()


def summary(db: ClickHouseDb, campaign: str) -> dict[str, Any]:
    (row,) = db.rows(f"SELECT {', '.join(COLUMNS)} FROM campaign_summary WHERE campaign = '{campaign}'")
    return dict(zip(COLUMNS, row, strict=True))


def check_the_done_when(db: ClickHouseDb, unsubscribed: int = 0) -> None:
    """10 registered sends, 2 hard bounces, 1 complaint: sent 10, delivered 8, bounce rate 0.2, complaint
    rate 1/8, and the open rate and CTR (and the unsubscribe rate of `unsubscribed` messages) over the 8
    delivered (4 opened, 2 clicked)."""
    assert summary(db, "done") == {
        "sent": 10, "delivered": 8, "bounced": 2, "hard_bounced": 2, "soft_bounced": 0, "complained": 1,
        "confirmed_delivered": 0, "unique_opens": 4, "unique_clicks": 2, "bounce_rate": 0.2,
        "complaint_rate": 0.125, "open_rate": 4 / 8, "ctr": 2 / 8, "unsubscribe_rate": unsubscribed / 8,
        "reply_rate": 0.0}
    assert summary(db, "retry") == {
        "sent": 3, "delivered": 2, "bounced": 1, "hard_bounced": 0, "soft_bounced": 1, "complained": 0,
        "confirmed_delivered": 2, "unique_opens": 0, "unique_clicks": 0, "bounce_rate": 1 / 3,
        "complaint_rate": 0.0, "open_rate": 0.0, "ctr": 0.0, "unsubscribe_rate": 0.0, "reply_rate": 1 / 2}
    stored = db.rows("SELECT message_id, type, event_id, campaign, variant, recipient_id, bounce, smtp_code, "
                     "diagnostic FROM deliveries WHERE campaign = 'done' AND type IN ('bounced', 'complained') "
                     "ORDER BY message_id")
    assert stored == [
        ("done-m0", "bounced", "evt-1", "done", "A", "r0", "hard", 550, "550 5.1.1 <address>: user unknown"),
        ("done-m1", "bounced", "evt-2", "done", "A", "r1", "hard", 551, ""),
        ("done-m2", "complained", "fbl-1", "done", "A", "r2", "", 0, "")]


async def settled_done_when(db: ClickHouseDb) -> None:
    """check_the_done_when once the summary has had a few seconds to agree (the stored rows are counted
    before the view's read); failing, it shows the bounced messages' rows, where the one failure seen
    (hard_bounced 0 with every delivery stored, once in many runs) would have to be explained."""
    try:
        await eventually(lambda: summary(db, "done")["hard_bounced"] == 2, 10, "the summary's hard bounces")
    except AssertionError:
        rows = db.rows("SELECT tenant, campaign, variant, message_id, type, bounce, event_id FROM deliveries "
                       "WHERE message_id IN ('done-m0', 'done-m1')")
        totals = db.rows("SELECT tenant, campaign, variant, message_id, sent, hard_bounces FROM message_totals "
                         "WHERE message_id IN ('done-m0', 'done-m1')")
        raise AssertionError(f"deliveries {rows}; message_totals {totals}") from None
    check_the_done_when(db)


def deliveries_stored(db: ClickHouseDb) -> int:
    return int(db.rows("SELECT count() FROM deliveries")[0][0])  # type: ignore[call-overload]


def unattributed(db: ClickHouseDb) -> int:
    return int(db.rows("SELECT count() FROM dead_letters WHERE reason = 'unattributed_delivery'")[0][0])  # type: ignore[call-overload]


@pytest.mark.kafka
async def test_the_done_when_over_kafka_and_a_repeated_event_counts_once(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    engage(clickhouse)
    publisher = KafkaPublisher(kafka_bootstrap, client_id="test-api", linger_ms=1)
    async with api(keyring, kafka_topics, publisher, own=True) as client, \
            running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse):
        await post(client, "/v1/sends", "sends", sends("done", 10) + sends("retry", 3))
        await post(client, "/v1/events", "events", DONE_WHEN_EVENTS)
        await post(client, "/v1/events", "events", RETRY_EVENTS)
        await post(client, "/v1/events", "events", DONE_WHEN_EVENTS[:1])  # a retried POST: the same event
        await post(client, "/v1/events", "events", [{"message": "nobody", "type": "delivered", "id": "x"}])
        await eventually(lambda: deliveries_stored(clickhouse) == 9 and unattributed(clickhouse) == 1, 90,
                         "the deliveries and the unattributed event's dead letter")
        await settled_done_when(clickhouse)
    # The same event again at a later offset, read by a processor that has not seen it (its memory empty,
    # as after a restart): ClickHouse says it is stored, and it is dropped; the deferral after it is not.
    async with api(keyring, kafka_topics, KafkaPublisher(kafka_bootstrap, client_id="test-api-2", linger_ms=1),
                   own=True) as client:
        await post(client, "/v1/events", "events", DONE_WHEN_EVENTS[1:2])
        await post(client, "/v1/events", "events", [{"message": "done-m3", "type": "deferred", "id": "d-9",
                                                     "ts": at(2)}])
    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse) as runner:
        await eventually(lambda: runner.records_done >= 2 and deliveries_stored(clickhouse) == 10, 90,
                         "the two later events read")
    assert deliveries_stored(clickhouse) == 10
    assert clickhouse.rows("SELECT count() FROM deliveries WHERE event_id = 'evt-2'") == [(1,)]
    check_the_done_when(clickhouse)


async def test_the_done_when_through_the_embedded_bus(settings: Settings, keyring: Keyring,
                                                      clickhouse: ClickHouseDb) -> None:
    """`pixeltrack serve`'s wiring: the API publishes onto the in-process bus, the local runner reads it."""
    engage(clickhouse)
    bus: asyncio.Queue[Record] = asyncio.Queue()
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    runner = LocalRunner(bus, build_processor(settings, keyring), writer, max_records=500, max_ms=20)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with api(keyring, Topics(), QueuePublisher(bus), own=False) as client:
            await post(client, "/v1/sends", "sends", sends("done", 10) + sends("retry", 3))
            await post(client, "/v1/events", "events", DONE_WHEN_EVENTS + RETRY_EVENTS)
            await post(client, "/v1/events", "events", DONE_WHEN_EVENTS)  # all posted twice: counted once
            # An unsubscribe through the platform (done-m5) and our own one-click /u POST (done-m4, twice)
            await post(client, "/v1/events", "events", [{"message": "done-m5", "type": "unsubscribed", "id": "u-1"}])
            for _ in range(2):
                bus.put_nowait(Record(Topics().unsubscribes, b"done-m4", Unsubscribe(
                    "", "hash-r4", "done", "done-m4", (SENT_AT + timedelta(minutes=40)).timestamp()).encode()))
        await eventually(lambda: runner.records_done == 13 + 2 * len(DONE_WHEN_EVENTS) + len(RETRY_EVENTS) + 3, 60,
                         "every record taken and written")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await writer.close()
    assert deliveries_stored(clickhouse) == 9 + 2  # the two unsubscribes (the one-click POST's repeat: once)
    check_the_done_when(clickhouse, unsubscribed=2)
    assert clickhouse.rows("SELECT message_id, platform FROM deliveries WHERE type = 'unsubscribed' "
                           "ORDER BY message_id") == [("done-m4", "pixeltrack"), ("done-m5", "")]
