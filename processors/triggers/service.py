"""Triggers in the embedded wiring (`pixeltrack serve`): fed by the LocalRunner, state kept in a local journal.

The in-process adapter of the trigger core (core.py): its input is `feed` (the LocalRunner's batches,
partition 0, with `full_wait` when the engine is over its bounds), its state store the journal file and
its letter sink the dead-letter file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import aiohttp
import orjson

from processors.triggers.core import Incoming, TriggerCore
from processors.triggers.engine import DEFAULT_SETTLE_SECONDS, EngineLimits, TriggerEngine
from processors.triggers.records import StateRecord, TriggerDeadLetter, named_recipients
from processors.triggers.rules import RuleSet
from processors.triggers.webhook import RetryPolicy
from schemas.records import Record

log = logging.getLogger(__name__)

STATE_FILE = "triggers-state.jsonl"
DLQ_FILE = "triggers-dlq.jsonl"


def open_private(path: Path, append: bool) -> BinaryIO:
    """`path` opened for writing, owner-only: trigger state and dead letters hold recipient ids, action
    bodies and webhook answers. Its folder is created 0700; a file an earlier version left 0644 is
    narrowed to 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab" if append else "wb")


class StateJournal:
    """StateRecords as JSON lines, appended and fsynced; the last line per key wins. Rewritten without
    superseded and expired lines when opened and after every `compact_after` appended lines, so the
    file holds about one line per live key."""

    def __init__(self, path: Path, compact_after: int = 200_000) -> None:
        self.path = path
        self._compact_after = compact_after
        self._appended = 0

    def load(self, now: float) -> list[StateRecord]:
        """The live records (oldest first), after compacting the file."""
        latest = self._latest(now)
        self._rewrite(latest)
        return list(latest.values())

    def append(self, records: Iterable[StateRecord], now: float) -> None:
        lines = b"".join(r.encode() + b"\n" for r in records)
        if not lines:
            return
        with open_private(self.path, append=True) as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        self._appended += lines.count(b"\n")
        if self._appended >= self._compact_after:
            self._rewrite(self._latest(now))

    def _latest(self, now: float) -> dict[str, StateRecord]:
        latest: dict[str, StateRecord] = {}
        if not self.path.exists():
            return latest
        with self.path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = StateRecord.decode(line)
                except ValueError as exc:
                    log.warning("%s:%d skipped: %s", self.path, n, exc)  # e.g. a line cut by a crash
                    continue
                latest.pop(rec.key, None)  # keep the order of last writes
                latest[rec.key] = rec
        return {k: r for k, r in latest.items() if r.expires_at > now}

    def _rewrite(self, latest: dict[str, StateRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp, append=False) as f:
            f.write(b"".join(r.encode() + b"\n" for r in latest.values()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._appended = 0


def purge_journals(folder: Path, tenant: str, recipient: str) -> int:
    """Rewrites the journal and the dead-letter file in `folder` without the lines naming the recipient
    (records.named_recipients), each atomically (a new 0600 file, fsynced, renamed over the old), and
    removes what a rewrite cut short by a crash left (*.tmp). Returns the lines removed. Safe only while
    no one else writes there: a running service purges through _LocalFiles.forget, under its lock."""
    if not folder.is_dir():
        return 0
    for stale in folder.glob("*.tmp"):
        stale.unlink(missing_ok=True)
    removed = 0
    for name in (STATE_FILE, DLQ_FILE):
        path = folder / name
        if not path.exists():
            continue
        kept: list[bytes] = []
        here = 0
        with path.open("rb") as f:
            for line in f:
                if line.strip() and (tenant, recipient) in _line_names(line):
                    here += 1
                else:
                    kept.append(line)
        if not here:
            continue
        removed += here
        tmp = path.with_name(path.name + ".tmp")
        with open_private(tmp, append=False) as out:
            out.write(b"".join(kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return removed


def _line_names(line: bytes) -> set[tuple[str, str]]:
    """Who a journal line names; a line a crash cut (not JSON) by its text."""
    try:
        return named_recipients(orjson.loads(line))
    except orjson.JSONDecodeError:
        return named_recipients(line.decode("utf-8", "replace"))


class _LocalFiles:
    """The embedded state store and letter sink: the journal and the dead-letter file in `state_dir`
    (none kept without one). One lock orders their writes: first come, first served.

    Erasure: `forget` purges both files of a recipient's lines under that lock (so no append or
    compaction runs meanwhile; a rewrite from outside could race an append and lose it, or be undone by
    it), and from then on nothing naming the recipient is written: the outcome of a delivery already
    under way, a dead letter, a record of a change that arrives late."""

    def __init__(self, state_dir: Path | None, clock: Callable[[], float],
                 erased: Callable[[str, str], bool] | None = None) -> None:
        self.state_dir = state_dir
        self._erased_elsewhere = erased
        self.journal = StateJournal(state_dir / STATE_FILE) if state_dir is not None else None
        self._dlq_path = state_dir / DLQ_FILE if state_dir is not None else None
        self._clock = clock
        self._write_lock = asyncio.Lock()
        self._erased: set[tuple[str, str]] = set()  # (tenant, recipient) erased while this process runs

    def erased(self, record: StateRecord | TriggerDeadLetter) -> bool:
        """Whether `record` names a recipient erased: while this process runs (`forget`), or as the
        `erased` callable says (the processor's, which reads `erasures`: so also after a restart)."""
        if not self._erased and self._erased_elsewhere is None:
            return False
        if isinstance(record, StateRecord):  # names one recipient, in its fields and its body's
            named = {(record.tenant, record.recipient)}
            if record.payload is not None:
                named.add((str(record.payload.get("tenant") or ""), str(record.payload.get("recipient") or "")))
        else:
            named = named_recipients(asdict(record))
        if not self._erased.isdisjoint(named):
            return True
        elsewhere = self._erased_elsewhere
        return elsewhere is not None and any(r and elsewhere(t, r) for t, r in named)

    async def forget(self, tenant: str, recipient: str) -> int:
        """Writes nothing naming the recipient from now on, and purges the files of them (purge_journals);
        returns the lines removed."""
        self._erased.add((tenant, recipient))
        state_dir = self.state_dir
        if state_dir is None:
            return 0
        async with self._write_lock:
            return await asyncio.to_thread(purge_journals, state_dir, tenant, recipient)

    async def keep(self, changes: Sequence[tuple[int, StateRecord]]) -> None:
        journal = self.journal
        records = [rec for _, rec in changes if not self.erased(rec)]
        if not records or journal is None:
            return
        async with self._write_lock:
            await asyncio.to_thread(journal.append, records, self._clock())

    async def send(self, letters: Sequence[TriggerDeadLetter]) -> None:
        """Appends to the dead-letter file, one fsync for all of them."""
        path = self._dlq_path
        letters = [letter for letter in letters if not self.erased(letter)]
        if path is None or not letters:
            return
        lines = b"".join(letter.encode() + b"\n" for letter in letters)

        def write() -> None:
            with open_private(path, append=True) as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())

        async with self._write_lock:
            await asyncio.to_thread(write)


class TriggerService:
    """The rules over the embedded wiring's classified events. Wire it as

        triggers = TriggerService(rules, state_dir=data_dir / "triggers", settle_seconds=…, max_attempts=…)
        runner = LocalRunner(bus, processor, writer, …, on_classified=triggers.feed)
        task = asyncio.create_task(triggers.run(stop))

    `feed` takes the LocalRunner's batches of events.classified records and returns at once. While the
    engine is over its soft bounds (a receiver down for long, deliveries piling up) it waits up to
    `full_wait` seconds for room, then sets the batch's events aside in the dead-letter file (reason
    `engine_full`) rather than hold up the runner: the analytics go on whatever a webhook does.
    `run` releases settled events, checks deadlines and delivers, until `stop` is set.

    Kept state (what fired, due actions, counting windows) is journalled in `state_dir` before anything
    is delivered, so a restart neither fires again nor forgets an action still due; dead letters go to
    `state_dir`/triggers-dlq.jsonl. Events still settling when the process stops are lost, as the
    in-process bus is (a crash of serve loses them anyway). Nothing naming a recipient that
    `erased(tenant, recipient)` says was erased is written (see `forget`).
    """

    def __init__(self, rules: RuleSet, *, state_dir: Path | None, settle_seconds: float = DEFAULT_SETTLE_SECONDS,
                 max_attempts: int = 10, retry: RetryPolicy | None = None, limits: EngineLimits | None = None,
                 max_in_flight: int = 16, tick_seconds: float = 0.1, shutdown_grace: float = 5.0,
                 full_wait: float = 1.0, clock: Callable[[], float] = time.time,
                 erased: Callable[[str, str], bool] | None = None) -> None:
        self._tick = tick_seconds
        self._grace = shutdown_grace
        self._clock = clock
        self._full_wait = full_wait
        self._files = _LocalFiles(state_dir, clock, erased)
        self.core = TriggerCore(rules, self._files, self._files, retry or RetryPolicy(max_attempts=max_attempts),
                                max_in_flight, clock)
        self.engine = self.core.engines[0] = TriggerEngine(rules, settle_seconds, limits)
        if self._files.journal is not None:
            self.engine.restore(self._files.journal.load(clock()), clock())
        self.core.dispatch(self.engine.due_actions(), 0)  # queued until run() starts
        self._running = False
        self._room = asyncio.Event()  # set by run() whenever the engine is under its soft bounds
        self.set_aside = 0

    @property
    def delivered(self) -> int:
        return self.core.delivered

    @property
    def dead_lettered(self) -> int:
        return self.core.dead_lettered

    @property
    def undecodable(self) -> int:
        return self.core.undecodable

    async def feed(self, records: Sequence[Record]) -> None:
        """The LocalRunner's `on_classified` callback."""
        if self._running and self.engine.full:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._full_wait):
                    await self._room.wait()
            if self.engine.full:
                now = self._clock()
                log.error("triggers: the engine is full (%d settling, %d due); %d events set aside",
                          self.engine.held, self.engine.due, len(records))
                self.set_aside += len(records)
                await self._files.send([TriggerDeadLetter("event", "engine_full", "", now,
                                                          raw=r.value[:512].decode("utf-8", "replace"))
                                        for r in records])
                return
        await self.core.take({0: [Incoming(r.value) for r in records]}, advance=False)

    async def forget(self, tenant: str, recipient: str) -> int:
        """Erases a recipient `pixeltrack forget` erased (through serve's admin endpoint): what the engine
        holds of them is dropped (events settling, windows counting, actions due), nothing naming them is
        written any more, and the journal and dead-letter file are purged of them. Returns the lines
        removed. An action already handed to a delivery is delivered; its outcome is not journalled."""
        self.engine.forget(tenant, recipient)
        return await self._files.forget(tenant, recipient)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: every tick_seconds, acts on what has settled and delivers; then waits up to
        shutdown_grace for running deliveries (the others stay due in the journal)."""
        async with aiohttp.ClientSession() as session:
            self.core.start(session)
            self._running = True
            try:
                while not stop.is_set():
                    await self.core.take({}, advance=True)
                    if not self.engine.full:
                        self._room.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._tick)
            finally:
                self._running = False
                self._room.set()
                await self.core.stop(self._grace)
