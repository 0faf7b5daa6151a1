"""The forwarder's modes: direct from memory, catch-up from the spool, and back; bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from ingest.forwarder import Forwarder, HitQueue, Pending
from ingest.spool import Spool
from schemas.records import REPLAY_HEADER, Record
from tests.plugins.waiting import eventually


class SwitchablePublisher:
    """Our Publisher protocol with a switch for "the transport is down"."""

    def __init__(self) -> None:
        self.up = True
        self.got: list[Record] = []
        self.resets = 0

    async def start(self) -> None:
        if not self.up:
            raise ConnectionError("down")

    async def publish(self, records: Sequence[Record]) -> None:
        if not self.up:
            raise ConnectionError("down")
        self.got.extend(records)

    async def stop(self) -> None:
        return None

    async def reset(self) -> None:
        self.resets += 1

    def healthy(self) -> bool:
        return self.up


def rec(i: int) -> Record:
    return Record("hits.raw", b"k", b"%d" % i)


async def test_outage_goes_through_the_spool_in_order(tmp_path: Path) -> None:
    pub = SwitchablePublisher()
    fwd = Forwarder(HitQueue(50), pub, Spool(tmp_path), max_batch=10)
    task = asyncio.create_task(fwd.run())
    try:
        for i in range(30):
            assert fwd.submit(rec(i))
        await eventually(lambda: len(pub.got) == 30)
        assert fwd.direct
        pub.up = False
        for i in range(30, 300):  # more than the queue holds: must not be lost
            assert fwd.submit(rec(i))
        await eventually(lambda: not fwd.direct)
        await eventually(lambda: pub.resets >= 1)  # the failed producer was replaced
        pub.up = True
        await eventually(lambda: fwd.direct and fwd.spool is not None and fwd.spool.pending_bytes() == 0)
        for i in range(300, 310):
            fwd.submit(rec(i))
        await eventually(lambda: len({r.value for r in pub.got}) == 310)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    values = [int(r.value) for r in pub.got]
    # every record arrived; the first copy of each arrived in order
    first_seen = list(dict.fromkeys(values))
    assert first_seen == list(range(310))
    assert any(dict(r.headers).get(REPLAY_HEADER) == b"1" for r in pub.got)


async def test_restart_replays_what_was_not_acknowledged(tmp_path: Path) -> None:
    pub = SwitchablePublisher()
    pub.up = False
    fwd = Forwarder(HitQueue(50), pub, Spool(tmp_path), max_batch=10, publish_timeout=0.2)
    for i in range(25):
        fwd.submit(rec(i))
    task = asyncio.create_task(fwd.run())
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await fwd.drain(0.3)  # cannot publish: everything stays in the spool
    assert fwd.spool is not None
    fwd.spool.close()

    pub2 = SwitchablePublisher()
    fwd2 = Forwarder(HitQueue(50), pub2, Spool(tmp_path), max_batch=10)
    assert not fwd2.direct  # a spool with a backlog starts in catch-up
    task2 = asyncio.create_task(fwd2.run())
    try:
        await eventually(lambda: len(pub2.got) == 25)
    finally:
        task2.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task2
    assert [int(r.value) for r in pub2.got] == list(range(25))


async def test_without_spool_failed_batches_are_retried_from_memory() -> None:
    pub = SwitchablePublisher()
    pub.up = False
    fwd = Forwarder(HitQueue(100), pub, None, max_batch=10)
    task = asyncio.create_task(fwd.run())
    try:
        for i in range(20):
            assert fwd.submit(rec(i))
        await asyncio.sleep(0.2)
        pub.up = True
        await eventually(lambda: len(pub.got) == 20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(int(r.value) for r in pub.got) == list(range(20))


async def test_spool_at_bound_drops_and_says_so(tmp_path: Path) -> None:
    pub = SwitchablePublisher()
    pub.up = False
    fwd = Forwarder(HitQueue(10), pub, Spool(tmp_path, segment_bytes=1 << 16, max_bytes=1 << 20))
    big = Record("hits.raw", None, b"x" * 8000)
    results = [fwd.submit(big) for _ in range(200)]
    assert results.count(False) > 0
    assert fwd.dropped == results.count(False)
    assert fwd.at_bound()


class HangingPublisher(SwitchablePublisher):
    """Takes batches but never acknowledges them while `hang` is set (a broker that stopped answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = True
        self.attempted: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.attempted.extend(records)
        if self.hang:
            await asyncio.sleep(3600)
        await super().publish(records)


async def test_shutdown_during_a_publish_loses_nothing(tmp_path: Path) -> None:
    """A publish cut short by shutdown may or may not have reached Kafka: the drain must go back to the
    spool's last ack, never ack a later batch over it."""
    pub = HangingPublisher()
    fwd = Forwarder(HitQueue(1000), pub, Spool(tmp_path), max_batch=10, publish_timeout=3600)
    task = asyncio.create_task(fwd.run())
    for i in range(10):
        fwd.submit(rec(i))
    await eventually(lambda: len(pub.attempted) == 10)  # the first batch is in flight, hanging
    for i in range(10, 25):
        fwd.submit(rec(i))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    pub.hang = False
    await fwd.drain(5.0)
    assert fwd.spool is not None
    assert fwd.spool.pending_bytes() == 0
    assert sorted({int(r.value) for r in pub.got}) == list(range(25))
    # the interrupted batch went again, from the spool, marked as a replay
    assert {int(r.value) for r in pub.got if dict(r.headers).get(REPLAY_HEADER)} >= set(range(10))


async def test_drain_stops_at_the_first_failure_and_keeps_the_spool(tmp_path: Path) -> None:
    pub = SwitchablePublisher()
    pub.up = False
    fwd = Forwarder(HitQueue(100), pub, Spool(tmp_path), max_batch=10)
    for i in range(30):
        fwd.submit(rec(i))
    started = asyncio.get_running_loop().time()
    await fwd.drain(30.0)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert fwd.spool is not None
    assert len(fwd.spool.read_from(fwd.spool.acked, 100)) == 30


async def test_linger_gathers_bigger_batches() -> None:
    sizes: list[int] = []

    class Recording(SwitchablePublisher):
        async def publish(self, records: Sequence[Record]) -> None:
            sizes.append(len(records))
            await super().publish(records)

    pub = Recording()
    fwd = Forwarder(HitQueue(1000), pub, None, max_batch=500, linger=0.2)
    task = asyncio.create_task(fwd.run())
    try:
        for i in range(40):
            fwd.submit(rec(i))
            await asyncio.sleep(0.001)
        await eventually(lambda: len(pub.got) == 40)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(sizes) <= 3


async def test_replay_all_publishes_a_former_spool_in_order(tmp_path: Path) -> None:
    old = Spool(tmp_path)
    for i in range(40):
        old.append(rec(i))
    old.close()
    pub = SwitchablePublisher()
    fwd = Forwarder(HitQueue(1), pub, Spool(tmp_path), max_batch=7, report=False)
    await asyncio.wait_for(fwd.replay_all(), 5)
    assert [int(r.value) for r in pub.got] == list(range(40))
    assert fwd.spool is not None
    assert fwd.spool.pending_bytes() == 0


def test_queue_offer_is_bounded() -> None:
    q = HitQueue(3)
    assert [q.offer(Pending(rec(i), None)) for i in range(5)] == [True, True, True, False, False]
    assert q.qsize() == 3
    assert [int(p.record.value) for p in q.take_all()] == [0, 1, 2]


class CancelledOnAck(SwitchablePublisher):
    """The broker's acknowledgement and the shutdown's cancel of the forwarder land in the same step of
    the loop: `publish` returns just after the forwarder's task was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task[None] | None = None

    async def publish(self, records: Sequence[Record]) -> None:
        await super().publish(records)
        if self.task is not None and len(self.got) == len(records):
            self.task.cancel()


async def test_a_cancel_that_lands_with_the_acknowledgement_still_ends_the_forwarder(tmp_path: Path) -> None:
    """Seen once under a loaded test run: asyncio.wait_for (Python 3.11) dropped such a cancel, and the
    forwarder went on for good, holding the edge's shutdown until it was killed."""
    for spool in (None, Spool(tmp_path)):
        pub = CancelledOnAck()
        fwd = Forwarder(HitQueue(50), pub, spool, max_batch=10)
        fwd.submit(rec(1))
        pub.task = task = asyncio.create_task(fwd.run())
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done == {task}, "the forwarder ignored its cancel"
        assert task.cancelled()
        assert [r.value for r in pub.got] == [b"1"]
        if spool is not None:
            spool.close()


async def test_without_spool_a_failed_batch_goes_back_in_front_even_when_the_queue_filled_meanwhile() -> None:
    """The batch being published fails while new hits fill the queue to its bound: the batch is kept,
    ahead of them (it was re-offered at the back, and what did not fit was dropped uncounted)."""
    gate = asyncio.Event()

    class FailsFirst(SwitchablePublisher):
        calls = 0

        async def publish(self, records: Sequence[Record]) -> None:
            self.calls += 1
            if self.calls == 1:
                await gate.wait()
                raise ConnectionError("broker gone")
            await super().publish(records)

    pub = FailsFirst()
    fwd = Forwarder(HitQueue(4), pub, None, max_batch=4)
    task = asyncio.create_task(fwd.run())
    try:
        assert [fwd.submit(rec(i)) for i in range(4)] == [True] * 4
        await eventually(lambda: fwd.queue.qsize() == 0)  # taken: its publish is in flight
        assert [fwd.submit(rec(i)) for i in range(4, 8)] == [True] * 4  # the queue is full again
        gate.set()
        await eventually(lambda: len(pub.got) == 8)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [int(r.value) for r in pub.got] == list(range(8))
    assert fwd.dropped == 0


async def test_the_embedded_bus_is_bounded_for_publishers() -> None:
    from ingest.publisher import QueuePublisher

    bus: asyncio.Queue[Record] = asyncio.Queue()
    publisher = QueuePublisher(bus, max_records=3)
    await publisher.publish([rec(0), rec(1), rec(2)])
    blocked = asyncio.create_task(publisher.publish([rec(3)]))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # waits while the bus holds its bound
    bus.get_nowait()
    await asyncio.wait_for(blocked, 1)
    assert [int(bus.get_nowait().value) for _ in range(3)] == [1, 2, 3]
