"""Delivery events into `deliveries` rows: attributed from the message's send, each event once.

The pipeline (processors.pipeline.HitProcessor) hands each record of the deliveries topic here after the
batch's sends, with what ClickHouse said about the batch (its Lookups): the events it holds already, and
the campaign, variant and recipient of the messages named. An event is one row per (tenant, message,
type, id), however often it arrives (a retried POST, a platform repeating a webhook at another offset).
An event whose message has no registered send and that names no campaign cannot be counted anywhere:
it becomes a dead letter (reason `unattributed_delivery`) rather than vanish; posted again once the send
is registered (same id), it counts once. Our own one-click unsubscribes (the unsubscribes topic) become
`unsubscribed` events too, of platform "pixeltrack" (see from_unsubscribe).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Set
from dataclasses import dataclass

from schemas.deliveries import Delivery
from schemas.sends import Unsubscribe
from schemas.timefmt import format_ts

DELIVERY_COLUMNS = ("tenant", "message_id", "type", "event_id", "ts", "campaign", "variant", "recipient_id",
                    "bounce", "smtp_code", "diagnostic", "platform", "src_topic", "src_partition", "src_offset")
DeliveryKey = tuple[str, str, str, str]  # tenant, message, type, event id
UNATTRIBUTED = "unattributed_delivery"
UNDECODABLE = "undecodable_delivery"
# The platform of our own unsubscribes: the edge's one-click /u POSTs, kept beside the platforms' own.
ONE_CLICK = "pixeltrack"
# An address in a server's answer ("550 5.1.1 <jane@example.com>: Recipient address rejected") is the
# recipient's: never stored, like the address of a send.
_ADDRESS = re.compile(r"<?[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+>?")


def redact_addresses(text: str) -> str:
    """`text` with every email address replaced by `<address>`."""
    return _ADDRESS.sub("<address>", text) if "@" in text else text


def from_unsubscribe(u: Unsubscribe) -> Delivery | None:
    """Our own one-click unsubscribe as an `unsubscribed` event of its message (None without one), so that
    it is counted per message where the message's other rows are (and on the message's shard)."""
    if not u.message:
        return None
    return Delivery(u.tenant, u.message, "unsubscribed", f"one-click@{format_ts(u.ts)}", u.ts, campaign=u.campaign,
                    platform=ONE_CLICK)


def key_of(d: Delivery) -> DeliveryKey:
    """What makes two deliveries the same event."""
    return (d.tenant, d.message, d.type, d.id)


@dataclass(frozen=True, slots=True)
class Attributed:
    """A delivery with its campaign, variant and recipient settled (the event's, else the send's)."""

    delivery: Delivery
    campaign: str
    variant: str
    recipient: str

    def row(self, topic: str, partition: int, offset: int) -> tuple[object, ...]:
        d = self.delivery
        return (d.tenant, d.message, d.type, d.id, d.ts, self.campaign, self.variant, self.recipient, d.bounce,
                d.smtp_code, redact_addresses(d.diagnostic), d.platform, topic, partition, offset)


class DeliveryEvents:
    """Remembers the events written lately (bounded, oldest forgotten first: ClickHouse answers for older
    ones) and settles each new event: a repeat, unattributed, or attributed."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._recent: OrderedDict[DeliveryKey, None] = OrderedDict()
        self._capacity = capacity

    @staticmethod
    def needs_send(d: Delivery) -> bool:
        """Whether the event leaves something to take from its message's send."""
        return not (d.campaign and d.variant and d.recipient)

    def seen(self, d: Delivery, stored: Set[DeliveryKey]) -> bool:
        """Whether the event was written before (stored in ClickHouse, or remembered here)."""
        key = key_of(d)
        return key in stored or key in self._recent

    def attribute(self, d: Delivery, sends: Mapping[tuple[str, str], tuple[str, str, str]],
                  recent_sends: Mapping[tuple[str, str], tuple[str, str, str]]) -> Attributed | None:
        """The event with the fields it left out taken from its send (ClickHouse's answer, else the sends
        processed lately); None when it names no campaign and its send is unknown."""
        campaign, variant, recipient = d.campaign, d.variant, d.recipient
        if self.needs_send(d):
            known = sends.get((d.tenant, d.message)) or recent_sends.get((d.tenant, d.message))
            if known is not None:
                campaign, variant, recipient = campaign or known[0], variant or known[1], recipient or known[2]
        if not campaign:
            return None
        return Attributed(d, campaign, variant, recipient)

    def written(self, d: Delivery) -> None:
        """Records that the event has a row (not when it is dead-lettered: posted again once its send is
        registered, it is taken then)."""
        self._recent[key_of(d)] = None
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
