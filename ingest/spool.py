"""The edge's journal: every answered hit is appended to disk before the answer; Kafka acks trim it."""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.records import Record

log = logging.getLogger(__name__)

# Record frame: body length (u32), CRC-32 of the body (u32), body. Body: topic length (u16), topic,
# key length (i32, -1 = no key), key, value. A frame is written with one os.write, so a killed process
# (kill -9) leaves whole frames in the page cache; only a machine crash can tear the tail, which the
# reader detects by length and checksum and skips with a log line.
FRAME = struct.Struct("<II")
TOPIC_LEN = struct.Struct("<H")
KEY_LEN = struct.Struct("<i")
CHECKPOINT = struct.Struct("<QQ")  # segment id, byte offset: everything before it is acknowledged
MAX_BODY = 1 << 20
SEGMENT_RE = re.compile(r"^seg-(\d{12})\.log$")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the journal: (segment id, byte offset within it)."""

    segment: int
    offset: int


def encode_frame(record: Record) -> bytes:
    topic = record.topic.encode()
    key = record.key
    body = b"".join((TOPIC_LEN.pack(len(topic)), topic, KEY_LEN.pack(-1 if key is None else len(key)),
                     key or b"", record.value))
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

    - `append` writes one frame with one unbuffered os.write (no fsync: that runs off the request
      path, every `fsync_interval` via `sync()` from a worker thread) and returns the position after it.
    - `ack(pos)` records that everything before `pos` reached Kafka and deletes wholly acknowledged
      segments. The checkpoint is rewritten in place; losing it replays more, never less.
    - `read_from(pos)` yields (record, position after it) in order, across segments.
    - Size bound: past `max_bytes` of unacknowledged data `append` refuses (returns None). Policy: the
      edge still answers, counts the hit as dropped, logs it, and reports not-ready so the load
      balancer sends traffic to other edges; it resumes as soon as Kafka takes the backlog.
    """

    def __init__(self, folder: Path, segment_bytes: int = 64 << 20, max_bytes: int = 2 << 30) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._ckpt_path = folder / "checkpoint"
        self.acked = self._read_checkpoint()
        existing = self.segments()
        # Never append to a segment a previous process wrote: its tail may be torn.
        self._active_id = (existing[-1] + 1) if existing else max(1, self.acked.segment)
        self._active_fd = -1
        self._active_size = 0
        self._sizes = {s: (folder / self._name(s)).stat().st_size for s in existing}
        self._open_active()
        if self.acked.segment < (existing[0] if existing else self._active_id):
            self.acked = Position(existing[0] if existing else self._active_id, 0)

    @staticmethod
    def _name(segment: int) -> str:
        return f"seg-{segment:012d}.log"

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
        path = self.folder / self._name(self._active_id)
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active_size = os.fstat(self._active_fd).st_size
        self._sizes[self._active_id] = self._active_size

    def _rotate(self) -> None:
        os.close(self._active_fd)
        self._active_id += 1
        self._open_active()

    @property
    def end(self) -> Position:
        return Position(self._active_id, self._active_size)

    def pending_bytes(self) -> int:
        total = 0
        for seg, size in self._sizes.items():
            if seg > self.acked.segment:
                total += size
            elif seg == self.acked.segment:
                total += size - self.acked.offset
        return total

    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def append(self, record: Record) -> Position | None:
        frame = encode_frame(record)
        if self.pending_bytes() + len(frame) > self.max_bytes:
            return None
        if self._active_size and self._active_size + len(frame) > self.segment_bytes:
            self._rotate()
        os.write(self._active_fd, frame)
        self._active_size += len(frame)
        self._sizes[self._active_id] = self._active_size
        return Position(self._active_id, self._active_size)

    def sync_fd(self) -> int:
        """A duplicate of the active segment's descriptor, for an fsync in a worker thread (the caller
        closes it); a rotation meanwhile cannot pull the descriptor from under the fsync."""
        return os.dup(self._active_fd)

    def ack(self, pos: Position) -> None:
        if pos <= self.acked:
            return
        self.acked = pos
        tmp = self._ckpt_path.with_suffix(".tmp")
        tmp.write_bytes(CHECKPOINT.pack(pos.segment, pos.offset))
        os.replace(tmp, self._ckpt_path)
        for seg in [s for s in self._sizes if s < pos.segment]:
            (self.folder / self._name(seg)).unlink(missing_ok=True)
            del self._sizes[seg]

    def read_from(self, start: Position, max_records: int) -> list[tuple[Record, Position]]:
        """Up to max_records from `start` on, in order; a torn or corrupt tail ends that segment."""
        out: list[tuple[Record, Position]] = []
        for seg in sorted(s for s in self._sizes if s >= start.segment):
            offset = start.offset if seg == start.segment else 0
            for record, end in self._read_segment(seg, offset):
                out.append((record, Position(seg, end)))
                if len(out) >= max_records:
                    return out
        return out

    def _read_segment(self, seg: int, offset: int) -> Iterator[tuple[Record, int]]:
        path = self.folder / self._name(seg)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(self._sizes.get(seg, 0) - offset if seg == self._active_id else -1)
        except FileNotFoundError:
            return
        at = 0
        while at + FRAME.size <= len(data):
            length, crc = FRAME.unpack_from(data, at)
            body = data[at + FRAME.size: at + FRAME.size + length]
            if length > MAX_BODY or len(body) < length or zlib.crc32(body) != crc:
                log.warning("spool %s: torn or corrupt record at byte %d; skipping the rest of the segment",
                            path.name, offset + at)
                self._sizes[seg] = offset + at  # what follows is unusable: treat the segment as ending here
                return
            at += FRAME.size + length
            try:
                record = decode_body(body)
            except (struct.error, UnicodeDecodeError):
                log.warning("spool %s: undecodable record at byte %d; skipped", path.name, offset + at)
                continue
            yield record, offset + at
        if at < len(data):
            log.warning("spool %s: %d trailing bytes of a torn record; skipped", path.name, len(data) - at)
            self._sizes[seg] = offset + at

    def close(self) -> None:
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1
