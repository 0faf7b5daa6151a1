"""A processor whose `process` a test replaces (to note or fail batches)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from processors.pipeline import HitProcessor


class _StandIn:
    def __init__(self, inner: HitProcessor, process: Callable[..., Any]) -> None:
        self._inner = inner
        self.process = process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def with_process(processor: HitProcessor, process: Callable[..., Any]) -> HitProcessor:
    """`processor` with `process` in place of its own method, everything else forwarded: a compiled
    HitProcessor (schemas.native) does not let a method be reassigned."""
    return cast(HitProcessor, _StandIn(processor, process))
