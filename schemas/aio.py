"""asyncio helpers shared by the edge and the processors: bounded closes that always give way."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

STUCK_EXIT_CODE = 70  # EX_SOFTWARE: a shutdown overran its bound and the process was ended


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


async def end_within(shutdown: Coroutine[Any, Any, None], bound: float, why_safe: str,
                     end_process: Callable[[int], object] = os._exit) -> None:
    """Runs `shutdown` (a process's last steps), holding it to `bound` seconds. Every close in it has a
    timeout of its own, but one await that ignores cancellation would keep the process alive for good
    (seen once under a loaded test run: an edge still up minutes after SIGTERM, Kafka reachable). Past
    the bound the pending tasks' stacks go to the log and the process ends at once with
    STUCK_EXIT_CODE, as a kill would; `why_safe` says in that log line why that loses nothing."""
    task = asyncio.ensure_future(shutdown)
    done, _ = await asyncio.wait({task}, timeout=bound)  # not wait_for: it would wait on the cancel too
    if done:
        task.result()
        return
    for pending in asyncio.all_tasks():
        if pending is not asyncio.current_task():
            stack = io.StringIO()
            pending.print_stack(file=stack)
            log.error("shutdown still waiting after %.0f s: %s", bound, stack.getvalue().strip())
    log.error("shutdown overran its bound of %.0f s; exiting now (%s)", bound, why_safe)
    logging.shutdown()
    end_process(STUCK_EXIT_CODE)
