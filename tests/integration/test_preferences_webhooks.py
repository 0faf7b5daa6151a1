"""The preferences link and recipient-event webhooks end to end: the real edge on 127.0.0.1, the real
Kafka broker, the recipient-event runner, and a real HTTP receiver on 127.0.0.1 that verifies every
signature. A scanner's GET changes nothing; a POST withdraws consent and exactly one signed webhook
arrives, also across a restart; unsubscribes (ours and a platform's) and complaints arrive the same way."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from ingest.app import create_app
from ingest.publisher import KafkaPublisher
from pixeltrack.sender.sdk import Message, Tracker
from processors.triggers.recipient_runner import RecipientEventRunner
from processors.triggers.records import idempotency_key
from processors.triggers.rules import RuleSet, parse_rules
from processors.triggers.webhook import RetryPolicy
from schemas.consents import Consent
from schemas.deliveries import Delivery
from schemas.sends import Unsubscribe
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_triggers import read_all
from tests.plugins.kafka import create_topics
from tests.plugins.waiting import eventually
from tests.unit.processors.triggers.receiver import Receiver

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
SECRET = "prefs-webhook-secret-0123456789"
FAST_RETRY = RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=0.2)
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
PERSON_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"


def rules_for(url: str) -> RuleSet:
    return parse_rules(f"""
[webhooks.crm]
url = "{url}"
secret = "{SECRET}"
timeout = "5s"

[recipient_events]
webhook = "crm"
""")


@pytest.fixture
async def topics(kafka_bootstrap: str, kafka_topics: Topics) -> Topics:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = [t for t in (kafka_topics.consents, kafka_topics.deliveries, kafka_topics.unsubscribes)
               if t not in existing]
    if missing:
        await create_topics(kafka_bootstrap, missing)
    return kafka_topics


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


@asynccontextmanager
async def running_edge(settings: Settings, keyring: Keyring, bootstrap: str) -> AsyncIterator[str]:
    publisher = KafkaPublisher(bootstrap, client_id="test-edge", linger_ms=1)
    server = TestServer(create_app(settings, publisher=publisher, keyring=keyring), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@asynccontextmanager
async def running_sender(bootstrap: str, topics: Topics, rules: RuleSet, group: str) -> AsyncIterator[
        RecipientEventRunner]:
    runner = RecipientEventRunner(bootstrap, group, topics, rules, retry=FAST_RETRY, poll_ms=50)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_scanner_get_changes_nothing_and_a_post_withdraws_with_one_signed_webhook(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, topics: Topics, receiver: Receiver) -> None:
    s = settings.model_copy(update={"topic_prefix": topics.prefix})
    rules = rules_for(receiver.url)
    group = f"re-{uuid.uuid4().hex[:8]}"
    async with running_edge(s, keyring, kafka_bootstrap) as base, \
            running_sender(kafka_bootstrap, topics, rules, group) as runner:
        link = Tracker(base, keyring).preferences_url(Message("spring", "m-7", "r-7"), text_version="v2026-03",
                                                      state="granted")
        async with aiohttp.ClientSession() as http:
            # A security scanner prefetching every link of the email: a page, nothing else.
            async with http.get(link, headers={"User-Agent": SCANNER_UA}) as resp:
                assert resp.status == 200
                assert 'value="denied"' in await resp.text()
            await asyncio.sleep(1.5)  # far longer than the runner's poll and the edge's linger
            assert await read_all(kafka_bootstrap, topics.consents) == []
            assert receiver.calls == []

            posted_at = time.monotonic()
            async with http.post(link, data={"consent": "denied"}, headers={"User-Agent": PERSON_UA}) as resp:
                assert resp.status == 200
                assert "Your choice is saved" in await resp.text()
        await eventually(lambda: len(receiver.accepted) == 1, 60, "the consent webhook")
        assert time.monotonic() - posted_at < 60  # within a minute (here: well under a second or two)
        await asyncio.sleep(1.0)
        assert runner.delivered == 1

    (record,) = await read_all(kafka_bootstrap, topics.consents)
    consent = Consent.decode(record.value)
    assert (consent.tenant, consent.recipient, consent.state, consent.source, consent.text_version) == (
        "", "r-7", "denied", "preferences", "")
    (got,) = receiver.accepted
    assert receiver.bad_signatures == []  # the receiver answers 2xx only to a signature it verified
    assert got.rule == "consent.changed"
    key = idempotency_key("consent.changed", "", "r-7", f"consent:denied:preferences:{consent.ts!r}")
    assert got.key == key
    assert got.payload == {"id": key, "type": "consent.changed", "tenant": "", "recipient": "r-7", "state": "denied",
                           "ts": consent.ts, "source": "preferences", "text_version": ""}
    assert got.attempt == 1

    # A restart of the sender in the same group: the change was committed once delivered, so nothing
    # is delivered again.
    async with running_sender(kafka_bootstrap, topics, rules, group) as again:
        await asyncio.sleep(3.0)
        assert again.records_read == 0
    assert [k for k, _ in receiver.calls] == [key]


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for key, value in items])
    finally:
        await producer.stop()


async def test_unsubscribes_and_complaints_go_out_as_signed_webhooks_retried(
        settings: Settings, keyring: Keyring, kafka_bootstrap: str, topics: Topics, receiver: Receiver) -> None:
    s = settings.model_copy(update={"topic_prefix": topics.prefix})
    receiver.fail_with = [503, 500]  # the CRM is briefly down: retried with backoff
    now = time.time()
    platform = [
        Delivery("", "m-8", "complained", "sg-1", now, campaign="spring", recipient="r-8", platform="sendgrid"),
        Delivery("", "m-9", "unsubscribed", "mg-1", now, campaign="spring", recipient="r-9", platform="mailgun"),
        Delivery("", "m-9", "delivered", "mg-0", now, platform="mailgun"),  # not a recipient event
        Delivery("", "m-10", "unsubscribed", "own-1", now),  # the sender's own report: not sent back
    ]
    await produce(kafka_bootstrap, topics.deliveries, [(d.message.encode(), d.encode()) for d in platform])
    await produce(kafka_bootstrap, topics.consents, [(b"x", b"{not json")])  # a dead letter, not a stop
    async with running_edge(s, keyring, kafka_bootstrap) as base, \
            running_sender(kafka_bootstrap, topics, rules_for(receiver.url), f"re-{uuid.uuid4().hex[:8]}") as runner:
        unsubscribe = Tracker(base, keyring).unsubscribe_url(Message("spring", "m-1", "r-1"))
        async with aiohttp.ClientSession() as http:
            async with http.get(unsubscribe, headers={"User-Agent": SCANNER_UA}) as resp:
                assert resp.status == 200  # the confirmation form only
            async with http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}) as resp:
                assert resp.status == 200
        await eventually(lambda: len(receiver.accepted) == 3, 60, "three webhooks")
        await asyncio.sleep(1.0)
        assert runner.undecodable == 1
        assert runner.dead_lettered == 0

    assert receiver.bad_signatures == []
    assert len(receiver.calls) == 5  # two failed attempts, then three deliveries
    by_type = {(r.payload["type"], r.payload["message"]): r for r in receiver.accepted}
    assert sorted(by_type) == [("recipient.complained", "m-8"), ("recipient.unsubscribed", "m-1"),
                               ("recipient.unsubscribed", "m-9")]
    (u_record,) = await read_all(kafka_bootstrap, topics.unsubscribes)
    ours = Unsubscribe.decode(u_record.value)
    mine = by_type[("recipient.unsubscribed", "m-1")].payload
    assert mine == {"id": mine["id"], "type": "recipient.unsubscribed", "tenant": "", "recipient": "r-1",
                    "campaign": "spring", "message": "m-1", "ts": ours.ts, "via": "pixeltrack"}
    assert mine["id"] == idempotency_key("recipient.unsubscribed", "", ours.recipient_hash,
                                         f"unsubscribe:m-1:{ours.ts!r}")
    complaint = by_type[("recipient.complained", "m-8")].payload
    assert (complaint["recipient"], complaint["via"], complaint["event_id"]) == ("r-8", "sendgrid", "sg-1")
    assert by_type[("recipient.unsubscribed", "m-9")].payload["via"] == "mailgun"


async def test_a_change_not_yet_delivered_at_a_stop_is_delivered_once_after_the_restart(
        kafka_bootstrap: str, topics: Topics, receiver: Receiver) -> None:
    consent = Consent("", "r-3", "granted", time.time(), "preferences", "v2026-03")
    await produce(kafka_bootstrap, topics.consents, [(b"r-3", consent.encode())])
    rules = rules_for(receiver.url)
    group = f"re-{uuid.uuid4().hex[:8]}"
    receiver.always = 503  # the CRM is down while the first runner runs
    patient = RetryPolicy(max_attempts=1000, base_delay=0.05, max_delay=0.1)
    first = RecipientEventRunner(kafka_bootstrap, group, topics, rules, retry=patient, poll_ms=50, shutdown_grace=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await eventually(lambda: len(receiver.calls) >= 3 or task.done(), 60, "attempts while the CRM is down")
    stop.set()
    await asyncio.wait_for(task, 30)
    assert receiver.accepted == []
    assert first.delivered == 0

    # An attempt cancelled in flight when the grace ran out may still be answered by the receiver (on
    # this same loop) after it came back up: at least once, under one key. The restart's own delivery is
    # its attempt 1 (the first runner's attempt 1 was answered 503).
    receiver.always = None
    async with running_sender(kafka_bootstrap, topics, rules, group) as again:
        await eventually(lambda: again.delivered == 1, 60, "the delivery after the restart")
        await asyncio.sleep(1.0)
        assert again.delivered == 1
    (got,) = [r for r in receiver.accepted if r.attempt == 1]
    assert {r.body for r in receiver.accepted} == {got.body}
    assert (got.payload["recipient"], got.payload["state"], got.payload["text_version"]) == ("r-3", "granted",
                                                                                               "v2026-03")
    assert {k for k, _ in receiver.calls} == {got.key}  # every attempt, before and after the restart: one key


async def test_the_triggers_command_sends_recipient_events_from_a_rules_file_without_rules(
        kafka_bootstrap: str, topics: Topics, receiver: Receiver, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[webhooks.crm]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n[recipient_events]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELTRACK_")}
    env |= {"PIXELTRACK_KAFKA_BOOTSTRAP": kafka_bootstrap, "PIXELTRACK_TOPIC_PREFIX": topics.prefix,
            "PIXELTRACK_TRIGGERS_CONSUMER_GROUP": f"g-{uuid.uuid4().hex[:8]}", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "pixeltrack"), "triggers",
                                                "--rules", str(rules), env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        consent = Consent("", "r-5", "denied", time.time(), "preferences")
        await produce(kafka_bootstrap, topics.consents, [(b"r-5", consent.encode())])
        await eventually(lambda: len(receiver.accepted) == 1 or proc.returncode is not None, 90, "the webhook")
        assert proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "recipient events" in text
    assert "Traceback" not in text
    (got,) = receiver.accepted
    assert (got.rule, got.payload["recipient"], got.payload["state"]) == ("consent.changed", "r-5", "denied")
