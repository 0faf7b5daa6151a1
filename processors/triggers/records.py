"""Trigger records on the wire: actions, state (triggers.state, compacted) and dead letters (triggers.dlq)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from schemas.privacy import letter_recipients

# Status of one (rule, tenant, recipient, window) in triggers.state; the latest record per key wins.
COUNTING = "counting"  # opens_without_click: opens counted so far, no decision yet
DUE = "due"            # decided: the webhook must be delivered (the outbox entry; a restart delivers it)
FIRED = "fired"        # delivered (2xx): never again within `remember`
DEAD = "dead"          # given up after the last attempt: in triggers.dlq, never again within `remember`
CLOSED = "closed"      # cannot fire any more (a human click came within the window)
STATUSES = frozenset({COUNTING, DUE, FIRED, DEAD, CLOSED})
FINAL = frozenset({FIRED, DEAD, CLOSED})

RECORD_VERSION = 1


def window_of(message: str) -> str:
    """The window a rule fires at most once in for a recipient: the message (one email)."""
    return f"message:{message}"


def idempotency_key(rule: str, tenant: str, recipient: str, window: str) -> str:
    """Deterministic: the same rule, tenant, recipient and window always give the same key, on any
    runner and after any restart; receivers deduplicate deliveries on it. 128 bits, hex."""
    raw = "\x1f".join(("pixeltrack.trigger.v1", rule, tenant, recipient, window)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Action:
    """A decided webhook call. `payload` is the JSON body; its bytes are the same on every attempt and
    after a restart (sorted keys), so a receiver sees one body per idempotency key."""

    key: str
    rule: str
    webhook: str
    payload: dict[str, Any]

    def body(self) -> bytes:
        return orjson.dumps(self.payload, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class StateRecord:
    """The latest state of one rule for one recipient and window; Kafka key = `key` (the idempotency key).
    Times are epoch seconds; the record is forgotten after `expires_at`."""

    key: str
    status: str
    rule: str
    tenant: str
    recipient: str
    window: str
    updated_at: float
    expires_at: float
    webhook: str = ""
    payload: dict[str, Any] | None = None
    """DUE: the webhook body (so a restart delivers the same body)."""
    opens: tuple[tuple[str, float], ...] = ()
    """COUNTING: (hit id, ts) of the opens counted so far."""
    campaign: str = ""
    variant: str = ""
    message: str = ""
    sent_at: float = 0.0
    attempts: int = 0
    reason: str = ""
    v: int = RECORD_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> StateRecord:
        """Raises ValueError naming what is wrong."""
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("a state record must be a JSON object")
        if obj.get("v") != RECORD_VERSION:
            raise ValueError(f"unknown state record version {obj.get('v')!r}")
        if obj.get("status") not in STATUSES:
            raise ValueError(f"unknown status {obj.get('status')!r}")
        try:
            opens = tuple((str(h), float(t)) for h, t in obj.get("opens") or ())
            rec = cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj and k != "opens"}, opens=opens)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state record fields: {exc}") from None
        if not (isinstance(rec.key, str) and isinstance(rec.expires_at, int | float)
                and (rec.payload is None or isinstance(rec.payload, dict))):
            raise ValueError("state record field of the wrong type")
        return rec


def action_record(action: Action, status: str, now: float, expires_at: float, attempts: int = 0,
                  reason: str = "") -> StateRecord:
    """The state record of an action: DUE carries its body; FIRED and DEAD only mark the key."""
    p = action.payload
    return StateRecord(action.key, status, action.rule, str(p.get("tenant", "")), str(p.get("recipient", "")),
                       str(p.get("window", "")), now, expires_at, action.webhook,
                       action.payload if status == DUE else None, campaign=str(p.get("campaign", "")),
                       variant=str(p.get("variant", "")), message=str(p.get("message", "")),
                       attempts=attempts, reason=reason)


@dataclass(frozen=True, slots=True)
class TriggerDeadLetter:
    """An action given up on (`kind` "action"), or a triggers input that could not be read (`kind`
    "event"), with why. Kafka topic triggers.dlq, key = the idempotency key (actions)."""

    kind: str
    reason: str  # short code: http_500, connection_error, timeout, http_404, unknown_webhook, undecodable, ...
    detail: str
    dead_at: float
    key: str = ""
    rule: str = ""
    webhook: str = ""
    url: str = ""
    attempts: int = 0
    first_attempt_at: float = 0.0
    last_status: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    v: int = RECORD_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> TriggerDeadLetter:
        obj = orjson.loads(value)
        if not isinstance(obj, dict):
            raise ValueError("a trigger dead letter must be a JSON object")
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})


def named_recipients(value: Any) -> set[tuple[str, str]]:
    """Every (tenant, recipient) a trigger record names (a state record, a dead letter, an action's body,
    decoded from JSON): each object's `recipient` with its `tenant`, and whatever a text in it names by
    schemas.privacy.letter_recipients (the rule `forget` deletes dead letters by): an event or record
    kept as received in `raw`, cut or not, a token. `pixeltrack forget` purges the journals by it."""
    found: set[tuple[str, str]] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            recipient = v.get("recipient")
            if isinstance(recipient, str) and recipient:
                found.add((str(v.get("tenant") or ""), recipient))
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, str):
            found.update(letter_recipients("", v, ()))
    return found
