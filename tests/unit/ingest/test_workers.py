"""The runner's pure parts: spool folders per worker, spools left by a former layout, the shutdown bound
(its quiet 4xx logs: test_serverlog.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from ingest.spool import Spool
from ingest.workers import orphan_spools, worker_settings, worker_spool
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


def test_the_spool_bound_is_the_edges_shared_by_its_workers(tmp_path: Path) -> None:
    """spool_max_bytes bounds the edge (its volume), not each worker: N workers get 1/N each, and their
    spools together refuse what the bound does not hold."""
    s = Settings(_env_file=None, edge_id="e", spool_max_bytes=4 << 20, spool_segment_bytes=1 << 16)  # type: ignore[call-arg]
    assert (worker_settings(s, 0, 1).edge_id, worker_settings(s, 0, 1).spool_max_bytes) == ("e", 4 << 20)
    shares = [worker_settings(s, i, 4) for i in range(4)]
    assert [w.edge_id for w in shares] == ["e-0", "e-1", "e-2", "e-3"]
    assert [w.spool_max_bytes for w in shares] == [1 << 20] * 4
    kept = 0
    record = Record("hits.raw", b"m", b"x" * 4000)
    for i, w in enumerate(shares):
        spool = Spool(worker_spool(tmp_path, i) or tmp_path, w.spool_segment_bytes, w.spool_max_bytes)
        while spool.append(record) is not None:
            kept += 1
        spool.close()
    assert 0 < kept * 4000 <= s.spool_max_bytes
