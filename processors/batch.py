"""Plain data a batch carries between the pipeline, the runners and the writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TableRows:
    """Rows for one table, in the column order given."""

    table: str
    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lookups:
    """What a batch needs to know from ClickHouse before it is processed (the runner asks, once)."""

    hit_ids: list[str] = field(default_factory=list)  # re-sent hits: are they stored already?
    conversion_keys: list[tuple[str, str]] = field(default_factory=list)  # (tenant, idempotency key)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (tenant, message): campaign, variant?
    delivery_keys: list[tuple[str, str, str, str]] = field(default_factory=list)  # (tenant, message, type, id)

    def __bool__(self) -> bool:
        """Whether there is anything to ask."""
        return bool(self.hit_ids or self.conversion_keys or self.messages or self.delivery_keys)


@dataclass(frozen=True, slots=True)
class BatchContext:
    """The answers to a batch's Lookups."""

    stored_hit_ids: Set[str] = frozenset()
    stored_conversion_keys: Set[tuple[str, str]] = frozenset()
    # (tenant, message) → (campaign, variant, recipient)
    messages: Mapping[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    stored_delivery_keys: Set[tuple[str, str, str, str]] = frozenset()  # of the batch's, those stored
