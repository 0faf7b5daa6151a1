"""The spool: order, acknowledgement, rotation, bounds, restarts and torn tails."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ingest.spool import Position, Spool
from schemas.records import Record


def rec(i: int) -> Record:
    return Record("hits.raw", f"m-{i}".encode(), b'{"n": %d}' % i)


def test_append_read_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(20):
        assert spool.append(rec(i)) is not None
    assert len(spool.segments()) > 3
    got = spool.read_from(spool.acked, 1000)
    assert [r for r, _ in got] == [rec(i) for i in range(20)]
    # reading from a returned position continues right after it
    assert [r for r, _ in spool.read_from(got[9][1], 1000)] == [rec(i) for i in range(10, 20)]


def test_ack_trims_segments_and_survives_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(20):
        spool.append(rec(i))
    got = spool.read_from(spool.acked, 1000)
    before = len(spool.segments())
    spool.ack(got[11][1])
    assert len(spool.segments()) < before
    spool.close()
    again = Spool(tmp_path, segment_bytes=200)
    assert [r for r, _ in again.read_from(again.acked, 1000)] == [rec(i) for i in range(12, 20)]
    assert again.pending_bytes() > 0


def test_everything_acked_leaves_nothing_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        end = spool.append(rec(i))
    assert end is not None
    spool.ack(end)
    assert spool.pending_bytes() == 0
    assert spool.read_from(spool.acked, 10) == []


def test_size_bound_refuses_beyond_max(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1 << 16, max_bytes=1 << 20)
    big = Record("hits.raw", None, b"x" * 4000)
    accepted = sum(spool.append(big) is not None for _ in range(400))
    assert 200 < accepted < 300  # ~1 MiB / 4 KiB
    # acknowledging frees room again
    spool.ack(spool.end)
    assert spool.append(big) is not None


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_torn_or_corrupt_tail_is_skipped_with_a_log_line(tmp_path: Path, damage: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    for i in range(10):
        spool.append(rec(i))
    spool.close()
    seg = tmp_path / "seg-000000000001.log"
    data = seg.read_bytes()
    if damage == "truncate":
        seg.write_bytes(data[:-5])
    else:
        seg.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    with caplog.at_level(logging.WARNING):
        again = Spool(tmp_path)
        got = [r for r, _ in again.read_from(again.acked, 100)]
    assert got == [rec(i) for i in range(9)]
    assert "torn" in caplog.text
    # new records go to a new segment and are read after the damaged one
    again.append(rec(99))
    assert [r for r, _ in again.read_from(again.acked, 100)][-1] == rec(99)


def test_position_order() -> None:
    assert Position(1, 500) < Position(2, 0)
    assert Position(2, 10) > Position(2, 9)


def test_sync_fd_is_a_duplicate(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(rec(1))
    fd = spool.sync_fd()
    os.fsync(fd)
    os.close(fd)
    spool.append(rec(2))  # the spool's own descriptor is still open
    assert len(spool.read_from(spool.acked, 10)) == 2
