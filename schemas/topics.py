"""Kafka topic names: the wire between the edge and the processors."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
# hits.dlq is junk's way in: every bad token an edge answers is a letter, unsampled until the processors
# count it and keep a sample. Kafka keeps it no longer than a processor outage worth waiting for, and
# bounded in bytes (a partition's closed segments, so segments are small): a flood cannot fill the
# brokers' disks. The topics scripts of deploy/ create it with these (tests/unit/deploy checks).
HITS_DLQ_CONFIG = {
    "retention.ms": str(3 * 86_400_000),  # 3 days
    "retention.bytes": str(512 * MIB),    # a partition
    "segment.bytes": str(64 * MIB),
}


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under an optional prefix (several installations or test runs on one cluster)."""

    prefix: str = ""

    @property
    def hits_raw(self) -> str:
        """RawHit values, key = message id: per-message ordering and processor affinity."""
        return f"{self.prefix}hits.raw"

    @property
    def hits_dlq(self) -> str:
        """DeadLetter values: bad tokens at the edge, undecodable records at the processors."""
        return f"{self.prefix}hits.dlq"

    @property
    def events_classified(self) -> str:
        """ClassifiedEvent values (every verdict and revision the processors write), key = message id."""
        return f"{self.prefix}events.classified"

    @property
    def sends(self) -> str:
        """Send values (one per message and recipient), key = message id."""
        return f"{self.prefix}sends"

    @property
    def unsubscribes(self) -> str:
        """Unsubscribe values (one-click POSTs taken by the edge), key = message id."""
        return f"{self.prefix}unsubscribes"

    @property
    def conversions(self) -> str:
        """Conversion values, key = message id."""
        return f"{self.prefix}conversions"

    @property
    def deliveries(self) -> str:
        """Delivery values (delivered, bounced, deferred, complained, unsubscribed, replied; from the
        sender or its email platform's webhooks), key = message id."""
        return f"{self.prefix}deliveries"

    @property
    def consents(self) -> str:
        """Consent values (a recipient's consent to individual tracking, with its history), key =
        recipient id."""
        return f"{self.prefix}consents"

    @property
    def aggregate_sends(self) -> str:
        """AggregateSends values (how many emails of a campaign's variant went out with campaign-level
        tracking), key = campaign."""
        return f"{self.prefix}aggregate_sends"
