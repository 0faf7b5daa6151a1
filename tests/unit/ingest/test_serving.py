"""Deadlines and the connection cap (ingest/serving.py) on real sockets, for every server: the edge's fast
path, the edge through aiohttp, the ingest API, the dashboard and a processor's /metrics. Deadlines are
short here (0.5 s for a head, 1.5 s idle) so each case takes a couple of seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from ingest.api import create_api_app
from ingest.app import create_app
from ingest.fastpath import EdgeSite
from ingest.publisher import QueuePublisher
from ingest.serving import (
    FD_RESERVE,
    REFUSED,
    GuardedConnection,
    ServerLimits,
    check_aiohttp_internals,
    default_cap,
    fd_soft_limit,
    serve_until_stopped,
)
from pixeltrack.compose.metrics import start_metrics
from pixeltrack.dashboard import start_dashboard
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics
from tests.unit.ingest.test_edge_properties import CollectingPublisher

KEYRING = Keyring({"s1": b"serving-secret-0123456789abcdef0"}, "s1")
OPEN = KEYRING.mint(TokenPayload("open", "", "c", "A", "m-1", "r-1", int(time.time() * 1000)))
HEAD = 0.5  # header_timeout in these tests
IDLE = 1.5  # keepalive_timeout in these tests
KINDS = ("edge-fast", "edge-aiohttp", "api", "dashboard", "metrics")


@dataclass
class Running:
    port: int
    server: str  # the metrics' label
    path: str  # a real request this server answers 200

    def request(self, close: bool = False) -> bytes:
        return (f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Mozilla/5.0 test\r\n"
                f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode()


async def _query(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
    return ["1"], [(1,)]


@asynccontextmanager
async def running(kind: str, limits: ServerLimits) -> AsyncIterator[Running]:
    if kind in ("dashboard", "metrics"):
        runner = await (start_dashboard(_query, "127.0.0.1", 0, limits=limits) if kind == "dashboard"
                        else start_metrics("127.0.0.1", 0, limits))
        try:
            yield Running(int(runner.addresses[0][1]), kind, "/healthz" if kind == "dashboard" else "/metrics")
        finally:
            await runner.cleanup()
        return
    app: web.Application
    if kind == "api":
        bus: asyncio.Queue[Record] = asyncio.Queue()
        app, server, path = (create_api_app(KEYRING, ["k"], Topics(), QueuePublisher(bus), own_publisher=False),
                             "api", "/v1/health")
    else:
        s = Settings(_env_file=None, edge_id="t", spool_dir=None, producer_linger_ms=0)  # type: ignore[call-arg]
        app, server, path = create_app(s, publisher=CollectingPublisher(), keyring=KEYRING), "edge", f"/o/{OPEN}.gif"
    runner = limits.runner(app)
    await runner.setup()
    site = (EdgeSite(runner, "127.0.0.1", 0, limits=limits) if kind == "edge-fast"
            else limits.site(runner, "127.0.0.1", 0, server=server))
    try:
        await site.start()
        yield Running(int(runner.addresses[0][1]), server, path)
    finally:
        await runner.cleanup()


async def status_of(reader: asyncio.StreamReader) -> int:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await asyncio.wait_for(reader.readexactly(length), 5)
    return int(head.split(b" ")[1])


async def closed_after(reader: asyncio.StreamReader, start: float, limit: float) -> float:
    """Seconds from `start` until the server closed the connection (EOF, or a reset or broken pipe seen by a
    client still writing); fails past `limit`."""
    with suppress(ConnectionResetError, BrokenPipeError):
        assert await asyncio.wait_for(reader.read(), limit) == b""
    return time.monotonic() - start


async def refused(reader: asyncio.StreamReader) -> bool:
    """Whether the server refused the connection at once: its 503 then EOF, or a reset (the server closed
    before reading a request the client had sent: the kernel answers that with a reset, which may
    overtake the 503)."""
    try:
        return await asyncio.wait_for(reader.read(), 2) in (REFUSED, b"")
    except ConnectionResetError:
        return True


def metric(name: str, server: str) -> float:
    return REGISTRY.get_sample_value(name, {"server": server}) or 0.0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_head_not_complete_in_time_is_closed(kind: str) -> None:
    async with running(kind, ServerLimits(HEAD, IDLE * 2)) as srv:
        timeouts = metric("pixeltrack_head_timeouts_total", srv.server)
        handed = REGISTRY.get_sample_value("pixeltrack_edge_handed_over_total") or 0.0
        # Silent after connecting.
        start = time.monotonic()
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", srv.port)
        # A slow loris: a byte every 0.1 s (each byte would reset an idle timer).
        loris_r, loris_w = await asyncio.open_connection("127.0.0.1", srv.port)
        loris = asyncio.create_task(_trickle(loris_w, srv.request()))
        # Another route (on the edge, the fast path hands it to aiohttp after 8 bytes; the clock goes along).
        other_r, other_w = await asyncio.open_connection("127.0.0.1", srv.port)
        other = asyncio.create_task(_trickle(other_w, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 12))
        # A keep-alive connection whose second head starts late and never ends: its own deadline.
        ka_r, ka_w = await asyncio.open_connection("127.0.0.1", srv.port)
        ka_w.write(srv.request())
        assert await status_of(ka_r) == 200
        await asyncio.sleep(HEAD * 1.5)  # idle between requests: not the head deadline's business
        second = time.monotonic()
        ka_w.write(srv.request()[:12])
        try:
            for reader, since in ((silent_r, start), (loris_r, start), (other_r, start), (ka_r, second)):
                took = await closed_after(reader, since, IDLE * 2)
                assert HEAD * 0.9 <= took < HEAD + 0.8, (kind, took)
        finally:
            loris.cancel()
            other.cancel()
            for w in (silent_w, loris_w, other_w, ka_w):
                w.close()
        assert metric("pixeltrack_head_timeouts_total", srv.server) - timeouts == 4
        if kind == "edge-fast":
            assert (REGISTRY.get_sample_value("pixeltrack_edge_handed_over_total") or 0.0) - handed == 1


async def _trickle(writer: asyncio.StreamWriter, data: bytes, first: int = 1) -> None:
    """`first` bytes at once, then one byte every 0.1 s, never the final CRLF CRLF."""
    writer.write(data[:first])
    for i in range(first, len(data) - 4):
        await asyncio.sleep(0.1)
        writer.write(data[i:i + 1])


@pytest.mark.parametrize("kind", KINDS)
async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_time(kind: str) -> None:
    async with running(kind, ServerLimits(HEAD, IDLE)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(srv.request())
            assert await status_of(reader) == 200
            served = time.monotonic()
            with pytest.raises(TimeoutError):  # open past the head deadline: no head is due while idle
                await asyncio.wait_for(reader.read(1), HEAD * 2)
            writer.write(srv.request())  # and still serving
            assert await status_of(reader) == 200
            took = await closed_after(reader, time.monotonic(), IDLE + 2)
            assert IDLE * 0.9 <= took < IDLE + 1.0, (kind, took)
            assert time.monotonic() - served > IDLE
        finally:
            writer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_past_the_cap_connections_are_refused_and_a_freed_slot_serves_a_new_client(kind: str) -> None:
    cap = 20
    limits = ServerLimits(30.0, 30.0, cap)  # deadlines far off: the held connections stay
    async with running(kind, limits) as srv:
        refused_before = metric("pixeltrack_connections_refused_total", srv.server)
        held = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(cap)]
        # One of them has been served and kept alive (on the fast path, one was handed to aiohttp): both hold slots.
        held[0][1].write(srv.request())
        assert await status_of(held[0][0]) == 200
        held[1][1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" if kind.startswith("edge") else
                         srv.request())
        assert await status_of(held[1][0]) == 200
        await asyncio.sleep(0.05)
        assert limits.open == cap
        assert metric("pixeltrack_connections_open", srv.server) >= cap
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(srv.request())
            assert await refused(reader)
            writer.close()
        assert metric("pixeltrack_connections_refused_total", srv.server) - refused_before == 5
        held[5][1].close()  # a slot frees
        for _ in range(50):
            if limits.open < cap:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(srv.request(close=True))
        assert await status_of(reader) == 200
        writer.close()
        for _, w in held:
            w.close()
        for _ in range(50):
            if limits.open == 0:
                break
            await asyncio.sleep(0.02)
        assert limits.open == 0  # every slot given back


def test_defaults_keep_idle_connections_at_most_75_seconds_and_heads_at_10() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.keepalive_timeout_seconds <= 75.0
    assert s.header_timeout_seconds == 10.0
    limits = ServerLimits.from_settings(s)
    assert (limits.header_timeout, limits.keepalive_timeout) == (10.0, 75.0)
    assert limits.max_connections == max(fd_soft_limit() - FD_RESERVE, fd_soft_limit() // 4)
    assert ServerLimits(max_connections=7).max_connections == 7
    with pytest.raises(ValueError, match="header_timeout=0"):
        ServerLimits(header_timeout=0)


async def test_every_runner_gives_aiohttp_the_keep_alive_timeout() -> None:
    runner = ServerLimits(keepalive_timeout=12.5).runner(web.Application())
    await runner.setup()
    try:
        server = runner.server
        assert isinstance(server, web.Server)
        assert server().keepalive_timeout == 12.5  # aiohttp's own default is 3,630 s
    finally:
        await runner.cleanup()


async def test_the_aiohttp_internals_the_head_deadline_reads_are_there() -> None:
    """Fails loudly when an aiohttp upgrade moves RequestHandler._messages or _request_in_progress."""
    runner = ServerLimits().runner(web.Application())
    await runner.setup()
    try:
        server = runner.server
        assert isinstance(server, web.Server)
        check_aiohttp_internals(server)  # raises if they moved
        handler = server()
        assert len(handler._messages) == 0
        assert handler._request_in_progress is False

        class Moved:
            def __call__(self) -> object:
                return object()

        with pytest.raises(RuntimeError, match="moved"):
            check_aiohttp_internals(Moved())  # type: ignore[arg-type]
        assert GuardedConnection.__slots__  # the guard is the one user; see ingest/serving.py
    finally:
        await runner.cleanup()


def test_the_default_cap_leaves_the_reserve_below_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    for soft, want in ((256, 192), (1024, 960), (64, 16)):
        monkeypatch.setattr(resource, "getrlimit", lambda _which, s=soft: (s, 1 << 20))
        assert default_cap() == want, soft
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert default_cap() == (1 << 20) - FD_RESERVE


async def test_serve_until_stopped_runs_an_app_under_the_limits_until_told_to_stop() -> None:
    """What `pixeltrack api` runs the ingest API with (instead of web.run_app)."""
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_api_app(KEYRING, ["k"], Topics(), QueuePublisher(bus), own_publisher=False)
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(serve_until_stopped(app, "127.0.0.1", 0, limits=ServerLimits(HEAD, IDLE, 5),
                                                   server="api", announce=lines.append, stop=stop))
    for _ in range(100):
        if lines or task.done():
            break
        await asyncio.sleep(0.02)
    assert lines, task
    assert "at most 5 connections" in lines[0]
    port = int(lines[0].split("http://127.0.0.1:")[1].split(" ")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert await status_of(reader) == 200
    writer.close()
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
    took = await closed_after(silent_r, time.monotonic(), IDLE)
    assert took < HEAD + 0.8
    silent_w.close()
    stop.set()
    await asyncio.wait_for(task, 5)
    with pytest.raises(ConnectionRefusedError):  # no longer listening
        await asyncio.open_connection("127.0.0.1", port)
