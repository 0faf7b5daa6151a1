"""Records on the wire: RawHit (hits.raw) and DeadLetter (hits.dlq), orjson-encoded, bounded in size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from schemas.timefmt import in_window

RAW_HIT_VERSION = 1

# Size bounds: a record never grows with hostile input. Anything longer is cut, not rejected, so the
# hit is still counted; the token itself is bounded by tokens.MAX_TOKEN_CHARS before it gets here.
MAX_UA = 512
MAX_HEADER = 256
MAX_PATH = 512
MAX_HOST = 255
# Request headers kept for classification (ARCHITECTURE.md, RawHit).
KEPT_HEADERS = ("accept", "accept-language", "via", "x-forwarded-for", "sec-purpose", "purpose", "x-purpose",
                "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "x-moz")


class Record(NamedTuple):
    """One message for a topic, transport-neutral (Kafka or the embedded in-process bus)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


# Kafka header on records the edge re-sends from its spool: they may have reached Kafka before, so
# processors check such hit ids against what ClickHouse holds before counting them.
REPLAY_HEADER = "pt-replay"


@dataclass(slots=True)
class RawHit:
    """A fetch as the edge saw it, before any interpretation. `id` is made by the edge and unique, so
    a hit sent twice (producer retry, spool replay) is recognised and counted once downstream."""

    id: str
    received_at: float
    kind: str
    method: str
    host: str
    path: str
    token: str
    ip: str
    ua: str
    edge: str
    headers: dict[str, str] = field(default_factory=dict)
    v: int = RAW_HIT_VERSION

    def encode(self) -> bytes:
        # A dict in field order, not OPT_SERIALIZE_DATACLASS: orjson reads a dataclass's slots itself,
        # which a compiled one (schemas.native) does not have.
        return orjson.dumps({"id": self.id, "received_at": self.received_at, "kind": self.kind, "method": self.method,
                             "host": self.host, "path": self.path, "token": self.token, "ip": self.ip,
                             "ua": self.ua, "edge": self.edge, "headers": self.headers, "v": self.v})

    @classmethod
    def decode(cls, value: bytes) -> RawHit:
        """Raises ValueError with the reason for anything that is not a RawHit of a known version."""
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if type(obj) is not dict:
            raise ValueError("a RawHit must be a JSON object")
        if obj.get("v") != RAW_HIT_VERSION:
            raise ValueError(f"unknown RawHit version {obj.get('v')!r}")
        try:
            id_, received_at, kind, method, host, path, token, ip, ua, edge = (
                obj["id"], obj["received_at"], obj["kind"], obj["method"], obj["host"], obj["path"], obj["token"],
                obj["ip"], obj["ua"], obj["edge"])
        except KeyError as exc:
            raise ValueError(f"RawHit lacks the field {exc.args[0]!r}") from None
        headers = obj.get("headers") or {}
        # One expression of plain type checks, before the fields are stored (a compiled RawHit refuses a
        # field of the wrong type with TypeError): this runs for every hit a processor decodes.
        if not (type(id_) is str and type(kind) is str and type(method) is str and type(host) is str
                and type(path) is str and type(token) is str and type(ip) is str and type(ua) is str
                and type(edge) is str and type(headers) is dict and type(received_at) in (int, float)):
            raise ValueError("RawHit field of the wrong type")
        for text in headers.values():  # two or three; the classifier reads them as text
            if type(text) is not str:
                raise ValueError("RawHit header value of the wrong type")
        return cls(id_, float(received_at), kind, method, host, path, token, ip, ua, edge, headers)


@dataclass(slots=True)
class DeadLetter:
    """Input that could not be used, with why. Written to hits.dlq, then to ClickHouse dead_letters."""

    id: str
    received_at: float
    stage: str  # "edge" | "processor"
    reason: str  # short code: bad_signature, malformed, expired, undecodable, ...
    detail: str = ""
    kind: str = ""
    method: str = ""
    host: str = ""
    path: str = ""
    ip: str = ""
    ua: str = ""
    edge: str = ""
    raw: str = ""  # for undecodable records: the first bytes, escaped
    v: int = RAW_HIT_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @classmethod
    def decode(cls, value: bytes) -> DeadLetter:
        """Raises ValueError for anything but a JSON object, TypeError for a field of the wrong type."""
        obj: Any = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a DeadLetter must be a JSON object")
        known = {k: obj[k] for k in DEAD_LETTER_FIELDS if k in obj}
        for name, v in known.items():
            if name == "received_at" or name == "v":
                if type(v) not in (int, float) or (name == "v" and type(v) is not int):
                    raise TypeError(f"DeadLetter.{name} must be a number, got {type(v).__name__}")
            elif type(v) is not str:
                raise TypeError(f"DeadLetter.{name} must be a string, got {type(v).__name__}")
        if "received_at" in known:
            known["received_at"] = float(known["received_at"])
            if not in_window(known["received_at"]):  # ClickHouse would refuse the batch, or store 9999-12-31
                raise ValueError(f"DeadLetter.received_at {known['received_at']!r} is not between 2000 and 2200")
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        """The fields in order (what encode writes)."""
        return {"id": self.id, "received_at": self.received_at, "stage": self.stage, "reason": self.reason,
                "detail": self.detail, "kind": self.kind, "method": self.method, "host": self.host,
                "path": self.path, "ip": self.ip, "ua": self.ua, "edge": self.edge, "raw": self.raw, "v": self.v}


DEAD_LETTER_FIELDS = ("id", "received_at", "stage", "reason", "detail", "kind", "method", "host", "path", "ip", "ua",
                      "edge", "raw", "v")
