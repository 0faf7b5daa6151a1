"""Webhook delivery: one signed POST per attempt (aiohttp), retried with exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC

import aiohttp

from processors.triggers import metrics
from processors.triggers.records import Action
from processors.triggers.rules import Webhook
from processors.triggers.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign, verify_signature

__all__ = ["Delivery", "RetryPolicy", "WebhookClient", "verify_signature"]

log = logging.getLogger(__name__)

USER_AGENT = "pixeltrack-triggers/1"
RULE_HEADER = "X-Pixeltrack-Rule"
ATTEMPT_HEADER = "X-Pixeltrack-Attempt"
# Worth another attempt: timeouts, throttling and server errors. Any other answer that is not 2xx
# (400, 401, 404, 410, 422, a redirect, ...) will not change by retrying: the action is dead-lettered.
RETRYABLE_STATUS = frozenset({408, 425, 429, *range(500, 600)})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and the waits between them: after failed attempt n the wait is drawn from
    [d/2, d] with d = min(max_delay, base_delay * 2**(n-1)) (jitter spreads retries of many actions
    to one receiver). A Retry-After (seconds or an HTTP-date) on 429/503 is honoured up to
    max_retry_after; one that is neither (junk, nan, inf, negative) leaves the wait to the backoff."""

    max_attempts: int = 10
    base_delay: float = 2.0
    max_delay: float = 300.0
    max_retry_after: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be ≥ 1, got {self.max_attempts!r}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"need 0 ≤ base_delay ≤ max_delay, got {self.base_delay!r} and {self.max_delay!r}")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        # A non-finite wait would reach the event loop's timer (uvloop raises on nan): the backoff decides.
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        d = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return d / 2 + rng.random() * d / 2


@dataclass(frozen=True, slots=True)
class Delivery:
    """How delivering one action ended. `reason` is "" when delivered, else a short code (http_500,
    connection_error, timeout, http_404, ...) naming the last failure."""

    ok: bool
    attempts: int
    reason: str
    detail: str
    status: int | None
    first_attempt_at: float
    finished_at: float


@dataclass(frozen=True, slots=True)
class _Attempt:
    ok: bool
    retryable: bool
    reason: str
    detail: str
    status: int | None = None
    retry_after: float | None = None


class WebhookClient:
    """Delivers actions to webhooks over one aiohttp session (the caller owns it)."""

    def __init__(self, session: aiohttp.ClientSession, policy: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, seed: int | None = None) -> None:
        self._session = session
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)

    async def deliver(self, webhook: Webhook, action: Action, slots: asyncio.Semaphore | None = None) -> Delivery:
        """Attempts until a 2xx, a failure that retrying cannot fix, or max_attempts. Never raises for
        the receiver's faults; cancellation propagates (the action stays due and is delivered later).
        `slots` bounds concurrent attempts: one is held for each attempt, not through the pauses
        between them, so a receiver that is down does not hold up deliveries to the others."""
        body = action.body()
        first = self._clock()
        attempt = 0
        while True:
            attempt += 1
            if slots is None:
                result = await self.attempt(webhook, action, body, attempt)
            else:
                async with slots:
                    result = await self.attempt(webhook, action, body, attempt)
            metrics.ATTEMPTS.labels(action.rule, "ok" if result.ok else result.reason).inc()
            if result.ok or not result.retryable or attempt >= self.policy.max_attempts:
                if not result.ok:
                    log.warning("trigger %s (%s) to %s failed after %d attempt(s): %s %s", action.rule, action.key,
                                webhook.name, attempt, result.reason, result.detail)
                return Delivery(result.ok, attempt, result.reason, result.detail, result.status, first,
                                self._clock())
            await self._sleep(self.policy.delay(attempt, self._rng, result.retry_after))

    async def attempt(self, webhook: Webhook, action: Action, body: bytes, attempt: int) -> _Attempt:
        """One POST, signed at the time it is sent."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(webhook.secret, body, int(self._clock())),
            IDEMPOTENCY_HEADER: action.key,
            RULE_HEADER: action.rule,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._session.post(webhook.url, data=body, headers=headers, allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=webhook.timeout)) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return _Attempt(True, False, "", "", status)
                text = (await resp.content.read(300)).decode("utf-8", "replace")
                retry_after = (_retry_after(resp.headers.get("Retry-After"), self._clock())
                               if status in (429, 503) else None)
                return _Attempt(False, status in RETRYABLE_STATUS, f"http_{status}", text.strip(), status,
                                retry_after)
        except TimeoutError:
            return _Attempt(False, True, "timeout", f"no answer within {webhook.timeout:g}s")
        except aiohttp.InvalidURL as exc:
            return _Attempt(False, False, "invalid_url", str(exc))
        except aiohttp.ClientConnectorError as exc:
            return _Attempt(False, True, "connection_error", str(exc))
        except aiohttp.ClientError as exc:
            return _Attempt(False, True, "connection_error", f"{type(exc).__name__}: {exc}")


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After asks to wait (RFC 9110 10.2.3: delay-seconds, or an HTTP-date, which is
    `now` or later); None when absent or neither (junk, "nan", "inf", "-5", "1.5"): the backoff decides.
    Very large values come back large; RetryPolicy.delay caps them."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # Cut before int(): a header of thousands of digits must not cost a big-number conversion.
        return float(int(text)) if len(text) <= 12 else 1e12
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and a missing zone: HTTP-dates are in GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
