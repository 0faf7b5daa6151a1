"""asyncio helpers shared by the edge and the processors: bounded closes that always give way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned close's late error is not "never retrieved"


async def finish_within(aw: Awaitable[T], timeout: float) -> T:
    """Awaits `aw` for at most `timeout` seconds; past that, cancels it and raises TimeoutError at once,
    without waiting for the cancel to land, so a close that swallows its cancel is left behind instead
    of holding up a shutdown. A cancel of the caller cancels `aw` and always propagates.

    Not asyncio.wait_for, on Python 3.11: it waits for the cancelled awaitable to finish however long
    that takes (aiokafka's client close suppresses CancelledError), and a caller cancelled just as the
    awaitable finishes gets its result and loses the cancel (CPython gh-86296), so a loop around it
    runs on after its task was cancelled."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise TimeoutError(f"not finished within {timeout:g} s")
    return task.result()
