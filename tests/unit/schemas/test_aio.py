"""finish_within: a bounded await that never waits on a cancel and never loses one."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas.aio import finish_within


async def test_returns_the_result_and_raises_the_error_of_what_finishes_in_time() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ConnectionError("broker gone")

    assert await finish_within(answer(), 1.0) == 42
    with pytest.raises(ConnectionError, match="broker gone"):
        await finish_within(fail(), 1.0)


async def test_gives_up_on_time_on_a_close_that_swallows_its_cancel() -> None:
    """As aiokafka's client close does (it suppresses CancelledError around its sync task)."""
    ended = asyncio.Event()

    async def stubborn_close() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # carries on past the cancel
        ended.set()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await finish_within(stubborn_close(), 0.1)
    assert time.monotonic() - started < 0.4  # did not wait for the swallowed cancel
    await asyncio.wait_for(ended.wait(), 2.0)  # left behind, it still ends on its own


async def test_a_cancel_of_the_caller_propagates_and_cancels_the_awaitable() -> None:
    inner_cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    caller = asyncio.create_task(finish_within(slow(), 60.0))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(inner_cancelled.wait(), 1.0)


async def test_a_cancel_landing_as_the_awaitable_finishes_is_not_lost() -> None:
    """The race asyncio.wait_for loses on Python 3.11 (CPython gh-86296)."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    caller: asyncio.Task[None] | None = None

    async def loop_forever() -> None:
        while True:
            await finish_within(gate, 60.0)

    caller = asyncio.create_task(loop_forever())
    await asyncio.sleep(0.01)
    gate.set_result(None)  # the awaitable finishes ...
    caller.cancel()  # ... and the caller is cancelled in the same step
    done, _ = await asyncio.wait({caller}, timeout=1.0)
    assert done == {caller}
    assert caller.cancelled()
