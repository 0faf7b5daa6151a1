"""The edge's fast path: plain pixel, click, download and image fetches answered straight from the connection.

aiohttp's request machinery (Request and Response objects, router, middlewares, header rendering,
a task per request) costs about as much CPU as everything the edge does for a hit, and an edge does
nothing else all day. So the edge's listening socket speaks a thin protocol first:

- bytes are buffered until a request head is complete (CRLF CRLF);
- the head is taken only if it matches, whole, a strict subset of HTTP/1.x (`parse_head`): `GET|HEAD
  /o/<token>`, `/c/<token>`, `/d/<token>` or `/i/<token>` (token characters only, an optional query of
  visible ASCII), then header lines of a token name, a colon, at most one space and a value without
  surrounding blanks or control bytes, within the edge's limits; exactly one non-empty Host; no
  Content-Length, Transfer-Encoding, Upgrade or Expect (so no body: the head is the whole request, for any parser);
- such a request becomes the same RequestFacts the aiohttp front end builds (ingest.edge) and is
  answered at once by the same Edge methods: same token checks, same journal and queue, same dead
  letters; the answer is pre-rendered bytes plus Date and Connection lines.

Anything else — another route, a body, an odd target or header, a head too long, bare-LF line ends —
hands the connection, with every byte not yet answered, to aiohttp's RequestHandler for good
(transport.set_protocol), which serves it exactly as if it had accepted it: its error answers
(400/413/431), /u/, /healthz, /readyz, /metrics. A request is answered once, by one of the two. The
subset is checked against aiohttp's own parser by a differential property test (whatever parse_head
takes, aiohttp's parser reads the same method, target, version, headers and keep-alive from it).
(aiohttp's C parser was the first version: it costs about three times as much, most of it building a
URL object the edge never reads.)

Deadlines and the cap (ingest/serving.py) hold here too, checked by one sweeper per site rather than a
timer per request: a head not complete `header_timeout` after the connection opened or the head's first
byte arrived, and a connection that sent no byte for `keepalive_timeout`, are closed; a
connection over the process's cap is refused on arrival. A connection handed to aiohttp keeps its slot
and the clock of its pending head (serving.GuardedConnection takes over both).

aiohttp's public API here: web.Server as the protocol factory of a handed-over connection, AppRunner's
server and app, BaseSite.start/stop (which register the site with its runner). Private names, each
checked so that an aiohttp beyond the range pyproject.toml pins fails loudly, naming it:
- BaseSite._server and TCPSite._bound_port, set by EdgeSite.start: a site has no public way to hand
  aiohttp its listener (stop() closes it, runner.addresses lists it): check_site_internals, at start;
- RequestHandler._messages/_request_in_progress, read by serving.GuardedConnection: check_aiohttp_internals;
- aiohttp.http_parser.SINGLETON_HEADERS, copied here (not imported): test_fastpath pins the copy.

Longer than 400 lines because the strict HTTP subset parser, the protocol that answers or hands a connection
to aiohttp, and the sweeper of deadlines share one connection's state and buffer; the differential test pins
the parser to aiohttp's as one unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from email.utils import formatdate
from typing import Any, NamedTuple, cast

import aiohttp
from aiohttp import web

from ingest import metrics
from ingest.app import EDGE, SERVER_LIMITS
from ingest.edge import KEPT, Edge, RequestFacts
from ingest.pages import NOT_FOUND_HEADERS, NOT_FOUND_HTML
from ingest.pixel import GIF, PIXEL_HEADERS, REDIRECT_HEADERS
from ingest.serving import HEAD_TIMEOUTS, GuardedConnection, LimitedSite, ServerLimits, check_aiohttp_internals, refuse
from schemas.records import MAX_HEADER

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 5.0  # at most; a quarter of the shortest deadline when that is shorter
SERVER = "edge"  # the metrics' label
# The longest head taken on the fast path; longer ones go to aiohttp, whose limits answer them.
MAX_FAST_HEAD = SERVER_LIMITS["max_line_size"] + 8 * 1024
_PREFIXES = (b"GET /o/", b"GET /c/", b"GET /d/", b"GET /i/", b"HEAD /o/", b"HEAD /c/", b"HEAD /d/", b"HEAD /i/")
_LINE_MAX = SERVER_LIMITS["max_line_size"]
_FIELD_MAX = SERVER_LIMITS["max_field_size"]
_HEADERS_MAX = SERVER_LIMITS["max_headers"]
# The whole head the fast path takes (see the module's docstring). A request line: method, /o/, /c/, /d/ or /i/,
# one path segment of token characters (".gif" included), an optional query of visible ASCII, HTTP/1.x.
# Header lines: RFC 9110 token, ":", an optional space, a value of visible ASCII or obs-text (0x80-0xff)
# with single spaces or tabs inside only. Lengths within the edge's parser limits, so anything aiohttp
# would refuse is not taken here either.
_TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_VCHAR = rb"[!-~\x80-\xff]"
_HEAD = re.compile(
    rb"(GET|HEAD) (/([ocdi])/([A-Za-z0-9_.-]{1,%d})(?:\?[!-~]*)?) HTTP/1\.([01])\r\n"
    rb"((?:%s{1,256}: ?(?:%s(?:[ \t]?%s)*)?\r\n){0,%d})\r\n" % (_LINE_MAX - 32, _TCHAR, _VCHAR, _VCHAR, _HEADERS_MAX),
    re.DOTALL)
_NO_BODY_ALLOWED = frozenset(("content-length", "transfer-encoding", "upgrade", "expect"))
# Headers aiohttp's parser refuses twice (a 400): aiohttp.http_parser.SINGLETON_HEADERS, a private name,
# copied so the request path imports nothing private; test_fastpath pins the copy to aiohttp's.
SINGLETON_HEADERS = frozenset(("content-length", "content-location", "content-range", "content-type", "etag",
                               "host", "max-forwards", "server", "transfer-encoding", "user-agent"))


class FastRequest(NamedTuple):
    facts: RequestFacts  # what the Edge reads (the aiohttp front end's request_facts makes the same)
    route: bytes  # b"o", b"c", b"d" or b"i"
    name: str  # the path segment after the route
    pairs: list[tuple[str, str]]  # every header line, in order (what aiohttp's parser reads: the tests')
    close: bool  # close the connection after the answer
    http10: bool


def parse_head(head: bytes, peer: str | None = None) -> FastRequest | None:
    """The request in `head` (one whole head, CRLF CRLF included), from `peer`, if it is one the fast
    path takes, else None (aiohttp parses it). Names and values are decoded as aiohttp decodes them
    (UTF-8, undecodable bytes as surrogate escapes)."""
    m = _HEAD.fullmatch(head)
    if m is None or len(head) - len(m.group(6)) > _LINE_MAX + 4:
        return None
    pairs: list[tuple[str, str]] = []
    kept: dict[str, str] = {}
    host: str | None = None
    user_agent = ""
    xff: str | None = None
    seen: set[str] = set()
    connection = ""
    block = m.group(6)
    if block:
        for line in block[:-2].split(b"\r\n"):
            if len(line) > _FIELD_MAX:
                return None
            raw_name, _, raw_value = line.partition(b":")
            name = raw_name.decode("ascii")
            value = raw_value.removeprefix(b" ").decode("utf-8", "surrogateescape")
            lower = name.lower()
            if lower in SINGLETON_HEADERS:
                if lower in seen:
                    return None  # a second Host, User-Agent, ...: aiohttp refuses it (400)
                seen.add(lower)
                if lower == "host":
                    host = value
                elif lower == "user-agent":
                    user_agent = value
                elif lower in _NO_BODY_ALLOWED:  # Content-Length, Transfer-Encoding
                    return None
            elif lower in _NO_BODY_ALLOWED:  # Upgrade, Expect
                return None
            elif lower == "connection":
                connection = f"{connection},{value.lower()}"
            if lower in KEPT:
                if lower == "x-forwarded-for":  # every line, folded, as ingest.edge.forwarded_for
                    xff = value if xff is None else f"{xff},{value}"
                if lower not in kept:  # as kept_headers does
                    kept[lower] = value[:MAX_HEADER]
            pairs.append((name, value))
    if not host:
        return None
    tokens = {t.strip() for t in connection.split(",")}
    http10 = m.group(5) == b"0"
    # As llhttp decides: HTTP/1.0 keeps the connection only when asked to, HTTP/1.1 unless asked not to.
    close = "keep-alive" not in tokens if http10 else "close" in tokens
    facts = RequestFacts(m.group(1).decode(), m.group(2).decode(), host, peer, xff, user_agent, kept, time.time())
    return FastRequest(facts, m.group(3), m.group(4).decode(), pairs, close, http10)


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

    __slots__ = ("_buf", "_clock", "_conns", "_edge", "_head_since", "_last", "_limits", "_loop", "_paused",
                 "_peer", "_server", "_taken", "transport")

    def __init__(self, edge: Edge, server: web.Server, conns: set[FastPathProtocol], clock: _Clock,
                 limits: ServerLimits) -> None:
        self._edge = edge
        self._server = server
        self._conns = conns
        self._clock = clock
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._buf = b""
        self._paused = False
        self._taken = False
        self._peer: str | None = None
        self._last = 0.0
        # When the clock of the head still to come started (accept, or its first byte); 0.0 between requests.
        self._head_since = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limits.take(SERVER):
            refuse(transport)
            return
        self._taken = True
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # each answer is one small write: never hold it back (Nagle)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple | list) and peer else None
        self._last = self._head_since = self._loop.time()
        self._conns.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._conns.discard(self)
        self.transport = None
        if self._taken:
            self._taken = False
            self._limits.release(SERVER)

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

    def head_since(self) -> float:
        return self._head_since

    def data_received(self, data: bytes) -> None:
        self._last = now = self._loop.time()
        buf = self._buf + data if self._buf else data
        if not self._head_since:
            self._head_since = now
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
            self._head_since = now if buf else 0.0  # a pipelined head's clock starts with its bytes
            if self.transport is None or self.transport.is_closing():
                return
        self._buf = buf

    def _answer(self, head: bytes) -> bool:
        """Answers `head` (one whole request head) if it is a plain fast-path request; False if not,
        and nothing was done (aiohttp takes the connection from this head on)."""
        req = parse_head(head, self._peer)
        if req is None:
            return False
        route = req.route
        if route == b"o":
            self._edge.open_hit(req.facts, req.name)
            status_head, body = PIXEL_HEAD, GIF
        else:
            edge = self._edge
            location = (edge.click_hit(req.facts, req.name) if route == b"c" else
                        edge.download_hit(req.facts, req.name) if route == b"d" else
                        edge.image_hit(req.facts, req.name))
            if location is None:
                # A bad image token gets the pixel, as aiohttp's handler answers: never a broken image.
                status_head, body = (PIXEL_HEAD, GIF) if route == b"i" else (NOT_FOUND_HEAD, NOT_FOUND_HTML)
            else:
                status_head = REDIRECT_HEAD + b"Location: " + location.encode() + b"\r\n"
                body = b""
        close = req.close
        connection = CLOSE if close else (KEEP_ALIVE if req.http10 else b"")
        out = status_head + self._clock.line + connection + b"\r\n"
        transport = self.transport
        assert transport is not None
        transport.write(out + body if req.facts.method == "GET" else out)
        if close:
            transport.close()
        return True

    def _hand_over(self, buf: bytes) -> None:
        """aiohttp serves this connection from now on, starting with `buf` (bytes not yet answered)."""
        transport = self.transport
        self._buf = b""
        self._conns.discard(self)
        if transport is None or transport.is_closing():
            return
        metrics.HANDED_OVER.inc()
        # The slot and the pending head's clock go with the connection (connection_lost is the guard's now).
        self._taken = False
        guard = GuardedConnection(self._server(), self._limits, SERVER, taken=True,
                                  head_since=self._head_since or self._loop.time())
        transport.set_protocol(guard)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        guard.connection_made(transport)
        guard.data_received(buf)

    def close_idle(self) -> None:
        if self.transport is not None:
            self.transport.close()


def may_be_fast(buf: bytes) -> bool:
    """Whether a head still arriving could be a fast-path request (else aiohttp takes it now)."""
    return buf.startswith(_PREFIXES) or (len(buf) < 8 and any(p.startswith(buf) for p in _PREFIXES))


def check_site_internals(site: web.TCPSite, runner: web.BaseRunner, bound: int) -> None:
    """Raises RuntimeError, at start, when aiohttp no longer reads a site's listener where EdgeSite puts
    it: BaseSite._server (BaseSite.stop closes it, BaseRunner.addresses lists its sockets) and
    TCPSite._bound_port (TCPSite.port reads it). A custom site has no public way to hand aiohttp its
    server; better to refuse to start, naming them, than to serve a port that stop() leaves open."""
    if site.port != bound or not any(a[1] == bound for a in runner.addresses if isinstance(a, tuple | list)):
        raise RuntimeError(f"aiohttp {aiohttp.__version__}: BaseSite._server/TCPSite._bound_port moved; the edge's "
                           "fast path (ingest/fastpath.py) sets them: install the aiohttp range pyproject.toml pins")


class EdgeSite(LimitedSite):
    """A TCPSite whose connections start on the fast path (see the module's docstring). `limits`: the
    process's (default: the settings' defaults); aiohttp's own keep-alive timer is the runner's, so make
    the runner with `limits.runner`. It reads nothing of TCPSite's but its public port; it sets the two
    fields aiohttp reads a site's listener from (check_site_internals)."""

    def __init__(self, runner: web.BaseRunner, host: str | None = None, port: int | None = None, *,
                 backlog: int = 1024, reuse_address: bool | None = None, reuse_port: bool | None = None,
                 limits: ServerLimits | None = None) -> None:
        super().__init__(runner, host, port, limits=limits or ServerLimits(), server=SERVER, backlog=backlog,
                         reuse_address=reuse_address, reuse_port=reuse_port)
        self.runner = runner
        self.host = host
        self.listen: dict[str, Any] = {"backlog": backlog, "reuse_address": reuse_address, "reuse_port": reuse_port}
        self._conns: set[FastPathProtocol] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (stop() and cleanup() find it)
        loop = asyncio.get_running_loop()
        server = self.runner.server
        assert isinstance(server, web.Server)
        assert isinstance(self.runner, web.AppRunner), "EdgeSite serves an AppRunner of the edge's app"
        edge = self.runner.app[EDGE]
        check_aiohttp_internals(server)
        clock = _Clock()
        conns, limits = self._conns, self.limits
        listener = await loop.create_server(lambda: FastPathProtocol(edge, server, conns, clock, limits),
                                            self.host, self.port, **self.listen)
        sockets = listener.sockets
        bound = sockets[0].getsockname()[1] if sockets else self.port
        self._server, self._bound_port = listener, bound
        try:
            check_site_internals(self, self.runner, bound)
        except RuntimeError:
            listener.close()
            raise
        self._sweeper = asyncio.create_task(self._sweep(clock), name="pixeltrack-fastpath-sweeper")

    async def _sweep(self, clock: _Clock) -> None:
        """Each second: the Date line; every few (a quarter of the shortest deadline at most): closes
        connections whose head is late and connections idle past the keep-alive timeout."""
        loop = asyncio.get_running_loop()
        header_timeout, keepalive_timeout = self.limits.header_timeout, self.limits.keepalive_timeout
        every = min(SWEEP_INTERVAL, header_timeout / 4, keepalive_timeout / 4)
        next_sweep = loop.time() + every
        while True:
            await asyncio.sleep(min(clock.tick() + 0.001, every))
            now = loop.time()
            if now >= next_sweep:
                next_sweep = now + every
                # The keep-alive timeout is a promise to clients and balancers ("closed within 75 s"): a
                # connection that would pass it before the next sweep is closed in this one, so closes come
                # between `every` before it and it. A late head is closed at the first sweep past its deadline.
                head_cutoff, idle_cutoff = now - header_timeout, now + every - keepalive_timeout
                for conn in list(self._conns):
                    if conn.idle_since() < idle_cutoff:
                        conn.close_idle()  # no byte for the keep-alive timeout (a head still pending included)
                    elif 0.0 < conn.head_since() < head_cutoff:
                        HEAD_TIMEOUTS.labels(SERVER).inc()
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
