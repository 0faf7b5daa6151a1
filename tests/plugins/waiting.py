"""Waiting for an observable outcome (a row, a record) with a bound, for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Polls `condition` until true; fails the test after `timeout` seconds. Polling, not an event: the
    outcome lives outside the test (ClickHouse, Kafka, another task)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f}s")
        await asyncio.sleep(0.05)
