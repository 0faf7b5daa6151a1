"""What a production process says at its start: the Kafka it uses, its topics, its ClickHouse (no password)."""

from __future__ import annotations

from pixeltrack.compose.process import banner
from processors.clickhouse import public_dsn
from schemas.settings import Settings


def test_the_processor_banner_names_kafka_topics_and_clickhouse_without_credentials() -> None:
    settings = Settings(_env_file=None, kafka_bootstrap="10.0.0.5:9092,10.0.0.6:9092",  # type: ignore[call-arg]
                        topic_prefix="prod.", consumer_group="pixeltrack-processors",
                        clickhouse_dsn="http://pixeltrack:s3cret@ch1.internal:8123", clickhouse_database="pixeltrack")
    assert banner(settings) == (
        "pixeltrack process: Kafka 10.0.0.5:9092,10.0.0.6:9092 (group pixeltrack-processors), topics prod.hits.raw, "
        "prod.hits.dlq, prod.sends, prod.conversions, prod.unsubscribes, prod.deliveries, prod.consents, "
        "prod.aggregate_sends (prefix 'prod.'); ClickHouse "
        "http://ch1.internal:8123 database pixeltrack")


def test_the_edge_banner_names_kafka_and_the_topics_it_produces_to() -> None:
    """The edge writes to no ClickHouse: its broker and topics are what an operator checks."""
    from ingest.workers import edge_banner

    settings = Settings(_env_file=None, kafka_bootstrap="10.0.0.5:9092,10.0.0.6:9092",  # type: ignore[call-arg]
                        topic_prefix="prod.")
    assert edge_banner(settings) == ("pixeltrack edge: Kafka 10.0.0.5:9092,10.0.0.6:9092, topics prod.hits.raw, "
                                     "prod.hits.dlq, prod.unsubscribes (prefix 'prod.')")


def test_public_dsn_drops_user_and_password_only() -> None:
    assert public_dsn("https://u:p%40ss@ch.example.com:8443/?secure=true") == "https://ch.example.com:8443/?secure=true"
    assert public_dsn("http://ch:8123") == "http://ch:8123"
    assert public_dsn("chdb://.pixeltrack/chdb") == "chdb://.pixeltrack/chdb"


def test_the_triggers_banner_names_both_groups_and_their_topics() -> None:
    from pathlib import Path

    from pixeltrack.compose.services import triggers_banner
    from processors.triggers.rules import parse_rules

    settings = Settings(_env_file=None, kafka_bootstrap="k:9092", topic_prefix="prod.")  # type: ignore[call-arg]
    hooks = '[webhooks.crm]\nurl = "https://crm.example.com/h"\nsecret = "0123456789abcdef"\n'
    both = parse_rules(hooks + '[recipient_events]\n[[rules]]\nname = "a"\ntype = "first_open"\n')
    assert triggers_banner(settings, both, Path("r.toml")) == (
        "pixeltrack triggers: Kafka k:9092, group pixeltrack-triggers on prod.events.classified: 1 rules; group "
        "pixeltrack-triggers-recipient-events on prod.consents, prod.unsubscribes, prod.deliveries: recipient "
        "events (prefix 'prod.'), from r.toml")
    only = parse_rules(hooks + '[recipient_events]\nwebhook = "crm"\n')
    assert "events.classified" not in triggers_banner(settings, only, Path("r.toml"))
