"""The connection cap and the deadlines in real processes: an edge worker with a small descriptor limit
flooded with idle connections (more than it has descriptors), and `pixeltrack serve`'s servers."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ingest.serving import FD_RESERVE, REFUSED
from tests.integration.edge_harness import KEY_SPEC, ROOT, EdgeProcess, fault_keyring, free_port, pixel_paths

FD_LIMIT = 128  # the worker's RLIMIT_NOFILE (soft and hard): its cap is then 128 - 64 = 64
FLOOD = 150  # idle connections opened at once: more than the worker has descriptors


class LimitedEdge(EdgeProcess):
    """The edge as a process whose descriptor limit is FD_LIMIT, as under a small `ulimit -n`."""

    def spawn(self) -> None:
        def lower_limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

        with open(self.log or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest.workers", "--workers", "1", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env, cwd=self.env["PYTHONPATH"], stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=lower_limit)


async def fetch(port: int, path: str) -> bytes:
    """The whole answer to GET `path`; REFUSED also when the server's refusal reached the client as a reset
    (it closed before reading the request, and the kernel answers unread bytes with a reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t.example\r\nUser-Agent: Mozilla/5.0 t\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return REFUSED
    finally:
        writer.close()
    return answer


@pytest.fixture
async def limited_edge(tmp_path: Path) -> AsyncIterator[LimitedEdge]:
    env = {"PIXELTRACK_SIGNING_KEYS": KEY_SPEC, "PIXELTRACK_SPOOL_DIR": str(tmp_path / "spool"),
           "PIXELTRACK_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # no broker: the producer keeps reconnecting
           "PIXELTRACK_SPOOL_FSYNC_MS": "20", "PIXELTRACK_HEADER_TIMEOUT_SECONDS": "30",
           "PIXELTRACK_KEEPALIVE_TIMEOUT_SECONDS": "30"}
    edge = LimitedEdge(env, free_port(), log=tmp_path / "edge.log")
    await edge.start()
    try:
        yield edge
    finally:
        edge.signal(signal.SIGTERM)
        await edge.wait(30)


async def test_a_flood_of_idle_connections_is_refused_before_descriptors_run_out(limited_edge: LimitedEdge) -> None:
    edge = limited_edge
    paths = pixel_paths(fault_keyring(), "cap")
    log = edge.log
    assert log is not None
    cap = FD_LIMIT - FD_RESERVE
    assert f"at most {cap} connections" in log.read_text()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(FLOOD):  # an attacker's connections: they never send a byte
            held.append(await asyncio.open_connection("127.0.0.1", edge.port))
        await asyncio.sleep(0.5)
        # The ones past the cap were answered 503 and closed; the rest are held open.
        answers = await asyncio.gather(*(asyncio.wait_for(r.read(), 0.5) for r, _ in held), return_exceptions=True)
        refused = [a for a in answers if a == REFUSED]
        # (one more when the harness's /healthz connection was not yet closed on the worker's side)
        assert len(refused) in (FLOOD - cap, FLOOD - cap + 1), len(refused)
        assert sum(isinstance(a, TimeoutError) for a in answers) == FLOOD - len(refused)
        # At the cap a real fetch is refused cleanly too ...
        assert await fetch(edge.port, next(paths)[1]) == REFUSED
        # ... and once a held connection closes, a fresh client's pixel is served (and journaled).
        still_held = [(r, w) for (r, w), a in zip(held, answers, strict=True) if isinstance(a, TimeoutError)]
        still_held[0][1].close()
        answer = b""
        for _ in range(50):
            await asyncio.sleep(0.05)
            answer = await fetch(edge.port, next(paths)[1])
            if answer != REFUSED:
                break
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"GIF89a" in answer
        await asyncio.sleep(0.3)  # the spool's fsync loop runs every 20 ms meanwhile
    finally:
        for _, w in held:
            w.close()
    await asyncio.sleep(0.3)
    # Every refusal counted: the flood's and the fetch made at the cap.
    assert await edge.metric("pixeltrack_connections_refused_total") >= len(refused) + 1
    text = log.read_text()
    assert "Too many open files" not in text, edge.log_tail()
    assert "Traceback" not in text, edge.log_tail()


@pytest.fixture
def serve_ports(tmp_path: Path) -> Iterator[tuple[dict[str, int], Path]]:
    """`pixeltrack serve` (this checkout's) with short deadlines and a cap of 20: its ports and its log."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELTRACK_")}
    env.update({"PYTHONPATH": str(ROOT), "PIXELTRACK_HEADER_TIMEOUT_SECONDS": "0.5",
                "PIXELTRACK_KEEPALIVE_TIMEOUT_SECONDS": "2", "PIXELTRACK_MAX_CONNECTIONS": "20"})
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pixeltrack.cli", "serve", "--port", "0", "--api-port", "0",
                                 "--dashboard-port", "0", "--data", str(data)], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        state = data / "serve.json"
        deadline = time.monotonic() + 60
        while not state.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        info = json.loads(state.read_text())
        yield {name: int(info[f"{name}_url"].rsplit(":", 1)[1]) for name in ("edge", "api", "dashboard")}, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "Too many open files" not in text, text[-3000:]


async def test_serve_holds_its_edge_api_and_dashboard_to_the_deadlines_and_one_cap(
        serve_ports: tuple[dict[str, int], Path]) -> None:
    ports, _ = serve_ports
    # The edge: a pixel with a bad token (answered on the fast path all the same, and dead-lettered).
    requests = {"edge": "/o/not-a-token.gif", "api": "/v1/health", "dashboard": "/healthz"}
    for name, port in ports.items():
        # A silent connection: closed at the head deadline, well before the idle time.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b"", name
        assert 0.4 < time.monotonic() - start < 1.6, name
        writer.close()
        # A served keep-alive connection: closed after the idle time.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {requests[name]} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 200"), name
        start = time.monotonic()
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
        assert 1.5 < time.monotonic() - start < 3.5, name
        writer.close()
    # One cap for the process: 20 keep-alive connections held on the edge (each served once, then idle
    # for up to 2 s) leave none for the API.
    held = [await asyncio.open_connection("127.0.0.1", ports["edge"]) for _ in range(20)]
    for r, w in held:
        w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    assert await fetch(ports["api"], "/v1/health") == REFUSED
    held[0][1].close()
    await asyncio.sleep(0.1)
    assert (await fetch(ports["api"], "/v1/health")).startswith(b"HTTP/1.1 200")
    for _, w in held:
        w.close()
