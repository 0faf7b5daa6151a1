"""The edge's journal: every answered hit is appended to disk before the answer; Kafka acks trim it.

Longer than 400 lines because the journal is one Spool: its frame format, its writer with batched fsyncs, its
replay and its trimming by Kafka's acknowledgements share the position and checkpoint invariants (what is on
disk is answered, what is trimmed is acknowledged); the worker-folder naming helpers beside it are small.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from schemas.records import Record

log = logging.getLogger(__name__)

# Record frame: body length (u32), CRC-32 of the body (u32), body. Body: topic length (u16), topic,
# key length (i32, -1 = no key), key, value. A frame is written with one os.write, so a killed process
# (kill -9) leaves whole frames in the page cache; only a machine crash (or a full disk) can tear the
# tail, which the reader detects by length and checksum and skips with a log line.
FRAME = struct.Struct("<II")
TOPIC_LEN = struct.Struct("<H")
KEY_LEN = struct.Struct("<i")
CHECKPOINT = struct.Struct("<QQ")  # segment id, byte offset: everything before it is acknowledged
MAX_BODY = 1 << 20
READ_CHUNK = 256 * 1024  # catch-up reads this much at a time: memory stays flat whatever the backlog

# The spool's layout on disk, named here only (the workers and the adoption of a former worker's spool
# use these): an edge's spool_dir holds a folder per worker, `worker-<i>`; a spool folder holds its
# segments `seg-<12-digit id>.log`, the checkpoint (replaced through `checkpoint.tmp`) and the lock.
WORKER_PREFIX = "worker-"
SEGMENT_PREFIX = "seg-"
SEGMENT_RE = re.compile(rf"^{SEGMENT_PREFIX}(\d{{12}})\.log$")
CHECKPOINT_FILE = "checkpoint"
LOCK_FILE = "lock"


def worker_folder(spool_dir: Path, index: int) -> Path:
    """Worker `index`'s spool folder in an edge's spool_dir."""
    return spool_dir / f"{WORKER_PREFIX}{index}"


def worker_index(name: str) -> int | None:
    """The worker whose spool folder is named `name`; None for any other name."""
    digits = name[len(WORKER_PREFIX):]
    return int(digits) if name.startswith(WORKER_PREFIX) and digits.isdigit() else None


def segment_name(segment: int) -> str:
    return f"{SEGMENT_PREFIX}{segment:012d}.log"


def is_journal_file(name: str) -> bool:
    """A file of the journal itself (a segment, the checkpoint or its temp file), not the folder's lock."""
    return name.startswith((SEGMENT_PREFIX, CHECKPOINT_FILE))


class Position(NamedTuple):
    """A place in the journal: (segment id, byte offset within it). Ordered as a tuple."""

    segment: int
    offset: int


class SyncWork(NamedTuple):
    """See Spool.take_sync_work."""

    fds: list[int]
    unlink: list[Path]
    checkpoint: tuple[Path, Position] | None = None

    def run(self) -> None:
        """fsync then close each descriptor, write the checkpoint, then delete the files (blocking: for
        a worker thread)."""
        for fd in self.fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                log.error("spool fsync failed: %s", exc)
            try:
                os.close(fd)
            except OSError as exc:  # never fatal: the syncer must go on
                log.error("spool close failed: %s", exc)
        if self.checkpoint is not None:
            try:
                write_checkpoint(*self.checkpoint)
            except OSError as exc:  # the old checkpoint stands: more is replayed, never less
                log.error("spool checkpoint not written: %s", exc)
        for path in self.unlink:
            path.unlink(missing_ok=True)


def write_checkpoint(path: Path, pos: Position) -> None:
    """Replaces the checkpoint atomically (a temp file, then rename)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(CHECKPOINT.pack(pos.segment, pos.offset))
    os.replace(tmp, path)


class SpoolInUse(RuntimeError):
    """Another live process (or another Spool in this one) holds the folder's lock."""


_topic_prefixes: dict[str, bytes] = {}


def _topic_prefix(topic: str) -> bytes:
    prefix = _topic_prefixes.get(topic)
    if prefix is None:
        raw = topic.encode()
        prefix = _topic_prefixes[topic] = TOPIC_LEN.pack(len(raw)) + raw
    return prefix


def encode_frame(record: Record) -> bytes:
    key = record.key
    if key is None:
        body = _topic_prefix(record.topic) + b"\xff\xff\xff\xff" + record.value  # KEY_LEN.pack(-1)
    else:
        body = _topic_prefix(record.topic) + KEY_LEN.pack(len(key)) + key + record.value
    return FRAME.pack(len(body), zlib.crc32(body)) + body


def decode_body(body: bytes) -> Record:
    (tlen,) = TOPIC_LEN.unpack_from(body, 0)
    topic = body[2:2 + tlen].decode()
    (klen,) = KEY_LEN.unpack_from(body, 2 + tlen)
    at = 6 + tlen
    key = None if klen < 0 else body[at:at + klen]
    return Record(topic, key, body[at + max(klen, 0):])


class Spool:
    """Append-only segment files with a checkpoint of what the transport acknowledged.

    - `append` writes one frame with one unbuffered os.write (no fsync: `take_sync_work` hands the
      descriptors to fsync to a worker thread, off the request path) and returns the position after it.
      A failed or short write (full disk) is not acknowledged to the caller: the torn segment is closed
      where its last whole frame ends and appends go on in a new one.
    - `ack(pos)` records that everything before `pos` reached Kafka and deletes wholly acknowledged
      segments. The checkpoint is replaced atomically with the sync work (and at close); losing it
      replays more, never less.
    - `read_from(pos)` returns (record, position after it) in order, across segments, reading bounded
      chunks so a catch-up after a long outage costs no more memory than a short one.
    - Size bound: past `max_bytes` of unacknowledged data `append` refuses (returns None). Policy: the
      edge still answers, counts the hit as dropped, logs it, and reports not-ready so the load
      balancer sends traffic to other edges; it resumes as soon as Kafka takes the backlog.
    - One owner: the folder is locked (flock) while a Spool has it open, so two edges (or a restarted
      worker and its not-yet-dead predecessor) never interleave frames; the kernel drops the lock of a
      killed process.
    """

    def __init__(self, folder: Path, segment_bytes: int = 64 << 20, max_bytes: int = 2 << 30) -> None:
        self.folder = folder
        # Owner-only, like its files: the journal holds recipients' tokens and addresses.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolInUse(f"spool folder {folder} is in use by another process") from None
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._ckpt_path = folder / CHECKPOINT_FILE
        self.acked = self._read_checkpoint()
        self._ckpt_dirty = False  # acked moved past what the checkpoint file says
        existing = self.segments()
        # Never append to a segment a previous process wrote: its tail may be torn.
        self._active_id = (existing[-1] + 1) if existing else max(1, self.acked.segment)
        self._active_fd = -1
        self._active_size = 0
        self._sizes = {s: (folder / segment_name(s)).stat().st_size for s in existing}
        self._to_sync: list[int] = []  # descriptors of rotated segments, not yet fsynced
        self._to_unlink: list[Path] = []  # acknowledged segments, to delete off the event loop
        self._dir_dirty = False
        self._open_active()
        if self.acked.segment < (existing[0] if existing else self._active_id):
            self.acked = Position(existing[0] if existing else self._active_id, 0)
        self._pending = 0
        self._recount()

    def segments(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := SEGMENT_RE.match(p.name)))

    def _read_checkpoint(self) -> Position:
        try:
            data = self._ckpt_path.read_bytes()
            seg, off = CHECKPOINT.unpack(data[:CHECKPOINT.size])
            return Position(seg, off)
        except (OSError, struct.error):
            return Position(0, 0)

    def _open_active(self) -> None:
        path = self.folder / segment_name(self._active_id)
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active_size = os.fstat(self._active_fd).st_size
        self._sizes[self._active_id] = self._active_size
        self._dir_dirty = True

    def _rotate(self) -> None:
        """Goes on in a new segment. Raises OSError, with nothing changed, when it cannot be opened (no
        descriptors left under a connection flood, a full disk)."""
        new_id = self._active_id + 1
        fd = os.open(self.folder / segment_name(new_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._to_sync.append(self._active_fd)  # fsynced (its last frames too), then closed, by the syncer
        self._active_id, self._active_fd, self._active_size = new_id, fd, size
        self._sizes[new_id] = size
        self._dir_dirty = True

    def _recount(self) -> None:
        acked = self.acked
        total = 0
        for seg, size in self._sizes.items():
            if seg > acked.segment:
                total += size
            elif seg == acked.segment:
                total += size - acked.offset
        self._pending = total

    @property
    def end(self) -> Position:
        return Position(self._active_id, self._active_size)

    def pending_bytes(self) -> int:
        return self._pending

    def segment_count(self) -> int:
        return len(self._sizes)

    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def append(self, record: Record) -> Position | None:
        """Writes one record; its position, or None when refused (at the bound, or the write failed)."""
        frame = encode_frame(record)
        n = len(frame)
        if self._pending + n > self.max_bytes:
            return None
        if self._active_size and self._active_size + n > self.segment_bytes:
            try:
                self._rotate()
            except OSError as exc:  # the segment grows past its size instead; rotation is tried again next time
                log.error("spool %s: cannot open a new segment: %s", self.folder, exc)
        try:
            written = os.write(self._active_fd, frame)
        except OSError as exc:
            written = -1
            error: OSError | None = exc
        else:
            error = None
        if written != n:
            self._write_failed(written, error)
            return None
        size = self._active_size = self._active_size + n
        self._sizes[self._active_id] = size
        self._pending += n
        return Position(self._active_id, size)

    def _write_failed(self, written: int, error: OSError | None) -> None:
        # A short write leaves a torn frame at the tail. Frames after it would be unreadable, so this
        # segment ends at its last whole frame (readers stop there) and appends go on in a new one.
        log.error("spool %s: write failed (%s); continuing in a new segment",
                  segment_name(self._active_id), error or f"short write of {written} bytes")
        self._sizes[self._active_id] = self._active_size
        try:
            self._rotate()
        except OSError as exc:  # cannot even open a new segment: keep the old one, try again next time
            log.error("spool %s: cannot open a new segment: %s", self.folder, exc)

    def sync_fd(self) -> int:
        """A duplicate of the active segment's descriptor (the caller closes it)."""
        return os.dup(self._active_fd)

    def take_sync_work(self) -> SyncWork:
        """What to make durable, owned by the caller (a worker thread may do it): descriptors to fsync
        and close (the segments rotated out since the last call, a duplicate of the active one so a
        rotation meanwhile cannot pull it away, the folder when a segment was created), and the
        acknowledged segment files to delete."""
        fds, self._to_sync = self._to_sync, []
        fds.append(os.dup(self._active_fd))
        if self._dir_dirty:
            self._dir_dirty = False
            fds.append(os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY))
        unlink, self._to_unlink = self._to_unlink, []
        checkpoint = (self._ckpt_path, self.acked) if self._ckpt_dirty else None
        self._ckpt_dirty = False
        return SyncWork(fds, unlink, checkpoint)

    def ack(self, pos: Position) -> None:
        """Everything before `pos` reached the transport. The checkpoint file is written with the next
        sync work, off the event loop (a rename costs milliseconds on some disks, once per publish):
        a crash in between replays the records acknowledged since, which processors drop by hit id."""
        if pos <= self.acked:
            return
        self.acked = pos
        self._ckpt_dirty = True
        for seg in [s for s in self._sizes if s < pos.segment]:
            # Unlinking a big file costs the kernel milliseconds: done with the next fsync, in a worker
            # thread. Until then it lies before the checkpoint, where no reader looks.
            self._to_unlink.append(self.folder / segment_name(seg))
            del self._sizes[seg]
        self._recount()

    def read_from(self, start: Position, max_records: int) -> list[tuple[Record, Position]]:
        """Up to max_records from `start` on, in order; a torn or corrupt tail ends that segment."""
        out: list[tuple[Record, Position]] = []
        for seg in sorted(s for s in self._sizes if s >= start.segment):
            offset = start.offset if seg == start.segment else 0
            self._read_segment(seg, offset, max_records, out)
            if len(out) >= max_records:
                break
        return out

    def _read_segment(self, seg: int, offset: int, max_records: int,
                      out: list[tuple[Record, Position]]) -> None:
        path = self.folder / segment_name(seg)
        limit = self._sizes.get(seg, 0)  # the logical end: bytes a reader may trust
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in finally; reads happen in a loop
        except FileNotFoundError:
            return
        try:
            f.seek(offset)
            data = b""
            base = offset  # file offset of data[0]
            while len(out) < max_records:
                want = min(READ_CHUNK, limit - base - len(data))
                chunk = f.read(want) if want > 0 else b""
                if not chunk:
                    break
                data = data + chunk if data else chunk
                at = self._parse(seg, path.name, data, base, max_records, out)
                if at < 0:
                    return  # corrupt: the segment ends there
                base += at
                data = data[at:]
            if data and len(out) < max_records:
                log.warning("spool %s: %d trailing bytes of a torn record at byte %d; skipped",
                            path.name, len(data), base)
                self._truncate_logically(seg, base)
        finally:
            f.close()

    def _parse(self, seg: int, name: str, data: bytes, base: int, max_records: int,
               out: list[tuple[Record, Position]]) -> int:
        """Appends the whole frames of `data` to `out`; returns how many bytes were used, or -1 after a
        corrupt frame (which ends the segment)."""
        at = 0
        end = len(data)
        while at + FRAME.size <= end and len(out) < max_records:
            length, crc = FRAME.unpack_from(data, at)
            if length > MAX_BODY:
                return self._corrupt(seg, name, base + at)
            if at + FRAME.size + length > end:
                break  # incomplete here: the next chunk (or a torn tail)
            body = data[at + FRAME.size: at + FRAME.size + length]
            if zlib.crc32(body) != crc:
                return self._corrupt(seg, name, base + at)
            at += FRAME.size + length
            try:
                record = decode_body(body)
            except (struct.error, UnicodeDecodeError):
                log.warning("spool %s: undecodable record at byte %d; skipped", name, base + at)
                continue
            out.append((record, Position(seg, base + at)))
        return at

    def _corrupt(self, seg: int, name: str, at: int) -> int:
        log.warning("spool %s: torn or corrupt record at byte %d; skipping the rest of the segment", name, at)
        self._truncate_logically(seg, at)
        return -1

    def _truncate_logically(self, seg: int, at: int) -> None:
        # What follows is unusable: treat the segment as ending here.
        if seg != self._active_id:
            self._sizes[seg] = at
            self._recount()

    def close(self) -> None:
        if self._ckpt_dirty:
            self._ckpt_dirty = False
            try:
                write_checkpoint(self._ckpt_path, self.acked)
            except OSError as exc:
                log.error("spool checkpoint not written: %s", exc)
        for fd in self._to_sync:
            os.close(fd)
        self._to_sync = []
        for path in self._to_unlink:
            path.unlink(missing_ok=True)
        self._to_unlink = []
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
