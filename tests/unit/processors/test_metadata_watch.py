"""MetadataWatch: a processor whose Kafka client lost every broker from its metadata gives up in time."""

from __future__ import annotations

import pytest

from processors.kafka_runner import BrokersLost, MetadataWatch


def test_brokers_lost_only_after_the_timeout_without_any() -> None:
    watch = MetadataWatch(timeout=60)
    watch.check(1, 0.0)
    watch.check(0, 10.0)  # the first time with none: the clock starts
    watch.check(0, 69.0)
    with pytest.raises(BrokersLost, match="no broker"):
        watch.check(0, 70.0)


def test_a_broker_seen_again_resets_the_clock() -> None:
    watch = MetadataWatch(timeout=60)
    watch.check(0, 0.0)
    watch.check(0, 59.0)
    watch.check(1, 59.5)  # metadata came back (a broker restart that aiokafka got over)
    watch.check(0, 100.0)
    watch.check(0, 159.0)
    with pytest.raises(BrokersLost):
        watch.check(0, 160.0)
