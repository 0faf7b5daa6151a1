"""The runner's pure parts: spool folders per worker, spools left by a former layout, quiet 4xx logs, the
shutdown bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest
from aiohttp import http_exceptions
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from ingest.spool import Spool
from ingest.workers import STUCK_EXIT_CODE, QuietBadRequests, cleanup_within, orphan_spools, worker_spool
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


async def test_a_shutdown_within_its_bound_ends_normally() -> None:
    ended: list[int] = []
    closed: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0.01)
        closed.append("closed")

    await cleanup_within(cleanup(), 5.0, end_process=ended.append)
    assert closed == ["closed"]
    assert ended == []


async def test_a_shutdown_error_is_raised_not_swallowed() -> None:
    async def cleanup() -> None:
        raise OSError("spool folder gone")

    with pytest.raises(OSError, match="spool folder gone"):
        await cleanup_within(cleanup(), 5.0, end_process=lambda code: None)


async def test_a_shutdown_past_its_bound_logs_what_it_waits_on_and_ends_the_process(
        caplog: pytest.LogCaptureFixture) -> None:
    """An await that swallows cancellation (as a wedged library close can) must not hold the process."""
    ended: list[int] = []
    released = asyncio.Event()

    async def close_that_ignores_cancel() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)

    async def cleanup() -> None:
        await close_that_ignores_cancel()

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="ingest.workers"):
        await cleanup_within(cleanup(), 0.3, end_process=ended.append)
    took = time.monotonic() - started
    released.set()  # let the stuck task end, so the test's loop can close
    await asyncio.sleep(0.05)
    assert ended == [STUCK_EXIT_CODE]
    assert 0.3 <= took < 2.0
    assert "close_that_ignores_cancel" in caplog.text  # where it was stuck
    assert "overran its bound" in caplog.text
