"""`pixeltrack api` and `pixeltrack triggers`: the production ingest API and the behaviour triggers, from settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.runtime import stop_on_signals
from schemas.settings import Settings
from schemas.topics import Topics

if TYPE_CHECKING:
    from processors.triggers.rules import RuleSet


def api_banner(settings: Settings) -> str:
    topics = Topics(settings.topic_prefix)
    return (f"pixeltrack api: Kafka {settings.kafka_bootstrap}{settings.kafka_bootstrap_origin()}, topics "
            f"{topics.sends}, {topics.conversions}, "
            f"{topics.deliveries}, {topics.consents}, {topics.aggregate_sends} (prefix {settings.topic_prefix!r})")


async def run_api(settings: Settings, announce: Callable[[str], None]) -> None:
    """The authenticated ingest API (sends, conversions, delivery events) on api_host:api_port until SIGINT/SIGTERM."""
    from ingest.api import create_api_from_settings
    from ingest.app import edge_tenants
    from ingest.serving import ServerLimits, serve_until_stopped

    # The default keys check the operator's click ids; a tenants file alone is enough for tenants' ones.
    app = create_api_from_settings(settings, edge_tenants(settings))
    await serve_until_stopped(app, settings.api_host, settings.api_port, limits=ServerLimits.from_settings(settings),
                              server="api", announce=announce)


def trigger_rules(settings: Settings, path: Path) -> RuleSet:
    """The rules file at `path`, with the settings' webhook secret (RuleError names what is wrong)."""
    from processors.triggers.rules import load_rules

    secret = settings.triggers_webhook_secret.get_secret_value() if settings.triggers_webhook_secret else None
    return load_rules(path, secret)


def recipient_events_group(settings: Settings) -> str:
    """The consumer group of the recipient events (consents, unsubscribes, deliveries → webhooks)."""
    return f"{settings.triggers_consumer_group}-recipient-events"


def triggers_banner(settings: Settings, rules: RuleSet, path: Path) -> str:
    s = settings
    t = Topics(s.topic_prefix)
    parts = []
    if rules.rules:
        parts.append(f"group {s.triggers_consumer_group} on {t.events_classified}: {len(rules.rules)} rules")
    if rules.recipient_events is not None:
        parts.append(f"group {recipient_events_group(s)} on {t.consents}, {t.unsubscribes}, {t.deliveries}: "
                     "recipient events")
    return (f"pixeltrack triggers: Kafka {s.kafka_bootstrap}{s.kafka_bootstrap_origin()}, {'; '.join(parts)} "
            f"(prefix {s.topic_prefix!r}), "
            f"from {path}")


async def run_triggers(s: Settings, rules: RuleSet) -> None:
    """Behaviour triggers (events.classified → rules → signed webhooks) and, with a [recipient_events]
    table, recipient events (consents, unsubscribes, complaints → signed webhooks), until SIGINT/SIGTERM.
    Either ending ends both."""
    from processors.triggers.recipient_runner import RecipientEventRunner
    from processors.triggers.runner import TriggerRunner
    from processors.triggers.webhook import RetryPolicy

    stop = asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)
    topics = Topics(s.topic_prefix)
    runs = []
    if rules.rules:
        runs.append(TriggerRunner(s.kafka_bootstrap, s.triggers_consumer_group, topics, rules,
                                  settle_seconds=s.triggers_settle_seconds, max_attempts=s.triggers_max_attempts).run)
    if rules.recipient_events is not None:
        runs.append(RecipientEventRunner(s.kafka_bootstrap, recipient_events_group(s), topics, rules,
                                         retry=RetryPolicy(max_attempts=s.triggers_max_attempts)).run)

    async def until_one_ends(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        try:
            await run(stop)
        finally:
            stop.set()

    await asyncio.gather(*(until_one_ends(r) for r in runs))
