"""The spool: order, acknowledgement, rotation, bounds, restarts and torn tails."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from ingest.spool import (
    CHECKPOINT_FILE,
    LOCK_FILE,
    Position,
    Spool,
    SpoolInUse,
    is_journal_file,
    segment_name,
    worker_folder,
    worker_index,
)
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
    spool.take_sync_work().run()
    assert len(spool.segments()) < before
    spool.close()
    again = Spool(tmp_path, segment_bytes=200)
    assert [r for r, _ in again.read_from(again.acked, 1000)] == [rec(i) for i in range(12, 20)]
    assert again.pending_bytes() > 0


def test_the_spool_folder_and_its_files_are_owner_only(tmp_path: Path) -> None:
    """The journal holds tokens (recipient ids) and client addresses: a 0700 folder of 0600 files, also
    under a permissive umask."""
    old_umask = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool" / "worker-0", segment_bytes=200)
        for i in range(20):
            spool.append(rec(i))
        got = spool.read_from(spool.acked, 1000)
        spool.ack(got[11][1])
        spool.take_sync_work().run()
        spool.close()
    finally:
        os.umask(old_umask)
    folder = tmp_path / "spool" / "worker-0"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.iterdir())
    assert len(files) > 2  # the lock, segments and the checkpoint
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


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


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolInUse, match="in use"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()  # the lock goes with the owner


def test_failed_write_is_refused_and_appends_go_on_in_a_new_segment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        assert spool.append(rec(i)) is not None
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:  # a full disk: part of the frame, then no more
        return real_write(fd, data[:7])

    monkeypatch.setattr(os, "write", short_write)
    with caplog.at_level(logging.ERROR):
        assert spool.append(rec(3)) is None
    assert "write failed" in caplog.text

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    assert spool.append(rec(4)) is None
    monkeypatch.setattr(os, "write", real_write)
    assert spool.append(rec(5)) is not None
    # The torn frame ends its segment; nothing before or after it is lost.
    assert [r for r, _ in spool.read_from(spool.acked, 100)] == [rec(0), rec(1), rec(2), rec(5)]
    spool.close()
    again = Spool(tmp_path)
    assert [r for r, _ in again.read_from(again.acked, 100)] == [rec(0), rec(1), rec(2), rec(5)]


def test_a_long_backlog_is_read_in_bounded_chunks(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=8 << 20)
    big = [Record("hits.raw", f"m-{i}".encode(), b"v" * (700 + i % 300)) for i in range(3000)]
    for r in big:
        spool.append(r)
    got: list[Record] = []
    pos = spool.acked
    while chunk := spool.read_from(pos, 250):  # frames straddle READ_CHUNK boundaries
        got += [r for r, _ in chunk]
        pos = chunk[-1][1]
    assert got == big
    assert spool.pending_bytes() == spool.total_bytes()
    spool.ack(pos)
    assert spool.pending_bytes() == 0


def test_pending_bytes_follow_appends_acks_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    ends = [spool.append(rec(i)) for i in range(12)]
    assert spool.pending_bytes() == spool.total_bytes()
    assert ends[5] is not None
    spool.ack(ends[5])
    after = spool.pending_bytes()
    assert 0 < after < spool.total_bytes()
    spool.close()
    again = Spool(tmp_path, segment_bytes=300)
    assert again.pending_bytes() == after
    assert len(again.read_from(again.acked, 100)) == 6


def test_sync_work_covers_rotated_segments_and_the_folder(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        spool.append(rec(i))  # several rotations
    work = spool.take_sync_work()
    assert len(work.fds) >= 3  # rotated segments + the active one + the folder
    work.run()
    before = set(spool.segments())
    spool.ack(spool.end)
    assert set(spool.segments()) == before  # deleting is left to the sync work, off the event loop
    rest = spool.take_sync_work()
    assert len(rest.fds) == 1  # nothing rotated since: only the active segment
    rest.run()
    assert spool.segments() == [max(before)]
    spool.close()


def test_a_segment_that_cannot_be_opened_loses_no_hit_and_no_descriptor(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the next segment fails once (no descriptors left under a connection flood, a full disk):
    the record goes into the current segment, rotation is tried again later, and the syncer closes
    each old descriptor once (it closed one twice, died on EBADF, and stopped fsyncing for good)."""
    import errno

    import ingest.spool as spool_module

    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    real_open, failures = os.open, [0]

    def flaky_open(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".log") and failures[0]:
            failures[0] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(spool_module.os, "open", flaky_open)
    positions = []
    for i in range(12):
        failures[0] = 1 if i == 4 else 0
        positions.append(spool.append(Record("hits.raw", b"m", b"x" * 900 + str(i).encode())))
    monkeypatch.setattr(spool_module.os, "open", real_open)
    assert None not in positions
    work = spool.take_sync_work()
    assert len(set(work.fds)) == len(work.fds)
    work.run()
    assert [r.value[900:].decode() for r, _ in spool.read_from(spool.acked, 100)] == [str(i) for i in range(12)]


def test_the_layout_on_disk_is_named_in_one_place(tmp_path: Path) -> None:
    """Workers, adoption and the spool itself use these names: pinned, since spools written by an
    earlier version must still be found and replayed."""
    assert worker_folder(tmp_path, 3) == tmp_path / "worker-3"
    assert [worker_index(n) for n in ("worker-0", "worker-12", "worker-", "worker-x", "seg-1", "w-1")] == [
        0, 12, None, None, None, None]
    assert segment_name(7) == "seg-000000000007.log"
    assert [is_journal_file(n) for n in ("seg-000000000007.log", "checkpoint", "checkpoint.tmp", "lock")] == [
        True, True, True, False]
    folder = worker_folder(tmp_path, 0)
    spool = Spool(folder, segment_bytes=200)
    for i in range(5):
        spool.append(rec(i))
    spool.ack(spool.read_from(spool.acked, 1000)[2][1])
    spool.take_sync_work().run()
    segments = spool.segments()
    spool.close()
    # what the spool writes is what the names say
    names = sorted(p.name for p in folder.iterdir())
    assert segments
    assert names == sorted([CHECKPOINT_FILE, LOCK_FILE, *(segment_name(s) for s in segments)])
    assert all(is_journal_file(n) for n in names if n != LOCK_FILE)
