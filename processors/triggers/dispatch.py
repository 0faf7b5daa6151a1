"""Concurrent webhook deliveries, bounded, each handing its outcome to the caller to record."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from processors.triggers import metrics
from processors.triggers.records import Action
from processors.triggers.rules import RuleSet
from processors.triggers.webhook import Delivery, WebhookClient

log = logging.getLogger(__name__)

OnDelivered = Callable[[Action, Delivery, Hashable], Awaitable[None]]


class Dispatcher:
    """Runs one task per due action, at most `max_in_flight` HTTP attempts at a time, and awaits
    `on_delivered(action, delivery, tag)` when it ends (delivered or given up). The caller records the
    outcome there (FIRED, or a dead letter then DEAD); until then the action stays DUE in the kept state,
    so a crash or a cancel means it is delivered again later under the same idempotency key.

    `tag` groups tasks (the Kafka runner's partition) so a group can be cancelled when it moves away.
    """

    def __init__(self, client: WebhookClient, rules: RuleSet, on_delivered: OnDelivered,
                 max_in_flight: int = 32) -> None:
        self._client = client
        self._rules = rules
        self._on_delivered = on_delivered
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: dict[str, tuple[asyncio.Task[None], Hashable]] = {}

    @property
    def pending(self) -> int:
        """Actions submitted and not yet recorded."""
        return len(self._tasks)

    def submit(self, action: Action, tag: Hashable = None) -> None:
        """Starts delivering `action` unless a delivery of its key is already running."""
        if action.key in self._tasks:
            return
        task = asyncio.create_task(self._run(action, tag), name=f"trigger-{action.rule}-{action.key[:8]}")
        self._tasks[action.key] = (task, tag)
        task.add_done_callback(functools.partial(self._done, action.key))

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        entry = self._tasks.get(key)
        if entry is not None and entry[0] is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            # Recording failed (e.g. Kafka unreachable): the action stays due in the kept state and is
            # delivered again after a restart or a reassignment, under the same idempotency key.
            log.error("recording the outcome of trigger %s failed", key, exc_info=task.exception())

    async def _run(self, action: Action, tag: Hashable) -> None:
        webhook = self._rules.webhooks.get(action.webhook)
        if webhook is None:
            now = time.time()
            delivery = Delivery(False, 0, "unknown_webhook",
                                f"webhook {action.webhook!r} is not in {self._rules.source}", None, now, now)
        else:
            # A slot per attempt, not per delivery: retries waiting out their backoff hold none.
            delivery = await self._client.deliver(webhook, action, self._slots)
        metrics.DELIVERIES.labels(action.rule, "delivered" if delivery.ok else "dead_lettered").inc()
        await self._on_delivered(action, delivery, tag)

    async def cancel(self, tag: Hashable) -> None:
        """Cancels the deliveries of one group and waits until they have stopped."""
        tasks = [t for t, g in list(self._tasks.values()) if g == tag]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def close(self, grace: float) -> None:
        """Waits up to `grace` seconds for running deliveries, then cancels the rest (they stay due)."""
        tasks = [t for t, _ in self._tasks.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for t in late:
                t.cancel()
            for t in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
