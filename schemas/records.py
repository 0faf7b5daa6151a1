"""Records on the wire: RawHit (hits.raw) and DeadLetter (hits.dlq), orjson-encoded, bounded in size."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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
# Request headers kept for classification (docs/architecture.md, "Records").
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


def typed_fields(cls: Any, obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields of dataclass `cls` present in `obj`, each checked against its declared type (str, where
    null is ""; float: any number but a bool; int: a whole number but a bool); ValueError names the
    first that is not.
    The processors' compiled code (schemas.native) refuses a field of the wrong type with TypeError
    wherever it reads one, so a record from Kafka is checked whole, here."""
    known: dict[str, Any] = {}
    for name, f in cls.__dataclass_fields__.items():
        if name not in obj:
            continue
        value = obj[name]
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "str" and value is None:
            value = ""  # as the API reads it, and as ClickHouse stored a null for a String column
        if kind == "str" and type(value) is not str:
            raise ValueError(f"{where}.{name}: must be a string, got {type(value).__name__}")
        if kind == "float" and type(value) not in (int, float):
            raise ValueError(f"{where}.{name}: must be a number, got {type(value).__name__}")
        if kind == "int" and type(value) is not int:
            raise ValueError(f"{where}.{name}: must be a whole number, got {type(value).__name__}")
        known[name] = float(value) if kind == "float" else value
    return known


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
    # A hit an email platform reported (ingest/esp): the platform ("sendgrid", "mailgun", "postmark",
    # "ses"; "" for the edge's own fetches) and whether the platform flagged a machine. Written only when
    # set, so the edge's records keep their bytes.
    origin: str = ""
    origin_machine: bool = False

    def encode(self) -> bytes:
        # A dict in field order, not OPT_SERIALIZE_DATACLASS: orjson reads a dataclass's slots itself,
        # which a compiled one (schemas.native) does not have.
        obj: dict[str, object] = {name: getattr(self, name) for name in RAW_HIT_FIELDS}
        if self.origin:
            obj["origin"] = self.origin
            obj["origin_machine"] = self.origin_machine
        return orjson.dumps(obj)

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
        origin = obj.get("origin", "")
        if origin:
            machine = obj.get("origin_machine", False)
            if type(origin) is not str or type(machine) is not bool:
                raise ValueError("RawHit origin of the wrong type")
            return cls(id_, float(received_at), kind, method, host, path, token, ip, ua, edge, headers,
                       RAW_HIT_VERSION, origin, machine)
        return cls(id_, float(received_at), kind, method, host, path, token, ip, ua, edge, headers)


# The fields every RawHit writes (origin and origin_machine only when set, see RawHit.encode).
RAW_HIT_FIELDS = tuple(f.name for f in fields(RawHit) if f.name not in ("origin", "origin_machine"))


@dataclass(slots=True)
class DeadLetter:
    """Input that could not be used, with why. The edge's go through hits.dlq to ClickHouse dead_letters; the
    processor's are written there with the batch that made them (processors.batch_loop)."""

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
        """Raises ValueError for anything but a JSON object with fields of their types (typed_fields)."""
        obj: Any = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a DeadLetter must be a JSON object")
        known = typed_fields(cls, obj, "DeadLetter")
        if "received_at" in known and not in_window(known["received_at"]):  # ClickHouse: refused, or 9999-12-31
            raise ValueError(f"DeadLetter.received_at {known['received_at']!r} is not between 2000 and 2200")
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        """The fields in order (what encode writes; orjson's dataclass option cannot read a compiled one)."""
        return {name: getattr(self, name) for name in DEAD_LETTER_FIELDS}


DEAD_LETTER_FIELDS = tuple(f.name for f in fields(DeadLetter))
