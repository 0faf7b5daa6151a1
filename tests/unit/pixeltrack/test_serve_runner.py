"""`pixeltrack serve` stops, loudly, when its runner fails, rather than answer hits nothing writes."""

from __future__ import annotations

import asyncio

from pixeltrack.compose.serve import _runner_ended


async def test_a_failed_runner_stops_serve_and_a_finished_one_does_not() -> None:
    async def fail() -> None:
        raise OSError(28, "No space left on device")

    async def finish() -> None:
        return None

    for body, stops in ((fail, True), (finish, False)):
        stop = asyncio.Event()
        task = asyncio.create_task(body())
        await asyncio.wait({task})
        _runner_ended(task, stop)
        assert stop.is_set() is stops, body.__name__

    stop = asyncio.Event()
    cancelled = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait({cancelled})
    _runner_ended(cancelled, stop)
    assert not stop.is_set()
