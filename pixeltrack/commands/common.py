"""What the command handlers share: settings with the command line's overrides, one-line failures."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pixeltrack.errors import CommandError
from schemas.runtime import run
from schemas.settings import Settings


def settings(**overrides: Any) -> Settings:
    """PIXELTRACK_* settings with the flags given (None: not given); a bad setting is one message."""
    try:
        base = Settings()
    except ValidationError as exc:
        raise SystemExit(f"pixeltrack: bad setting:\n{exc}") from None
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def listening_on(host: str, port: int, what: str) -> Iterator[None]:
    """A server's bind that fails because the address is taken: one line naming it and what changes it."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise CommandError(f"port {port} on {host} is not free (Address already in use): stop what holds it, "
                           f"or give {what}") from None


def run_on_kafka(coro: Coroutine[Any, Any, None], bootstrap: str) -> None:
    """run() for a command that needs Kafka at its start: a broker that does not answer is one line."""
    from aiokafka.errors import KafkaConnectionError

    from pixeltrack.compose.reach import kafka_unreachable

    try:
        run(coro)
    except KafkaConnectionError:
        raise CommandError(kafka_unreachable(bootstrap)) from None


def serve_folder(data: str) -> Path:
    """--data as given, when it is a folder (commands that read it never create it)."""
    path = Path(data)
    if not path.is_dir():
        raise CommandError(f"--data {data}: no such folder; give the folder `pixeltrack serve --data` uses")
    return path
