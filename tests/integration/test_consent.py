"""Consent end to end on the real broker and chDB: a campaign half of whose recipients denied consent (emails
instrumented from a CSV, sends through the ingest API, hits through the edge), counted by hand; a simulated
campaign under PIXELTRACK_TRACKING=aggregate, after which no row names a message or recipient; consents
posted to the API, stored once."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer

from ingest.api import create_api_app
from ingest.app import create_app
from ingest.publisher import KafkaPublisher
from pixeltrack.sender.campaign import instrument_campaign, parse_recipients
from pixeltrack.sender.instrument import EmailPlan
from pixeltrack.sender.sdk import ApiClient, Record, Tracker
from schemas.records import DeadLetter, RawHit
from schemas.records import Record as KafkaRecord
from schemas.sends import Send
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.processing import running_processor
from tests.plugins.simulate import load_patterns, simulate
from tests.plugins.waiting import eventually
from tests.unit.pixeltrack.test_consent import payload_of

pytestmark = pytest.mark.kafka
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
BARE = "Mozilla/5.0"  # Apple Mail Privacy Protection's prefetch: a machine's open
IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
PAGE = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
API_KEY = "consent-test-key"
# Tables of anything but counts. consents is left out on purpose: it is the record of who chose what.
IDENTITY_COLUMNS = ("message_id", "recipient_id", "recipient_key", "click_id")
TOKEN_URL = re.compile(r"/([oc])/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


@asynccontextmanager
async def serving(app: object) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def count(db: ClickHouseDb, sql: str) -> int:
    return int(db.rows(sql)[0][0])  # type: ignore[call-overload]


def string_columns(db: ClickHouseDb, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(table, column) of every String column of every table (views left out; uniqExact states hold hashes)."""
    return [(str(t), str(c)) for t, c in db.rows(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() AND type LIKE '%String%' "
        "AND type NOT LIKE 'AggregateFunction%' "
        "AND table IN (SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%Tree') "
        "ORDER BY table, name") if t not in skip]


# What each recipient does: (kind, user agent) per hit. cust-0..3 denied consent, cust-4..7 granted; even
# numbers are variant A, odd B.
PLAN: dict[str, list[tuple[str, str]]] = {
    "cust-0": [("open", CHROME), ("click", CHROME)],
    "cust-1": [("open", CHROME)],
    "cust-2": [("open", CHROME), ("open", BARE)],
    "cust-3": [("click", CHROME)],
    "cust-4": [("open", CHROME), ("click", CHROME)],
    "cust-5": [("open", CHROME)],
    "cust-6": [("open", BARE)],
    "cust-7": [],
}
# campaign_summary by hand from PLAN: (variant, delivered, unique_opens, opens_human, opens_machine,
# unique_clicks, clicks_human, aggregate_sends, aggregate_opens_human, aggregate_opens_machine,
# aggregate_clicks_human, sends_all, opens_per_send_all, clicks_per_send_all)
HAND_COUNT = [
    ("A", 2, 1, 1, 1, 1, 1, 2, 2, 1, 1, 4, 3 / 4, 2 / 4),
    ("B", 2, 1, 1, 0, 0, 0, 2, 1, 0, 1, 4, 2 / 4, 1 / 4),
]


async def test_half_denied_campaign_counts_exactly_and_names_no_denied_recipient(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics, clickhouse: ClickHouseDb,
        tmp_path: Path) -> None:
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "trusted_proxies": ["127.0.0.1/32"]})
    publisher = KafkaPublisher(kafka_bootstrap, client_id="consent-api", linger_ms=1)
    api_app = create_api_app(keyring, [API_KEY], kafka_topics, publisher)
    edge_app = create_app(s, publisher=KafkaPublisher(kafka_bootstrap, client_id="consent-edge", linger_ms=1),
                          keyring=keyring)
    csv = "recipient,variant,consent,consent_version\n" + "".join(
        f"cust-{i},{'AB'[i % 2]},{'denied' if i < 4 else 'granted'},2026-11\n" for i in range(8))
    async with serving(api_app) as api_url, serving(edge_app) as edge_url, \
            running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, max_records=300,
                               stop_within=60):
        # 1. instrument the campaign for the CSV; its sends, aggregate sends and consents go to the API
        at = int(time.time() * 1000) - 7_200_000  # sent two hours ago: no open is "fast after send"
        registered: list[Record] = []
        result = instrument_campaign(
            EmailPlan.parse((FIXTURES / "emails" / "newsletter.html").read_bytes(), tracker_base=edge_url),
            Tracker(edge_url, keyring), parse_recipients(io.StringIO(csv)), tmp_path, campaign="spring",
            register=registered.extend, sent_at=at)
        assert (result.emails, result.aggregate, result.consents) == (8, 4, 8)
        assert await asyncio.to_thread(ApiClient(api_url, API_KEY).register_sends, registered) == 4 + 2 + 8
        # 2. every URL of every email decoded: the denied ones name no message, recipient or send time
        emails = {f"cust-{i}": (tmp_path / f"cust-{i}.html").read_text() for i in range(8)}
        for recipient, text in emails.items():
            for _route, token in TOKEN_URL.findall(text):
                fields = payload_of(token)
                if recipient < "cust-4":
                    assert fields[4:7] == ["", "", 0], (recipient, fields)
                else:
                    assert fields[5] == recipient
        # 3. the recipients open and click through the edge, each from an address of their own
        n = 0
        async with aiohttp.ClientSession() as http:
            for recipient, hits in PLAN.items():
                tokens = [(route, token) for route, token in TOKEN_URL.findall(emails[recipient])]
                pixel = next(t for r, t in tokens if r == "o")
                link = next(t for r, t in tokens if r == "c" and not int(payload_of(t)[10]) & 3)  # type: ignore[call-overload]
                for kind, ua in hits:
                    n += 1
                    headers = {"User-Agent": ua, "Accept": IMAGE if kind == "open" else PAGE,
                               "X-Forwarded-For": f"81.2.69.{10 + n}"}
                    path = f"/o/{pixel}.gif" if kind == "open" else f"/c/{link}"
                    async with http.get(edge_url + path, headers=headers, allow_redirects=False) as resp:
                        assert resp.status == (200 if kind == "open" else 302)
                        if kind == "click":
                            assert ("pt_cid=" in resp.headers["Location"]) == (recipient >= "cust-4")

        def landed() -> bool:
            return (count(clickhouse, "SELECT count() FROM hits") == n
                    and count(clickhouse, "SELECT uniqExact(message_id) FROM sends") == 4
                    and count(clickhouse, "SELECT sum(sends) FROM aggregate_sends FINAL") == 4
                    and count(clickhouse, "SELECT count() FROM consents FINAL") == 8)

        await eventually(landed, timeout=90, what="the campaign in ClickHouse")
    got = clickhouse.rows(
        "SELECT variant, delivered, unique_opens, opens_human, opens_machine, unique_clicks, clicks_human, "
        "aggregate_sends, aggregate_opens_human, aggregate_opens_machine, aggregate_clicks_human, sends_all, "
        "opens_per_send_all, clicks_per_send_all FROM campaign_summary WHERE campaign = 'spring' ORDER BY variant")
    assert got == HAND_COUNT
    # The denied recipients' hits are rows without ids; nothing but their consent records names them.
    assert count(clickhouse, "SELECT count() FROM hits WHERE message_id = '' AND recipient_id = ''") == 6
    for table, column in string_columns(clickhouse, skip=("consents",)):
        named = count(clickhouse,
                      f"SELECT count() FROM {table} WHERE match(toString({column}), 'cust-[0-3]([^0-9]|$)')")
        assert named == 0, (table, column)
    assert clickhouse.rows("SELECT recipient_id, state, source, text_version FROM consent_state "
                           "WHERE recipient_id IN ('cust-0', 'cust-5') ORDER BY recipient_id") == [
        ("cust-0", "denied", "csv", "2026-11"), ("cust-5", "granted", "csv", "2026-11")]


async def produce(bootstrap: str, records: list[KafkaRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(r.topic, r.value, key=r.key) for r in records])
    finally:
        await producer.stop()


async def test_tracking_aggregate_leaves_no_message_or_recipient_id_in_any_table(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, kafka_topics: Topics,
        clickhouse: ClickHouseDb) -> None:
    sim = simulate(load_patterns(FIXTURES / "labelled-hits.jsonl"), "anon", 600, engaged_share=0.5, seed=9)
    records = list(sim.records(keyring, kafka_topics))
    first = sim.sends[0]
    token = keyring.mint(TokenPayload("click", "", "anon", first.variant, first.message, first.recipient,
                                      int(first.sent_at * 1000), 0, "https://shop.example.com/x"))
    letters = [
        # an edge's letter: a fetch of a tampered token naming a real message and recipient
        KafkaRecord(kafka_topics.hits_dlq, None, DeadLetter(
            "e-1", first.sent_at + 60, "edge", "bad_signature", f"token of '{first.message}'", "click", "GET",
            "t.example.com", f"/c/{token[:-4]}AAAA", "81.2.69.1", CHROME, "edge-1").encode()),
        # a send that does not decode (its time), naming its message and recipient
        KafkaRecord(kafka_topics.sends, b"x", Send("", "anon", "A", "anon-m9999999", "r9999999", 0.0).encode()),
    ]
    await produce(kafka_bootstrap, records + letters)
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix, "tracking": "aggregate"})

    def landed() -> bool:
        return (count(clickhouse, "SELECT count() FROM hits") == len(sim.hits)
                and count(clickhouse, "SELECT sum(sends) FROM aggregate_sends FINAL") == len(sim.sends)
                and count(clickhouse, "SELECT count() FROM conversions FINAL") == len(sim.conversions)
                and count(clickhouse, "SELECT sum(letters) FROM dead_letter_counts") == 2)

    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, max_records=300,
                               stop_within=60):
        await eventually(landed, timeout=120, what="the simulated campaign in ClickHouse")
    checked = 0
    for table, column in string_columns(clickhouse):
        if column in IDENTITY_COLUMNS:
            assert count(clickhouse, f"SELECT countIf({column} != '') FROM {table}") == 0, (table, column)
            checked += 1
        if (table, column) == ("conversions", "idempotency_key"):
            continue  # the sender's order id, which the simulation makes of the message id
        # and no simulated message or recipient id in any other text either (dead letters' raw, path, detail)
        named = count(clickhouse, f"SELECT count() FROM {table} "
                                  f"WHERE match(toString({column}), 'anon-m[0-9]{{7}}|r[0-9]{{7}}')")
        assert named == 0, (table, column)
    assert checked >= 8  # events, sends, conversions (3), message_totals, link_totals, consents...
    assert count(clickhouse, "SELECT count() FROM dead_letters") == 2
    got = {str(r[0]): r[1:] for r in clickhouse.rows(
        "SELECT variant, delivered, aggregate_sends, aggregate_opens_human, aggregate_opens_proxy, "
        "aggregate_opens_machine, aggregate_clicks_human, aggregate_clicks_filtered, aggregate_conversions, "
        "aggregate_revenue FROM campaign_summary WHERE campaign = 'anon'")}
    assert got == {v: (0, t.delivered, t.opens_human, t.opens_proxy, t.opens_machine, t.clicks_human,
                       t.clicks_filtered, t.conversions, t.revenue) for v, t in sim.truth.items()}


async def test_consents_posted_to_the_api_are_stored_once(settings: Settings, keyring: Keyring,
                                                          kafka_bootstrap: str, kafka_topics: Topics,
                                                          clickhouse: ClickHouseDb) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="consent-api", linger_ms=1)
    withdrawn = {"recipient": "r-1", "state": "denied", "ts": "2026-11-30T10:00:00Z"}
    given = {"recipient": "r-1", "state": "granted", "ts": "2026-11-01T09:00:00Z", "text_version": "2026-10"}
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with serving(create_api_app(keyring, [API_KEY], kafka_topics, publisher)) as api_url, \
            aiohttp.ClientSession(headers=auth) as http:
        for body in ({"consents": [given, withdrawn]}, {"consents": [withdrawn]}):  # the second: a retry
            async with http.post(f"{api_url}/v1/consents", json=body) as resp:
                assert resp.status == 202, await resp.text()
        async with http.post(f"{api_url}/v1/consents", json=[{"recipient": "r-2", "state": "yes"}]) as resp:
            assert resp.status == 422
            assert (await resp.json())["errors"] == ["consents[0].state: 'yes' is not one of granted, denied, "
                                                     "unknown"]
    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, max_records=300,
                               stop_within=60) as first:
        await eventually(lambda: first.records_done == 3, timeout=90, what="three consent records processed")
    # The same group again (a restart): it resumes after what ClickHouse holds, and inserts nothing. Then
    # opens of emails sent before: r-1 has withdrawn consent since, r-2 never said.
    async with running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, max_records=300,
                               stop_within=60) as again:
        await asyncio.sleep(3)
        assert again.records_done == 0
        sent = time.time() - 7200
        opens = [KafkaRecord(kafka_topics.hits_raw, f"m-{r}".encode(), RawHit(
            f"h-{r}", time.time(), "open", "GET", "t.example.com", "/o/x.gif",
            keyring.mint(TokenPayload("open", "", "autumn", "A", f"m-{r}", r, int(sent * 1000))), "81.2.69.50",
            CHROME, "edge-1", {"accept": IMAGE}).encode()) for r in ("r-1", "r-2")]
        await produce(kafka_bootstrap, opens)
        await eventually(lambda: count(clickhouse, "SELECT count() FROM hits") == 2, timeout=90, what="two opens")
    assert clickhouse.rows("SELECT hit_id, message_id, recipient_id FROM hits ORDER BY hit_id") == [
        ("h-r-1", "", ""), ("h-r-2", "m-r-2", "r-2")]
    # The retry is the same change (same time, state, source, text): one row (ClickHouse merged it on insert).
    assert count(clickhouse, "SELECT count() FROM consents") == 2
    assert clickhouse.rows("SELECT state, source, text_version FROM consents FINAL ORDER BY ts") == [
        ("granted", "api", "2026-10"), ("denied", "api", "")]
    assert clickhouse.rows("SELECT recipient_id, state, changes FROM consent_state") == [("r-1", "denied", 2)]
    assert re.fullmatch(r"t[0-9a-f]{10}\.consents", str(clickhouse.rows(
        "SELECT DISTINCT src_topic FROM consents")[0][0]))
