"""finish_within: a bounded await that never waits on a cancel and never loses one; end_within: a
shutdown held to its bound, whatever it waits on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from schemas.aio import STUCK_EXIT_CODE, end_within, finish_within


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


async def test_a_shutdown_within_its_bound_ends_normally() -> None:
    ended: list[int] = []
    closed: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0.01)
        closed.append("closed")

    await end_within(cleanup(), 5.0, "test", end_process=ended.append)
    assert closed == ["closed"]
    assert ended == []


async def test_a_shutdown_error_is_raised_not_swallowed() -> None:
    async def cleanup() -> None:
        raise OSError("spool folder gone")

    with pytest.raises(OSError, match="spool folder gone"):
        await end_within(cleanup(), 5.0, "test", end_process=lambda code: None)


async def test_a_shutdown_past_its_bound_logs_what_it_waits_on_and_ends_the_process(
        caplog: pytest.LogCaptureFixture) -> None:
    """An await that swallows cancellation (as a wedged library close can) must not hold the process."""
    ended: list[int] = []
    released = asyncio.Event()

    async def close_that_ignores_cancel() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)

    async def cleanup() -> None:
        await close_that_ignores_cancel()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="schemas.aio"):
        await end_within(cleanup(), 0.3, "test", end_process=ended.append)
    took = time.monotonic() - started
    released.set()  # let the stuck task end, so the test's loop can close
    await asyncio.sleep(0.05)
    assert ended == [STUCK_EXIT_CODE]
    assert 0.3 <= took < 2.0
    assert "close_that_ignores_cancel" in caplog.text  # where it was stuck
    assert "overran its bound" in caplog.text
