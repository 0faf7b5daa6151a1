"""A constant-rate (open-loop) HTTP load generator for latency at a given rate, wrk2-style.

wrk measures the most a server can do; it cannot hold a rate (wrk2, which can, is not packaged by
Debian). This sends requests on a fixed schedule over keep-alive connections and measures each one
from the moment the schedule wanted it sent, so a server that stalls is charged for the requests that
queued up behind the stall (no coordinated omission). Requests go to 127.0.0.1 only; every run is
bounded in time. One Python process with uvloop holds about 15-20k requests/s, plenty for half of an
edge's maximum on one core.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast


@dataclass
class Outcome:
    sent: int = 0
    unsent: int = 0  # scheduled but never sent before the end (the server could not keep up)
    answered: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # (scheduled at, seconds from scheduled to the last byte of the answer), in answer order
    latencies: list[tuple[float, float]] = field(default_factory=list)
    ok_requests: list[int] = field(default_factory=list)  # indexes (into `requests`) answered with 200

    def percentile(self, q: float, since: float = float("-inf"), until: float = float("inf")) -> float:
        values = sorted(lat for at, lat in self.latencies if since <= at <= until)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q / 100 * len(values)))]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; answers are framed by Content-Length (the edge always sends it)."""

    def __init__(self, gen: ConstantRate) -> None:
        self.gen = gen
        self.transport: asyncio.WriteTransport | None = None
        self.buf = b""
        self.need = -1  # bytes of the current answer still to come after its head; -1 = reading head
        self.status = 0
        self.started = 0.0
        self.index = -1
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio.Transport subclass

    def send(self, index: int, request: bytes, started: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.started = started
        self.index = index
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end]
                self.buf = self.buf[end + 4:]
                self.status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                self.need = 0 if self.gen.head_only else length
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need:]
            self.need = -1
            self.busy = False
            self.gen.done(self, self.status, self.started, self.index)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.lost(self)


class ConstantRate:
    """Sends `rate` requests a second for `duration` seconds over up to `connections` connections."""

    def __init__(self, host: str, port: int, requests: Sequence[bytes], rate: float, duration: float,
                 connections: int = 64, head_only: bool = False,
                 on_tick: Callable[[float], None] | None = None) -> None:
        assert host in ("127.0.0.1", "localhost", "::1"), "load goes to this machine only"
        self.host, self.port = host, port
        self.requests = requests
        self.rate, self.duration = rate, duration
        self.connections = connections
        self.head_only = head_only
        self.on_tick = on_tick
        self.outcome = Outcome()
        self._idle: deque[_Connection] = deque()
        self._backlog: deque[float] = deque()  # scheduled times waiting for a free connection
        self._live = 0
        self._next = 0
        self._connecting: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()  # set when every sent request was answered or failed
        self._ending = False

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.outcome.errors += 1
            await asyncio.sleep(0.05)
            self._live -= 1
            return
        self._idle.append(conn)
        self._pump()

    def _pump(self) -> None:
        while self._backlog and self._idle:
            conn = self._idle.popleft()
            if conn.transport is None:
                continue
            index = self._next % len(self.requests)  # the list is cycled when shorter than the run
            self._next += 1
            conn.send(index, self.requests[index], self._backlog.popleft())
            self.outcome.sent += 1

    def done(self, conn: _Connection, status: int, started: float, index: int) -> None:
        now = time.perf_counter()
        o = self.outcome
        o.answered += 1
        o.statuses[status] = o.statuses.get(status, 0) + 1
        o.latencies.append((started, now - started))
        if status == 200:
            o.ok_requests.append(index)
        self._idle.append(conn)
        self._pump()
        self._check_settled()

    def _check_settled(self) -> None:
        o = self.outcome
        if self._ending and o.answered + o.errors >= o.sent:
            self._settled.set()

    def lost(self, conn: _Connection) -> None:
        if conn.busy:
            self.outcome.errors += 1
            conn.busy = False
        self._live -= 1
        self._check_settled()

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        self._settled = asyncio.Event()
        start = time.perf_counter()
        sent_due = 0
        while (now := time.perf_counter()) - start < self.duration:
            due = int((now - start) * self.rate)
            for i in range(sent_due, due):
                # Charged from the schedule's time, not from when a connection was free.
                self._backlog.append(start + i / self.rate)
            sent_due = max(sent_due, due)
            while self._live < self.connections and (self._backlog and not self._idle):
                self._live += 1
                task = loop.create_task(self._connect())
                self._connecting.add(task)
                task.add_done_callback(self._connecting.discard)
            self._pump()
            if self.on_tick is not None:
                self.on_tick(now - start)
            await asyncio.sleep(0.0005)
        self._ending = True
        self._check_settled()
        try:
            async with asyncio.timeout(10.0):
                await self._settled.wait()
        except TimeoutError:
            pass  # answers still missing after 10 s count as neither answered nor errors
        self.outcome.unsent = len(self._backlog)
        for conn in list(self._idle):
            if conn.transport is not None:
                conn.transport.close()
        return self.outcome


def get_requests(paths: Sequence[str], host: str = "edge.example") -> list[bytes]:
    return [f"GET {p} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pixeltrack-loadgen/1\r\nAccept: image/*\r\n\r\n"
            .encode() for p in paths]
