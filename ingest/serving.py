"""Deadlines and the connection cap every pixeltrack HTTP server shares: edge, ingest API, dashboard, serve, a
processor's /metrics (pixeltrack/compose/metrics.py).

Three bounds, so a slow or silent client costs a descriptor for seconds, not an hour:

- head deadline: a connection must deliver a whole request head within `header_timeout` of being
  accepted, and later ones within `header_timeout` of their first byte (a slow loris trickling a head
  byte by byte is closed). aiohttp has no such deadline; `GuardedConnection` adds it around aiohttp's
  RequestHandler, and the edge's fast path checks it in its sweep (ingest/fastpath.py).
- keep-alive: an idle connection (no request under way) is closed after `keepalive_timeout` (aiohttp's
  own keep-alive timer, which AppRunner otherwise sets to 3,630 s; `ServerLimits.runner` passes ours).
- connection cap: at most `max_connections` connections open at once in the process, across all its
  servers (descriptors are a per-process resource). The default is the soft RLIMIT_NOFILE minus a
  reserve for what else the process opens (spool segments and lock, Kafka connections, metrics files,
  the event loop's own descriptors; chDB's files under `serve`). A connection over the cap is accepted
  and closed at once with a 503, counted in pixeltrack_connections_refused_total{server}: the process
  never reaches EMFILE, so the spool's fsync and Kafka's connects keep working and, as soon as a slot
  frees, a new client is served.

The head deadline reads two attributes of aiohttp's RequestHandler (`_messages`: heads parsed and not
yet served; `_request_in_progress`): there is no public way to know whether a connection is between
requests. `check_aiohttp_internals` verifies them when a server starts and refuses to start, naming the
aiohttp version, if they moved; pyproject.toml pins the aiohttp range this was tested on.
"""

from __future__ import annotations

import asyncio
import collections
import resource
from collections.abc import Callable
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter, Gauge

from schemas.runtime import stop_on_signals
from schemas.settings import Settings

_DEFAULTS = Settings.model_fields
HEADER_TIMEOUT: float = _DEFAULTS["header_timeout_seconds"].default
KEEPALIVE_TIMEOUT: float = _DEFAULTS["keepalive_timeout_seconds"].default
# Descriptors an edge worker keeps for itself beyond its connections: stdio, the event loop's epoll and
# wake-up pipe, the listening socket, the spool's lock and segment files (one written, one replayed),
# a connection per Kafka broker, prometheus' multiprocess files, the supervisor's queue. Measured: 16 for
# an idle worker; 64 leaves room for every broker of a cluster and a former worker's spool to replay.
FD_RESERVE = 64
# `pixeltrack serve` also runs chDB in its process, which opens files per table part while it merges.
SERVE_FD_RESERVE = 512

CONNECTIONS_OPEN = Gauge("pixeltrack_connections_open", "Client connections open, by server (edge, api, "
                         "dashboard, admin, metrics).", ["server"], multiprocess_mode="livesum")
CONNECTIONS_REFUSED = Counter("pixeltrack_connections_refused_total", "Connections closed on arrival because "
                              "the process had max_connections open, by server.", ["server"])
HEAD_TIMEOUTS = Counter("pixeltrack_head_timeouts_total", "Connections closed because a request head was not "
                        "complete within header_timeout_seconds, by server.", ["server"])

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
           b"Connection: close\r\n\r\n")


def fd_soft_limit() -> int:
    """The process's soft RLIMIT_NOFILE (unlimited read as 2**20)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY or soft < 0 else soft


def default_cap(reserve: int = FD_RESERVE) -> int:
    """The connection cap for this process: the soft descriptor limit minus `reserve`, but never below a
    quarter of the limit (a tiny limit still serves someone)."""
    soft = fd_soft_limit()
    return max(soft - reserve, soft // 4, 1)


class ServerLimits:
    """The deadlines and the connection cap of one process's servers. Make one per process and give it
    to every server the process runs: the cap counts the process's descriptors."""

    __slots__ = ("header_timeout", "keepalive_timeout", "max_connections", "open")

    def __init__(self, header_timeout: float = HEADER_TIMEOUT, keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                 max_connections: int = 0, *, reserve: int = FD_RESERVE) -> None:
        if not header_timeout > 0:
            raise ValueError(f"header_timeout={header_timeout!r}: must be > 0 seconds")
        if not keepalive_timeout > 0:
            raise ValueError(f"keepalive_timeout={keepalive_timeout!r}: must be > 0 seconds")
        if max_connections < 0:
            raise ValueError(f"max_connections={max_connections!r}: must be >= 0 (0: from the descriptor limit)")
        self.header_timeout = float(header_timeout)
        self.keepalive_timeout = float(keepalive_timeout)
        self.max_connections = max_connections or default_cap(reserve)
        self.open = 0

    @classmethod
    def from_settings(cls, settings: Settings, *, reserve: int = FD_RESERVE) -> ServerLimits:
        return cls(settings.header_timeout_seconds, settings.keepalive_timeout_seconds, settings.max_connections,
                   reserve=reserve)

    def take(self, server: str) -> bool:
        """A slot for a new connection to `server`, or False (counted as refused) when the cap is reached."""
        if self.open >= self.max_connections:
            CONNECTIONS_REFUSED.labels(server).inc()
            return False
        self.open += 1
        CONNECTIONS_OPEN.labels(server).inc()
        return True

    def release(self, server: str) -> None:
        self.open -= 1
        CONNECTIONS_OPEN.labels(server).dec()

    def runner(self, app: web.Application, **kwargs: Any) -> web.AppRunner:
        """An AppRunner with this process's keep-alive timeout (no access log, no signal handlers: the
        caller owns the process's signals)."""
        kwargs.setdefault("access_log", None)
        kwargs.setdefault("handle_signals", False)
        return web.AppRunner(app, keepalive_timeout=self.keepalive_timeout, **kwargs)

    def site(self, runner: web.BaseRunner, host: str | None, port: int, *, server: str,
             **kwargs: Any) -> LimitedSite:
        """A TCP site of `runner` held to these limits; `server` names it in the metrics."""
        return LimitedSite(runner, host, port, limits=self, server=server, **kwargs)


def refuse(transport: asyncio.BaseTransport) -> None:
    """Answers a connection over the cap with a 503 and closes it (its descriptor is freed at once)."""
    writable = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
    writable.write(REFUSED)
    writable.close()


def check_aiohttp_internals(server: web.Server) -> None:
    """Raises RuntimeError, at start, when aiohttp's RequestHandler no longer has what the head deadline
    reads (a newer aiohttp than pyproject.toml allows): better than a server without the deadline."""
    handler = server()
    messages = getattr(handler, "_messages", None)
    in_progress = getattr(handler, "_request_in_progress", None)
    if not isinstance(messages, collections.deque) or not isinstance(in_progress, bool):
        raise RuntimeError(f"aiohttp {aiohttp.__version__}: RequestHandler._messages/_request_in_progress moved; "
                           "the head deadline (ingest/serving.py) needs them: install the aiohttp range "
                           "pyproject.toml pins")


def awaiting_head(handler: RequestHandler) -> bool:
    """Whether aiohttp's handler is between requests: no head parsed and waiting, none being served."""
    return not handler._messages and not handler._request_in_progress


class GuardedConnection(asyncio.Protocol):
    """aiohttp's RequestHandler for one connection, with the head deadline and a slot under the cap.

    The deadline is one TimerHandle per connection: armed at accept, and again by the first bytes of a
    head that arrive while the handler is between requests; cancelled when a data_received call leaves
    a head parsed (or a request being served). When it fires and the handler is still between requests,
    the connection is closed. Bytes that arrive while a request is being served (a body, a pipelined
    head) do not arm it; aiohttp's keep-alive timer bounds that case."""

    __slots__ = ("_handler", "_limits", "_loop", "_server", "_since", "_taken", "_timer")

    def __init__(self, handler: RequestHandler, limits: ServerLimits, server: str, *, taken: bool = False,
                 head_since: float | None = None) -> None:
        self._handler: RequestHandler | None = handler
        self._limits = limits
        self._server = server
        self._taken = taken  # True: the connection already holds a slot (handed over by the fast path)
        self._since = head_since  # when the pending head's clock started (None: at connection_made)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._taken and not self._limits.take(self._server):
            self._handler = None
            refuse(transport)
            return
        self._taken = True
        since = self._loop.time() if self._since is None else self._since
        self._timer = self._loop.call_at(since + self._limits.header_timeout, self._expire)
        assert self._handler is not None
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        handler.data_received(data)
        if handler._messages or handler._request_in_progress:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif self._timer is None:
            self._timer = self._loop.call_at(self._loop.time() + self._limits.header_timeout, self._expire)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            self._handler.eof_received()
        return None  # as aiohttp's handler: the transport closes itself after the client's EOF

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._taken:
            self._taken = False
            self._limits.release(self._server)
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.connection_lost(exc)

    def _expire(self) -> None:
        self._timer = None
        handler = self._handler
        if handler is not None and awaiting_head(handler):
            HEAD_TIMEOUTS.labels(self._server).inc()
            handler.force_close()


class LimitedSite(web.TCPSite):
    """A TCPSite whose connections are held to a ServerLimits (head deadline, connection cap)."""

    def __init__(self, runner: web.BaseRunner, host: str | None = None, port: int | None = None, *,
                 limits: ServerLimits, server: str, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.limits = limits
        self.server_name = server
        CONNECTIONS_OPEN.labels(server).inc(0)  # the series exist (at 0) from the start
        CONNECTIONS_REFUSED.labels(server).inc(0)
        HEAD_TIMEOUTS.labels(server).inc(0)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        handlers = self._runner.server
        assert isinstance(handlers, web.Server)
        check_aiohttp_internals(handlers)
        limits, name = self.limits, self.server_name
        self._server = await loop.create_server(
            lambda: GuardedConnection(handlers(), limits, name), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


async def serve_until_stopped(app: web.Application, host: str, port: int, *, limits: ServerLimits, server: str,
                              announce: Callable[[str], None] | None = None,
                              stop: asyncio.Event | None = None) -> None:
    """Serves `app` on host:port under `limits` until SIGINT/SIGTERM (or `stop`): what web.run_app does,
    with the deadlines and the cap (`pixeltrack api` runs the ingest API with it)."""
    stop = stop or asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)
    runner = limits.runner(app)
    await runner.setup()
    try:
        site = limits.site(runner, host, port, server=server)
        await site.start()
        if announce is not None:
            announce(f"pixeltrack {server} on http://{host}:{site.port} (at most {limits.max_connections} "
                     f"connections; Ctrl-C stops)")
        await stop.wait()
    finally:
        await runner.cleanup()
