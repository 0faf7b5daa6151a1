"""Runs the edge: one process, or N worker processes sharing the port under a small supervisor.

Workers: each is a full edge (its own event loop on uvloop, queue, forwarder, Kafka producer) bound to
the same address with SO_REUSEPORT, so the kernel spreads connections across them; nothing is shared
at run time. Each worker journals to its own spool folder, `spool_dir/worker-<i>`, so a worker
restarted after a crash (same index) replays exactly what it had answered and Kafka had not yet
acknowledged. The spool bound (spool_max_bytes) is the edge's: each of N workers gets 1/N of it. The
spool folder is locked while in use, so two processes never write one journal.

Supervisor (workers > 1): starts the workers, restarts one that dies (with backoff; it gives up and
exits non-zero when workers keep dying right after start, e.g. the port is taken), and on SIGTERM or
SIGINT asks every worker to stop, waits for them within the shutdown bound, and kills stragglers (what
they did not publish stays in their spools for the next start).

Shutdown of a worker (SIGTERM/SIGINT): stop accepting, let in-flight requests finish (their answers
are already journaled), close idle keep-alive connections, then publish what is queued within
`drain_timeout`; the rest stays in the spool. Total bound: shutdown_timeout + drain_timeout + 5 s,
enforced: past it the worker logs what it still waits on and exits at once (code 70), as a kill would.

Metrics: with several workers, prometheus_client's multiprocess mode (a fresh folder per supervisor
run, named by PROMETHEUS_MULTIPROC_DIR in the workers' environment) makes every worker's /metrics the
sum over all workers, so one scrape of the shared port sees the whole edge whichever worker answers;
counters of a dead worker keep counting in the totals, its gauges are dropped (mark_process_dead).

Spools left by a former layout are not orphaned: worker i also replays the folders worker-j with
j >= workers and j % workers == i (after the worker count went down), and worker 0 replays segments
found directly in spool_dir (a single-process edge of an earlier version); emptied, they are removed.
"""

from __future__ import annotations

if __name__ in ("__main__", "__mp_main__"):  # `python -m ingest.workers` and its spawned workers: choose the
    from schemas import native  # compiled hot path (tokens, records) before anything below loads it

    native.activate()

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.spool import SEGMENT_PREFIX, worker_folder, worker_index
from schemas.aio import end_within
from schemas.runtime import run, stop_on_signals, tune_gc_for_edge
from schemas.settings import Settings
from schemas.topics import Topics

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0  # in-flight requests (answers are in memory: they take milliseconds)
DRAIN_TIMEOUT = 10.0  # queued records to Kafka; the rest stays in the spool
CLOSE_MARGIN = 6.0  # after the drain: the edge's tasks ending on their cancel (1 s), the transport's close (5 s)
FAST_EXIT_S = 3.0  # a worker that dies sooner than this after start counts as failing to start
MAX_FAST_EXITS = 5


def worker_spool(spool_dir: Path | None, index: int) -> Path | None:
    return None if spool_dir is None else worker_folder(spool_dir, index)


def worker_settings(settings: Settings, index: int, workers: int) -> Settings:
    """Worker `index`'s settings: its own edge id, and its share of the spool bound. spool_max_bytes
    bounds the edge (what its volume must hold), so its workers' spools together stay within it."""
    edge_id = settings.edge_id if workers == 1 else f"{settings.edge_id}-{index}"
    return settings.model_copy(update={"edge_id": edge_id, "spool_max_bytes": settings.spool_max_bytes // workers})


def orphan_spools(spool_dir: Path | None, index: int, workers: int) -> list[Path]:
    """Spool folders no current worker owns that worker `index` replays (see the module docstring)."""
    if spool_dir is None or not spool_dir.is_dir():
        return []
    found = []
    for p in sorted(spool_dir.iterdir()):
        j = worker_index(p.name) if p.is_dir() else None
        if j is not None and j >= workers and j % workers == index:
            found.append(p)
    if index == 0 and any(p.name.startswith(SEGMENT_PREFIX) for p in spool_dir.iterdir()):
        found.append(spool_dir)
    return found


async def serve_worker(settings: Settings, index: int, workers: int, *, metrics_dir: Path | None = None,
                       port: int | None = None, stop: asyncio.Event | None = None,
                       ready: Callable[[int], None] | None = None,
                       shutdown_timeout: float = SHUTDOWN_TIMEOUT, drain_timeout: float = DRAIN_TIMEOUT,
                       tuned_gc: bool = True) -> None:
    """One edge worker until SIGTERM/SIGINT (or `stop`). `ready(port)` is called once it listens."""
    from aiohttp import web

    from ingest import metrics  # here, not at import: after PROMETHEUS_MULTIPROC_DIR is set
    from ingest.app import create_app
    from ingest.fastpath import EdgeSite
    from ingest.serverlog import quiet_bad_requests
    from ingest.serving import ServerLimits

    quiet_bad_requests(metrics.BAD_REQUESTS.inc)  # counted per edge worker (pixeltrack_edge_bad_requests_total)
    stop = stop or asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)
    app = create_app(worker_settings(settings, index, workers),
                     spool_dir=worker_spool(settings.spool_dir, index), metrics_dir=metrics_dir,
                     drain_timeout=drain_timeout, adopt=orphan_spools(settings.spool_dir, index, workers))
    # Deadlines and the connection cap (ingest/serving.py): the cap leaves FD_RESERVE descriptors for the
    # spool, Kafka and the metrics files, so a flood of connections never makes them fail.
    limits = ServerLimits.from_settings(settings)
    runner = limits.runner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        bind_port = settings.edge_port if port is None else port
        site: web.TCPSite = (
            EdgeSite(runner, settings.edge_host, bind_port, reuse_port=workers > 1, backlog=1024, limits=limits)
            if settings.edge_fast_path else
            limits.site(runner, settings.edge_host, bind_port, server="edge", reuse_port=workers > 1, backlog=1024))
        await site.start()
        bound = runner.addresses[0][1]
        if tuned_gc:
            tune_gc_for_edge()
        log.info("edge worker %d (pid %d) listening on %s:%d (at most %d connections, head within %gs, idle "
                 "keep-alive %gs)", index, os.getpid(), settings.edge_host, bound, limits.max_connections,
                 limits.header_timeout, limits.keepalive_timeout)
        if ready is not None:
            ready(bound)
        await stop.wait()
        log.info("edge worker %d stopping: no new connections, draining", index)
    finally:
        # Stops accepting, finishes requests, then the forwarder drains.
        # What Kafka has not acknowledged is in the spool, and the next start replays it.
        await end_within(runner.cleanup(), shutdown_timeout + drain_timeout + CLOSE_MARGIN,
                         "the spool keeps what is unpublished")
    log.info("edge worker %d stopped", index)


def _worker_process(settings: Settings, index: int, workers: int, metrics_dir: str | None, port: int,
                    ready: Any) -> None:
    """Entry of a worker process (spawned: a fresh interpreter, which reads PROMETHEUS_MULTIPROC_DIR)."""
    _stop_with_parent()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s")
    run(serve_worker(settings, index, workers, metrics_dir=Path(metrics_dir) if metrics_dir else None,
                           port=port, ready=lambda _port: ready.put(index)))


def _stop_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by kill -9), so a worker never outlives
    it holding the port and its spool; it then drains and exits like on any SIGTERM."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A bound (not listening) SO_REUSEPORT socket: fixes the port when 0 was asked for, and fails
    early, in the supervisor, when the address is taken by a process outside the group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, sock.getsockname()[1]


class Supervisor:
    """Starts, watches and stops the worker processes (see the module docstring)."""

    def __init__(self, settings: Settings, workers: int, announce: Callable[[str], None]) -> None:
        self.settings = settings
        self.workers = workers
        self._announce = announce
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[int, Any] = {}
        self._started: dict[int, float] = {}
        self._stopping = False
        self._fast_exits = 0
        self._ready = self._ctx.Queue()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _spawn(self, index: int, metrics_dir: str, port: int) -> None:
        proc = self._ctx.Process(target=_worker_process, name=f"pixeltrack-edge-{index}",
                                 args=(self.settings, index, self.workers, metrics_dir, port, self._ready))
        proc.start()
        self._procs[index] = proc
        self._started[index] = time.monotonic()

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="pixeltrack-edge-metrics-")
        # Read by prometheus_client when a worker imports it; the workers are fresh interpreters.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        reserved, port = _reserve_port(self.settings.edge_host, self.settings.edge_port)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for i in range(self.workers):
                self._spawn(i, metrics_dir, port)
            return self._watch(metrics_dir, port)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reserved.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _watch(self, metrics_dir: str, port: int) -> int:
        from prometheus_client import multiprocess

        up: set[int] = set()
        announced = False
        backoff: dict[int, float] = {}
        restart_at: dict[int, float] = {}
        while not self._stopping:
            sentinels = [p.sentinel for p in self._procs.values() if p.is_alive()]
            multiprocessing.connection.wait(sentinels, timeout=0.25)
            while not self._ready.empty():
                with contextlib.suppress(Exception):
                    up.add(self._ready.get_nowait())
            if not announced and len(up) >= self.workers:
                announced = True
                self._announce(f"pixeltrack edge: {self.workers} workers on "
                               f"http://{self.settings.edge_host}:{port} (pid {os.getpid()})")
            now = time.monotonic()
            for i, proc in list(self._procs.items()):
                if proc.is_alive() or self._stopping:
                    continue
                if i not in restart_at:
                    proc.join()
                    multiprocess.mark_process_dead(proc.pid, metrics_dir)  # type: ignore[no-untyped-call]
                    lived = now - self._started[i]
                    self._fast_exits = self._fast_exits + 1 if lived < FAST_EXIT_S else 0
                    if self._fast_exits >= MAX_FAST_EXITS:
                        log.error("edge workers keep exiting right after start (last: worker %d, code %s); "
                                  "giving up", i, proc.exitcode)
                        return 1
                    delay = backoff.get(i, 0.5) if lived < 30 else 0.5
                    backoff[i] = min(delay * 2, 10.0)
                    restart_at[i] = now + delay
                    log.warning("edge worker %d (pid %s) exited with code %s after %.1fs; restarting in %.1fs",
                                i, proc.pid, proc.exitcode, lived, delay)
                elif now >= restart_at[i]:
                    del restart_at[i]
                    self._spawn(i, metrics_dir, port)
        return 0

    def _stop_all(self) -> None:
        alive = [p for p in self._procs.values() if p.is_alive()]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        # A little past the bound each worker holds itself to, so a stuck one logs why before it is killed.
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT + DRAIN_TIMEOUT + CLOSE_MARGIN + 3.0
        for p in alive:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in alive:
            if p.is_alive():
                log.error("edge worker pid %d did not stop in time; killed (its spool keeps its hits)", p.pid)
                p.kill()
                p.join()


def edge_banner(settings: Settings) -> str:
    """What the edge says at its start: the broker and the topics it produces to (it writes no ClickHouse)."""
    topics = Topics(settings.topic_prefix)
    return (f"pixeltrack edge: Kafka {settings.kafka_bootstrap}{settings.kafka_bootstrap_origin()}, topics "
            f"{topics.hits_raw}, {topics.hits_dlq}, {topics.unsubscribes} (prefix {settings.topic_prefix!r})")


def run_edge(settings: Settings, workers: int = 1, announce: Callable[[str], None] | None = None) -> int:
    """Runs the edge in the foreground until SIGTERM/SIGINT; the exit code. `workers` 1: this process
    is the edge; more: a supervisor with that many worker processes on one port."""
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    settings.keyring()  # fail here, with the setting's name, not in every worker
    say = announce or (lambda line: print(line, flush=True))
    say(edge_banner(settings))
    if workers == 1:
        def ready(port: int) -> None:
            say(f"pixeltrack edge: 1 worker on http://{settings.edge_host}:{port} (pid {os.getpid()})")

        run(serve_worker(settings, 0, 1, ready=ready))
        return 0
    return Supervisor(settings, workers, say).run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ingest.workers [--workers N] [--host H] [--port P]`: the edge from PIXELTRACK_* settings
    (what `pixeltrack edge --workers N` runs)."""
    import argparse

    from pydantic import ValidationError

    p = argparse.ArgumentParser(prog="python -m ingest.workers", description=main.__doc__)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"pixeltrack edge: bad setting:\n{exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("edge_host", args.host), ("edge_port", args.port)) if v is not None}
    try:
        return run_edge(settings.model_copy(update=overrides), args.workers)
    except ValueError as exc:
        print(f"pixeltrack edge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
