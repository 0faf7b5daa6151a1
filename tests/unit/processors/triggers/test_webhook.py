"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signing, retries, giving up."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from processors.triggers.records import Action
from processors.triggers.rules import Webhook
from processors.triggers.webhook import RetryPolicy, WebhookClient

from .events import SECRET
from .receiver import Receiver, free_port

ACTION = Action("k" * 32, "tell-sales", "crm", {"id": "k" * 32, "rule": "tell-sales", "recipient": "r-1"})


class Waits:
    """Stands in for asyncio.sleep: records the backoff and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(SECRET).start()
    yield r
    await r.stop()


def hook(url: str, timeout: float = 5.0) -> Webhook:
    return Webhook("crm", url, SECRET.encode(), timeout)


async def test_delivered_signed_with_the_idempotency_key(session: aiohttp.ClientSession, receiver: Receiver) -> None:
    d = await WebhookClient(session).deliver(hook(receiver.url), ACTION)
    assert (d.ok, d.attempts, d.reason, d.status) == (True, 1, "", 204)
    (got,) = receiver.accepted
    assert (got.key, got.attempt, got.rule, got.body) == (ACTION.key, 1, "tell-sales", ACTION.body())
    assert got.payload == ACTION.payload


async def test_server_errors_are_retried_with_backoff_then_delivered_once(session: aiohttp.ClientSession,
                                                                          receiver: Receiver) -> None:
    receiver.fail_with = [500, 503, 429]
    waits = Waits()
    client = WebhookClient(session, RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=60), sleep=waits, seed=1)
    d = await client.deliver(hook(receiver.url), ACTION)
    assert (d.ok, d.attempts) == (True, 4)
    assert receiver.calls == [(ACTION.key, 500), (ACTION.key, 503), (ACTION.key, 429), (ACTION.key, 204)]
    assert [r.attempt for r in receiver.accepted] == [4]
    assert 0.5 <= waits.delays[0] <= 1
    assert 1 <= waits.delays[1] <= 2
    assert 2 <= waits.delays[2] <= 4


async def test_gives_up_after_max_attempts_with_the_last_reason(session: aiohttp.ClientSession,
                                                                receiver: Receiver) -> None:
    receiver.always = 500
    waits = Waits()
    d = await WebhookClient(session, RetryPolicy(max_attempts=3), sleep=waits).deliver(hook(receiver.url), ACTION)
    assert (d.ok, d.attempts, d.reason, d.status, d.detail) == (False, 3, "http_500", 500, "nope")
    assert len(receiver.calls) == 3
    assert len(waits.delays) == 2
    assert receiver.accepted == []


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 302])
async def test_answers_that_retrying_cannot_change_are_not_retried(session: aiohttp.ClientSession,
                                                                   receiver: Receiver, status: int) -> None:
    receiver.always = status
    d = await WebhookClient(session, RetryPolicy(max_attempts=5), sleep=Waits()).deliver(hook(receiver.url), ACTION)
    assert (d.ok, d.attempts, d.reason) == (False, 1, f"http_{status}")


async def test_connection_refused_is_retried_until_the_receiver_is_up(session: aiohttp.ClientSession) -> None:
    receiver = Receiver(SECRET, port=free_port())  # nothing listens yet

    async def start_on_second_wait(seconds: float) -> None:
        if not started:
            started.append(await receiver.start())

    started: list[Receiver] = []
    try:
        client = WebhookClient(session, RetryPolicy(max_attempts=4), sleep=start_on_second_wait)
        d = await client.deliver(hook(receiver.url), ACTION)
    finally:
        await receiver.stop()
    assert (d.ok, d.attempts) == (True, 2)
    assert len(receiver.accepted) == 1


async def test_connection_refused_to_the_end_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    d = await WebhookClient(session, RetryPolicy(max_attempts=2), sleep=Waits()).deliver(hook(url), ACTION)
    assert (d.ok, d.attempts, d.reason) == (False, 2, "connection_error")


async def test_a_slow_receiver_is_a_timeout(session: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = WebhookClient(session, RetryPolicy(max_attempts=1))
        d = await client.deliver(hook(f"http://127.0.0.1:{port}/hook", timeout=0.2), ACTION)
    finally:
        await runner.cleanup()
    assert (d.ok, d.reason) == (False, "timeout")


async def test_retry_after_is_honoured_within_its_cap(session: aiohttp.ClientSession) -> None:
    async def throttled(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_post("/hook", throttled)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    waits = Waits()
    try:
        client = WebhookClient(session, RetryPolicy(max_attempts=3, max_retry_after=5), sleep=waits)
        d = await client.deliver(hook(f"http://127.0.0.1:{port}/hook"), ACTION)
    finally:
        await runner.cleanup()
    assert (d.ok, d.reason) == (False, "http_429")
    assert waits.delays == [5, 5]


class StrictWaits(Waits):
    """Refuses what an event loop's timer refuses (uvloop raises ValueError on nan), and negative waits."""

    async def __call__(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot wait {seconds!r} s")
        self.delays.append(seconds)


NOW = 1_445_412_400.0  # Wed, 21 Oct 2015 07:26:40 GMT


@pytest.mark.parametrize(("retry_after", "waited"), [
    ("7", 7.0), ("99999999999999999999999", 30.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 20.0), ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
    ("nan", None), ("inf", None), ("-inf", None), ("-5", None), ("1e400", None), ("soon", None), ("", None),
])
async def test_retry_after_seconds_dates_and_junk(session: aiohttp.ClientSession, retry_after: str,
                                                  waited: float | None) -> None:
    """Seconds and HTTP-dates are honoured up to the cap; junk, nan, inf and negatives fall back to the
    backoff. Either way the action ends in a Delivery (here given up after the attempts) and never raises."""
    async def throttled(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": retry_after})

    app = web.Application()
    app.router.add_post("/hook", throttled)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    waits = StrictWaits()
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, max_delay=4.0, max_retry_after=30)
    try:
        client = WebhookClient(session, policy, clock=lambda: NOW, sleep=waits)
        d = await client.deliver(hook(f"http://127.0.0.1:{port}/hook"), ACTION)
    finally:
        await runner.cleanup()
    assert (d.ok, d.reason, d.attempts) == (False, "http_503", 2)
    assert len(waits.delays) == 1
    if waited is None:
        assert 0.5 <= waits.delays[0] <= 1.0  # the first backoff step: [base/2, base]
    else:
        assert waits.delays[0] == waited


def test_backoff_grows_and_is_capped() -> None:
    p = RetryPolicy(max_attempts=20, base_delay=1.0, max_delay=300.0)
    rng = random.Random(0)
    for attempt in range(1, 15):
        d = min(300.0, 2.0 ** (attempt - 1))
        assert d / 2 <= p.delay(attempt, rng) <= d
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_a_receiver_that_is_down_does_not_hold_up_deliveries_to_the_others(session: aiohttp.ClientSession,
                                                                                 receiver: Receiver) -> None:
    """Two slots, two actions retrying against a dead receiver: the third, for a healthy one, goes out
    at once instead of after their whole backoff (a slot was held through every pause)."""
    import time

    from processors.triggers.dispatch import Dispatcher
    from processors.triggers.rules import parse_rules

    rules = parse_rules(f"""
[webhooks.down]
url = "http://127.0.0.1:{free_port()}/h"
secret = "{SECRET}"
[webhooks.up]
url = "{receiver.url}"
secret = "{SECRET}"
[[rules]]
name = "r"
type = "first_open"
webhook = "down"
""")
    done: dict[str, float] = {}

    async def on_delivered(action: Action, delivery: object, tag: object) -> None:
        done[action.key] = time.monotonic() - started

    dispatcher = Dispatcher(WebhookClient(session, RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=1.0)),
                            rules, on_delivered, max_in_flight=2)
    started = time.monotonic()
    for key, webhook in (("a1", "down"), ("a2", "down"), ("b1", "up")):
        dispatcher.submit(Action(key, "r", webhook, {"id": key}))
    await dispatcher.close(30)
    assert done["b1"] < 0.5 < min(done["a1"], done["a2"])
    assert [r.key for r in receiver.accepted] == ["b1"]
