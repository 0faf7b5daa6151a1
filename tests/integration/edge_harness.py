"""Helpers for the edge's fault tests: an edge as a subprocess, a steady load on 127.0.0.1, and a
reader of what reached Kafka. Traffic goes only to 127.0.0.1 and every loop is bounded in time."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from schemas.tokens import Keyring, TokenPayload

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"edge-fault-secret-0123456789abcdef"
KEY_SPEC = f"f1:{base64.urlsafe_b64encode(SECRET).decode().rstrip('=')}"


def fault_keyring() -> Keyring:
    return Keyring.parse(KEY_SPEC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pixel_paths(keyring: Keyring, run: str) -> Iterator[tuple[str, str]]:
    """(message id, pixel path) with a fresh message id each: a hit is then known by its message."""
    now = int(time.time() * 1000)
    i = 0
    while True:
        message = f"{run}-{i}"
        yield message, f"/o/{keyring.mint(TokenPayload('open', '', 'faults', 'A', message, 'r', now))}.gif"
        i += 1


@dataclass
class LoadResult:
    answered: list[str] = field(default_factory=list)  # message ids whose pixel came back (200 + GIF)
    failed: list[str] = field(default_factory=list)  # sent, no answer (connection refused/reset, timeout)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds) of answers


async def steady_load(base: str, paths: Iterator[tuple[str, str]], rate: float, duration: float,
                      result: LoadResult, stop: asyncio.Event | None = None, concurrency: int = 32,
                      timeout: float = 5.0) -> None:
    """Sends `rate` requests a second for `duration` seconds or until `stop` (open loop: a slow answer
    does not slow the sending), at most `concurrency` in flight; every request is accounted as answered
    or failed."""
    sem = asyncio.Semaphore(concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def one(http: aiohttp.ClientSession, message: str, path: str) -> None:
        async with sem:
            started = time.monotonic()
            try:
                async with http.get(base + path) as resp:
                    body = await resp.read()
                    ok = resp.status == 200 and body.startswith(b"GIF89a")
            except (aiohttp.ClientError, TimeoutError, OSError):
                ok = False
            if ok:
                result.answered.append(message)
                result.latencies.append((started, time.monotonic() - started))
            else:
                result.failed.append(message)

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as http:
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < duration and not (stop and stop.is_set()):
            due = int(elapsed * rate) + 1
            while n < due:
                message, path = next(paths)
                tasks.append(asyncio.create_task(one(http, message, path)))
                n += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)


async def kafka_keys(bootstrap: str, topic: str, want: set[str], timeout: float = 60.0) -> dict[str, int]:
    """Record keys (message ids) on `topic` and how many records each has, read from the beginning until
    every key in `want` was seen or `timeout` passed."""
    # No group: every partition is assigned, from the earliest offset.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[str, int] = {}
    try:
        deadline = time.monotonic() + timeout
        while not want <= seen.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    key = (r.key or b"").decode()
                    seen[key] = seen.get(key, 0) + 1
    finally:
        await consumer.stop()
    return seen


class EdgeProcess:
    """`python -m ingest.workers` (what `pixeltrack edge --workers N` runs) with PIXELTRACK_* settings."""

    def __init__(self, env: dict[str, str], port: int, workers: int = 1, log: Path | None = None) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.port = port
        self.workers = workers
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        with open(self.log or os.devnull, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest.workers", "--workers", str(self.workers), "--host", "127.0.0.1",
                 "--port", str(self.port)], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    async def start(self, timeout: float = 30.0) -> None:
        """Spawns the edge and returns once /healthz answers."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"edge exited with {self.proc.returncode} at start; see {self.log}")
                try:
                    async with http.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"edge not up in {timeout}s; see {self.log}")
                await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def wait(self, timeout: float) -> int:
        """Exit code, or AssertionError if the process is still running after `timeout`."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"edge still running {timeout}s after the signal; its log ends:\n"
                                     f"{self.log_tail()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def worker_pids(self) -> list[int]:
        """Children of the supervisor (the worker processes; multiprocessing's helper excluded)."""
        assert self.proc is not None
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]

    async def metric(self, name: str) -> float:
        """A metric's value summed over its series, from /metrics."""
        async with aiohttp.ClientSession() as http, http.get(self.base + "/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
