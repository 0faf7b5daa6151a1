"""Classified events: every verdict a processor writes, revisions included, for downstream consumers
(behaviour triggers). Kafka topic `events.classified`, key = message id."""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)  # not frozen: one is built per hit, and frozen construction costs ~6x more
class ClassifiedEvent:
    """One decision about one hit. A later record with the same `hit_id` and a higher `revision`
    replaces an earlier one (verdicts may be revised within the processors' settle window, so a
    consumer that acts on verdicts should wait that long before acting). `ts` and `sent_at` are
    epoch seconds."""

    tenant: str
    hit_id: str
    kind: str
    ts: float
    sent_at: float
    campaign: str
    variant: str
    message: str
    recipient: str
    link: str
    link_id: str
    link_flags: int
    verdict: str
    source: str
    reasons: tuple[str, ...]
    revision: int
    v: int = 1

    def encode(self) -> bytes:
        # orjson serialises the dataclass itself: dataclasses.asdict deep-copies and costs ~50x more.
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def decode(cls, value: bytes) -> ClassifiedEvent:
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a ClassifiedEvent must be a JSON object")
        try:
            obj["reasons"] = tuple(obj.get("reasons") or ())
            return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})
        except TypeError as exc:
            raise ValueError(f"ClassifiedEvent fields: {exc}") from None
