"""The runner's pure parts: spool folders per worker, spools left by a former layout, quiet 4xx logs, the
shutdown bound."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import http_exceptions
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from ingest.spool import Spool
from ingest.workers import QuietBadRequests, orphan_spools, worker_spool
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring


def test_each_worker_has_its_own_spool(tmp_path: Path) -> None:
    assert worker_spool(tmp_path, 3) == tmp_path / "worker-3"
    assert worker_spool(None, 0) is None


def test_spools_of_former_workers_are_shared_out(tmp_path: Path) -> None:
    for j in range(6):
        (tmp_path / f"worker-{j}").mkdir()
    (tmp_path / "other").mkdir()
    assert orphan_spools(tmp_path, 0, 2) == [tmp_path / "worker-2", tmp_path / "worker-4"]
    assert orphan_spools(tmp_path, 1, 2) == [tmp_path / "worker-3", tmp_path / "worker-5"]
    assert orphan_spools(tmp_path, 0, 6) == []
    (tmp_path / "seg-000000000001.log").write_bytes(b"")  # a single-process edge of an earlier version
    assert orphan_spools(tmp_path, 0, 6) == [tmp_path]
    assert orphan_spools(tmp_path, 1, 6) == []
    assert orphan_spools(tmp_path / "missing", 0, 1) == []


async def test_a_former_workers_spool_is_replayed_and_removed(tmp_path: Path, settings: Settings,
                                                              keyring: Keyring) -> None:
    old = Spool(tmp_path / "worker-5")
    for i in range(30):
        old.append(Record("hits.raw", b"m", b"%d" % i))
    old.close()
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus), keyring=keyring, spool_dir=tmp_path / "worker-0",
                     adopt=[tmp_path / "worker-5"])
    async with TestClient(TestServer(app, host="127.0.0.1")):
        got = [await asyncio.wait_for(bus.get(), 5) for _ in range(30)]
        for _ in range(100):
            if not (tmp_path / "worker-5").exists():
                break
            await asyncio.sleep(0.02)
    assert [int(r.value) for r in got] == list(range(30))
    assert not (tmp_path / "worker-5").exists()


def test_malformed_requests_do_not_fill_the_log() -> None:
    quiet = QuietBadRequests()

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (),
                                 (type(exc), exc, None))

    assert not quiet.filter(record(http_exceptions.LineTooLong("x", "8190")))
    assert not quiet.filter(record(http_exceptions.BadHttpMethod("BREW")))
    assert quiet.filter(record(RuntimeError("a real error")))
    assert quiet.filter(logging.LogRecord("aiohttp.server", logging.INFO, __file__, 1, "hello", (), None))
