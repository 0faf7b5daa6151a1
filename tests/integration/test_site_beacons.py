"""The site script's beacons through the production wiring: edge → real Kafka → processor → ClickHouse (chDB).

A real click redirect gives the click id; beacons posted as the script posts them (text/plain, from another
origin) become a visit event attributed to the click, a site visit counted per site only, and one conversion
however often it is reported; junk becomes a dead letter. Then the analyst views read them.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY

from pixeltrack.sender.sdk import Message, Tracker
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_kafka_path import running_edge, running_processor
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.waiting import eventually

pytestmark = pytest.mark.kafka

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
BEACON = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example.com"}


async def test_beacons_reach_clickhouse_attributed_and_once(settings: Settings, keyring: Keyring,
                                                           kafka_bootstrap: str, kafka_topics: Topics,
                                                           clickhouse: ClickHouseDb) -> None:
    s = settings.model_copy(update={"topic_prefix": kafka_topics.prefix})
    repeats = REGISTRY.get_sample_value("pixeltrack_repeats_dropped_total") or 0.0
    sent_at = int(time.time() * 1000) - 3_600_000
    async with running_edge(s, keyring, kafka_bootstrap) as base, \
            running_processor(s, keyring, kafka_bootstrap, kafka_topics, clickhouse, f"g-{kafka_topics.prefix}"):
        tracker = Tracker(base, keyring)
        msg = Message("spring", "m-42", "r-42", variant="B", sent_at=sent_at)
        async with aiohttp.ClientSession(headers={"User-Agent": CHROME}) as http:
            async with http.get(tracker.click_url(msg, "https://shop.example.com/sale", link_id="hero"),
                                allow_redirects=False) as resp:
                assert resp.status == 302
                (cid,) = parse_qs(urlsplit(resp.headers["Location"]).query)["pt_cid"]
            beacons = [
                ({"event": "view", "click_id": cid, "page": "https://shop.example.com/sale?pt_cid=" + cid}, 204),
                ({"event": "view", "click_id": cid, "page": "https://shop.example.com/cart"}, 204),
                ({"event": "view", "page": "https://shop.example.com/"}, 204),
                ({"event": "conversion", "click_id": cid, "page": "https://shop.example.com/thanks", "value": 80,
                  "currency": "EUR", "id": "order-7"}, 204),
                ({"event": "conversion", "click_id": cid, "page": "https://shop.example.com/thanks", "value": 80,
                  "currency": "EUR", "id": "order-7"}, 204),  # the thank-you page reloaded
                ({"event": "conversion", "page": "https://shop.example.com/thanks", "id": "order-8"}, 422),
            ]
            for body, status in beacons:
                async with http.post(f"{base}/s/e", data=orjson.dumps(body), headers=BEACON) as resp:
                    assert resp.status == status, await resp.text()

        def landed() -> bool:
            return (clickhouse.rows("SELECT count() FROM hits WHERE kind = 'visit'")[0][0] == 2
                    and clickhouse.rows("SELECT count() FROM site_visits")[0][0] == 1
                    and clickhouse.rows("SELECT count() FROM dead_letters")[0][0] == 1
                    and clickhouse.rows("SELECT count() FROM conversions")[0][0] >= 1
                    # the reload's conversion was read too (and dropped as the repeat it is)
                    and (REGISTRY.get_sample_value("pixeltrack_repeats_dropped_total") or 0.0) > repeats)

        await eventually(landed, 60, "visits, a site visit, a conversion and a dead letter")

    (click_hit,) = clickhouse.rows("SELECT hit_id FROM hits WHERE kind = 'click'")[0]
    assert clickhouse.rows(
        "SELECT kind, campaign, variant, message_id, recipient_id, link_url, link_id, click_hit_id, verdict, "
        "toUnixTimestamp(sent_at) FROM hits WHERE kind = 'visit' ORDER BY link_url DESC") == [
        ("visit", "spring", "B", "m-42", "r-42", "https://shop.example.com/sale", "hero", click_hit, "human",
         sent_at // 1000),
        ("visit", "spring", "B", "m-42", "r-42", "https://shop.example.com/cart", "hero", click_hit, "human",
         sent_at // 1000)]
    assert clickhouse.rows("SELECT tenant, site, verdict, asn, as_org FROM site_visits") == [
        ("", "shop.example.com", "human", 0, "")]
    assert clickhouse.rows("SELECT idempotency_key, campaign, variant, message_id, recipient_id, link, click_hit_id, "
                           "value, currency FROM conversions") == [
        ("site:m-42:order-7", "spring", "B", "m-42", "r-42", "hero", click_hit, 80.0, "EUR")]
    assert clickhouse.rows("SELECT stage, kind, reason FROM dead_letters") == [("edge", "beacon", "malformed")]
    # the views analysts read (docs/analysts.md)
    assert clickhouse.rows("SELECT message_id, link, visits, pages, distinct_pages, machine_pages FROM visit_stats"
                           ) == [("m-42", "hero", 1, 2, 2, 0)]
    assert clickhouse.rows("SELECT link, visitors, visits, pages, pages_per_visit FROM visit_link_stats") == [
        ("hero", 1, 1, 2, 2.0)]
    ((seconds, from_site),) = clickhouse.rows("SELECT seconds_to_convert, from_site FROM conversion_timing")
    assert 0 <= seconds < 60
    assert from_site
    assert clickhouse.rows("SELECT site, as_org, visits, machine_visits FROM site_visit_stats") == [
        ("shop.example.com", "", 1, 0)]
    assert clickhouse.rows("SELECT conversions, revenue FROM campaign_summary WHERE campaign = 'spring'") == [
        (1, 80.0)]
