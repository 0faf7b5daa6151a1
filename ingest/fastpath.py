"""The edge's fast path: plain pixel and click fetches answered straight from the connection.

aiohttp's request machinery (Request and Response objects, router, middlewares, header rendering,
a task per request) costs about as much CPU as everything the edge does for a hit, and an edge does
nothing else all day. So the edge's listening socket speaks a thin protocol first:

- bytes are buffered until a request head is complete (CRLF CRLF);
- the head must look like `GET|HEAD /o/<token>` or `/c/<token>` (token characters only, an optional
  query string) and is then parsed by aiohttp's own HTTP parser (llhttp, with the edge's limits);
- a head that parses to exactly one request, with no body, no upgrade and a Host header, is answered
  at once by the same Edge methods the aiohttp handlers call: same token checks, same journal and
  queue, same dead letters; the answer is pre-rendered bytes plus Date and Connection lines.

Anything else — another route, a body, a parse error, an odd target, a head too long, bare-LF line
ends — hands the connection, with every byte not yet answered, to aiohttp's RequestHandler for good
(transport.set_protocol), which serves it exactly as if it had accepted it: its error answers
(400/413/431), /u/, /healthz, /readyz, /metrics. Nothing is parsed by hand beyond finding the end of a
head, so request framing is aiohttp's; a request is answered once, by one of the two.

Connections that stay idle (no byte) for the keep-alive timeout are closed by one sweeper per site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.tcp_helpers import tcp_nodelay

from ingest import metrics
from ingest.app import EDGE, SERVER_LIMITS, Edge
from ingest.pixel import GIF, NOT_FOUND_HEADERS, NOT_FOUND_HTML, PIXEL_HEADERS, REDIRECT_HEADERS

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = 75.0  # aiohttp's default: an idle keep-alive connection is closed after this
SWEEP_INTERVAL = 5.0
# The longest head taken on the fast path; longer ones go to aiohttp, whose limits answer them.
MAX_FAST_HEAD = SERVER_LIMITS["max_line_size"] + 8 * 1024
# A request line the fast path may take: method, /o/ or /c/, one path segment of token characters
# (a ".gif" suffix is token characters too), an optional query string, HTTP/1.x.
_FAST_LINE = re.compile(rb"(GET|HEAD) /([oc])/([A-Za-z0-9_.-]+)(\?[^ \r\n]*)? HTTP/1\.[01]\r\n")
_PREFIXES = (b"GET /o/", b"GET /c/", b"HEAD /o/", b"HEAD /c/")


def _head(status: str, headers: Any, length: int) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n").encode()


PIXEL_HEAD = _head("200 OK", PIXEL_HEADERS, len(GIF))
NOT_FOUND_HEAD = _head("404 Not Found", NOT_FOUND_HEADERS, len(NOT_FOUND_HTML))
REDIRECT_HEAD = _head("302 Found", REDIRECT_HEADERS, 0)
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"  # for HTTP/1.0 clients that asked for it


class _Clock:
    """The Date line, rendered again each second by EdgeSite's ticker (as aiohttp does), so an answer
    reads an attribute instead of the time."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = b""
        self.tick()

    def tick(self) -> float:
        """Renders the line for now; the seconds to the next whole second."""
        now = time.time()
        self.line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return 1.0 - (now % 1.0)


class FastPathProtocol(asyncio.Protocol):
    """One client connection, answered on the fast path until a request needs aiohttp."""

    __slots__ = ("_buf", "_clock", "_conns", "_edge", "_last", "_loop", "_parser", "_paused", "_peer",
                 "_server", "transport")

    def __init__(self, edge: Edge, server: web.Server, conns: set[FastPathProtocol], clock: _Clock) -> None:
        self._edge = edge
        self._server = server
        self._conns = conns
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._buf = b""
        self._parser: HttpRequestParser | None = None
        self._paused = False
        self._peer: str | None = None
        self._last = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        tcp_nodelay(self.transport, True)  # each answer is one small write: never hold it back (Nagle)
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple | list) and peer else None
        self._last = self._loop.time()
        self._conns.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._conns.discard(self)
        self.transport = None
        self._parser = None

    def pause_writing(self) -> None:  # the client does not read its answers: stop reading its requests
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    def idle_since(self) -> float:
        return self._last

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        buf = self._buf + data if self._buf else data
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_FAST_HEAD or not may_be_fast(buf) or b"\n\n" in buf or b"\n\r\n" in buf:
                    self._hand_over(buf)
                    return
                break
            end += 4
            try:
                answered = self._answer(buf[:end])
            except Exception:  # a bug of ours: never a 5xx nor a dead loop; the client may try again
                log.exception("edge fast path: request not answered; connection closed")
                if self.transport is not None:
                    self.transport.close()
                return
            if not answered:
                self._hand_over(buf)
                return
            buf = buf[end:]
            if self.transport is None or self.transport.is_closing():
                return
        self._buf = buf

    def _answer(self, head: bytes) -> bool:
        """Answers `head` (one whole request head) if it is a plain fast-path request; False if not,
        and nothing was done (aiohttp takes the connection from this head on)."""
        line = _FAST_LINE.match(head)
        if line is None or end_of_line(head) != line.end():
            return False
        parser = self._parser
        if parser is None:
            parser = self._parser = HttpRequestParser(None, self._loop, 2 ** 16, **SERVER_LIMITS)
        try:
            messages, upgraded, tail = parser.feed_data(head)
        except (HttpProcessingError, ValueError):  # aiohttp answers it (400), from the same bytes
            self._parser = None
            return False
        if len(messages) != 1 or upgraded or tail:
            self._parser = None
            return False
        message, payload = messages[0]
        host = message.headers.get("Host")
        if payload is not EMPTY_PAYLOAD or message.chunked or message.upgrade or not host:
            self._parser = None
            return False
        method, route, name = line.group(1), line.group(2), line.group(3).decode()
        edge = self._edge
        headers = message.headers
        raw_path = message.path
        if route == b"o":
            edge.open_hit(host, name, method.decode(), raw_path, headers, self._peer)
            status_head, body = PIXEL_HEAD, GIF
        else:
            location = edge.click_hit(host, name, method.decode(), raw_path, headers, self._peer)
            if location is None:
                status_head, body = NOT_FOUND_HEAD, NOT_FOUND_HTML
            else:
                status_head = REDIRECT_HEAD + b"Location: " + location.encode() + b"\r\n"
                body = b""
        close = message.should_close
        connection = CLOSE if close else (KEEP_ALIVE if message.version.minor == 0 else b"")
        out = status_head + self._clock.line + connection + b"\r\n"
        transport = self.transport
        assert transport is not None
        transport.write(out + body if method == b"GET" else out)
        if close:
            transport.close()
        return True

    def _hand_over(self, buf: bytes) -> None:
        """aiohttp serves this connection from now on, starting with `buf` (bytes not yet answered)."""
        transport = self.transport
        self._buf = b""
        self._parser = None
        self._conns.discard(self)
        if transport is None or transport.is_closing():
            return
        metrics.HANDED_OVER.inc()
        handler = self._server()
        transport.set_protocol(handler)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        handler.connection_made(transport)
        handler.data_received(buf)

    def close_idle(self) -> None:
        if self.transport is not None:
            self.transport.close()


def may_be_fast(buf: bytes) -> bool:
    """Whether a head still arriving could be a fast-path request (else aiohttp takes it now)."""
    return buf.startswith(_PREFIXES) or (len(buf) < 8 and any(p.startswith(buf) for p in _PREFIXES))


def end_of_line(head: bytes) -> int:
    return head.find(b"\r\n") + 2


class EdgeSite(web.TCPSite):
    """A TCPSite whose connections start on the fast path (see the module's docstring)."""

    def __init__(self, runner: web.BaseRunner, host: str | None = None, port: int | None = None, *,
                 backlog: int = 1024, reuse_address: bool | None = None, reuse_port: bool | None = None,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_address=reuse_address, reuse_port=reuse_port)
        self._conns: set[FastPathProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._keepalive_timeout = keepalive_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert isinstance(server, web.Server)
        app = getattr(self._runner, "app", None)
        assert app is not None, "EdgeSite serves an AppRunner of the edge's app"
        edge = app[EDGE]
        clock = _Clock()
        conns = self._conns
        self._server = await loop.create_server(
            lambda: FastPathProtocol(edge, server, conns, clock), self._host, self._port,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
        self._sweeper = asyncio.create_task(self._sweep(clock), name="pixeltrack-fastpath-sweeper")

    async def _sweep(self, clock: _Clock) -> None:
        """Each second: the Date line; every few: closes connections idle past the keep-alive timeout."""
        loop = asyncio.get_running_loop()
        every = min(SWEEP_INTERVAL, self._keepalive_timeout)
        next_sweep = loop.time() + every
        while True:
            await asyncio.sleep(min(clock.tick() + 0.001, every))
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + every
                cutoff = loop.time() - self._keepalive_timeout
                for conn in [c for c in self._conns if c.idle_since() < cutoff]:
                    conn.close_idle()

    async def stop(self) -> None:
        """Stops listening and closes the fast path's connections (between requests: every fast answer
        is written before the next byte is read); aiohttp's connections are the runner's to finish."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().stop()
        for conn in list(self._conns):
            conn.close_idle()
