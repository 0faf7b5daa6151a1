"""Spool adoption: replaying, then removing, a spool no live edge writes to any more (a former worker's)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ingest.forwarder import Forwarder, HitQueue
from ingest.publisher import Publisher
from ingest.spool import LOCK_FILE, WORKER_PREFIX, Spool, SpoolInUse, is_journal_file
from schemas.aio import finish_within
from schemas.settings import Settings

log = logging.getLogger(__name__)


async def adopt_spool(folder: Path, settings: Settings, publisher: Publisher, owned: bool) -> None:
    """Replays a spool no live edge writes to any more (a former worker's), then removes its files.
    Skipped when another process still holds it; on shutdown what is left stays for the next start.
    `owned`: `publisher` is this replay's own, stopped when it ends."""
    try:
        spool = Spool(folder, settings.spool_segment_bytes, settings.spool_max_bytes)
    except SpoolInUse as exc:
        log.warning("not replaying %s: %s", folder, exc)
        return
    try:
        if spool.pending_bytes():
            log.info("replaying %d bytes left in %s", spool.pending_bytes(), folder)
            fwd = Forwarder(HitQueue(1), publisher, spool, publish_timeout=settings.publish_timeout_ms / 1000,
                            report=False)
            try:
                await fwd.replay_all()
            finally:
                if owned:
                    with contextlib.suppress(Exception):
                        await finish_within(publisher.stop(), 5.0)
        emptied = spool.pending_bytes() == 0
    finally:
        spool.close()
    if emptied:
        remove_spool_files(folder)
        log.info("replayed and removed %s", folder)


def remove_spool_files(folder: Path) -> None:
    """Removes an emptied spool: a former worker's folder entirely; at the spool root (which holds the
    worker folders) only the journal files."""
    for p in folder.iterdir():
        if is_journal_file(p.name) or (p.name == LOCK_FILE and folder.name.startswith(WORKER_PREFIX)):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
