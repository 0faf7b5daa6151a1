"""The edge's fast path (ingest/fastpath.py) on a real socket: it answers plain pixel and click fetches
exactly as the aiohttp handlers do, and hands everything else, byte for byte, to aiohttp."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.http_parser import SINGLETON_HEADERS, HttpRequestParser, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.test_utils import make_mocked_request
from hypothesis import event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ingest.app import SERVER_LIMITS, create_app, request_facts
from ingest.edge import RequestFacts, kept_headers
from ingest.fastpath import SINGLETON_HEADERS as FAST_SINGLETONS
from ingest.fastpath import EdgeSite, check_site_internals, parse_head
from ingest.pages import NOT_FOUND_HTML
from ingest.pixel import GIF
from ingest.serving import ServerLimits
from schemas.records import DeadLetter, RawHit, Record
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenPayload
from tests.unit.ingest.test_edge_properties import CollectingPublisher

KEYRING = Keyring({"f1": b"fastpath-secret-0123456789abcdef"}, "f1")
NOW = int(time.time() * 1000)
OPEN = KEYRING.mint(TokenPayload("open", "", "c", "A", "m-1", "r-1", NOW))
CLICK = KEYRING.mint(TokenPayload("click", "", "c", "A", "m-2", "r-2", NOW, url="https://shop.example/p?x=1"))
UA = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@dataclass
class Served:
    port: int
    publisher: CollectingPublisher
    site: web.BaseSite

    async def records(self, n: int, topic: str = "hits.raw") -> list[Record]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = [r for r in self.publisher.records if r.topic == topic]
            if len(got) >= n:
                return got
            await asyncio.sleep(0.01)
        return [r for r in self.publisher.records if r.topic == topic]


async def _serve(fast: bool, keepalive_timeout: float = 75.0) -> tuple[web.AppRunner, Served]:
    s = Settings(_env_file=None, edge_id="fp", spool_dir=None, producer_linger_ms=0)  # type: ignore[call-arg]
    publisher = CollectingPublisher()
    runner = web.AppRunner(create_app(s, publisher=publisher, keyring=KEYRING), access_log=None)
    await runner.setup()
    limits = ServerLimits(keepalive_timeout=keepalive_timeout)
    site: web.BaseSite = (EdgeSite(runner, "127.0.0.1", 0, limits=limits) if fast
                          else web.TCPSite(runner, "127.0.0.1", 0))
    await site.start()
    return runner, Served(int(runner.addresses[0][1]), publisher, site)


@pytest.fixture
async def fast() -> AsyncIterator[Served]:
    runner, served = await _serve(True)
    yield served
    await runner.cleanup()


@pytest.fixture
async def plain() -> AsyncIterator[Served]:
    runner, served = await _serve(False)
    yield served
    await runner.cleanup()


def get(path: str, *, method: str = "GET", version: str = "1.1", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/{version}\r\nHost: t.example\r\nUser-Agent: {UA}\r\nAccept: image/*\r\n"
            f"X-Forwarded-For: 203.0.113.9\r\n{extra}\r\n").encode()


async def read_answer(reader: asyncio.StreamReader, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = 0 if head_only else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return status, headers, body


async def exchange(port: int, raw: bytes, answers: int = 1, head_only: bool = False,
                   chunk: int = 0) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if chunk:
            for i in range(0, len(raw), chunk):
                writer.write(raw[i:i + chunk])
                await writer.drain()
                await asyncio.sleep(0.001)
        else:
            writer.write(raw)
        return [await read_answer(reader, head_only) for _ in range(answers)]
    finally:
        writer.close()


async def test_pixel_and_click_are_answered_and_recorded_like_aiohttp_does(fast: Served, plain: Served) -> None:
    hits = {}
    for name, served in (("fast", fast), ("plain", plain)):
        (st, h, body), = await exchange(served.port, get(f"/o/{OPEN}.gif?cb=7"))
        assert (st, body, h["content-type"], h["content-length"]) == (200, GIF, "image/gif", "43")
        assert "no-store" in h["cache-control"]
        assert "date" in h
        (st, h, body), = await exchange(served.port, get(f"/c/{CLICK}"))
        assert st == 302
        assert body == b""
        assert h["location"].startswith("https://shop.example/p?x=1&pt_cid=")
        assert h["referrer-policy"] == "no-referrer"
        hits[name] = [RawHit.decode(r.value) for r in await served.records(2)]
    for f, p in zip(hits["fast"], hits["plain"], strict=True):
        assert (f.kind, f.method, f.host, f.path, f.token, f.ip, f.ua, f.headers) == (
            p.kind, p.method, p.host, p.path, p.token, p.ip, p.ua, p.headers)
    assert hits["fast"][0].path == f"/o/{OPEN}.gif?cb=7"


async def test_head_has_no_body_and_bad_tokens_get_pixel_or_404_with_a_dead_letter(fast: Served) -> None:
    (st, h, _body), = await exchange(fast.port, get(f"/o/{OPEN}.gif", method="HEAD"), head_only=True)
    assert (st, h["content-length"]) == (200, "43")
    forged = CLICK[:-3] + ("AAA" if not CLICK.endswith("AAA") else "BBB")
    answers = await exchange(fast.port, get("/o/f1.junk.AAAAAAAAAAAAAAAAAAAAAA.gif") + get(f"/c/{forged}"), 2)
    assert [(a[0], a[2]) for a in answers] == [(200, GIF), (404, NOT_FOUND_HTML)]
    letters = [DeadLetter.decode(r.value) for r in await fast.records(2, "hits.dlq")]
    assert [(d.kind, d.reason) for d in letters] == [("open", "bad_signature"), ("click", "bad_signature")]


async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(fast: Served) -> None:
    raw = get(f"/o/{OPEN}") + get(f"/c/{CLICK}") + get("/healthz") + get(f"/o/{OPEN}.gif") + get("/readyz")
    handed_over = REGISTRY.get_sample_value("pixeltrack_edge_handed_over_total") or 0.0
    answers = await exchange(fast.port, raw, 5)
    assert REGISTRY.get_sample_value("pixeltrack_edge_handed_over_total") == handed_over + 1
    assert [a[0] for a in answers] == [200, 302, 200, 200, 200]
    assert answers[2][2] == b'{"status": "ok"}'
    assert answers[3][2] == GIF
    assert b"ready" in answers[4][2]
    assert len(await fast.records(3)) == 3


async def test_a_request_in_pieces_and_one_with_a_body_are_still_answered(fast: Served) -> None:
    assert (await exchange(fast.port, get(f"/o/{OPEN}.gif"), chunk=7))[0][2] == GIF
    # A GET with a body is not a plain fetch: aiohttp takes it (and the request after it).
    raw = get(f"/o/{OPEN}.gif", extra="Content-Length: 5\r\n") + b"hello" + get(f"/o/{OPEN}.gif")
    assert [a[2] for a in await exchange(fast.port, raw, 2)] == [GIF, GIF]
    chunked = get(f"/o/{OPEN}.gif", extra="Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n"
    assert (await exchange(fast.port, chunked + get(f"/c/{CLICK}"), 2))[1][0] == 302


async def test_connection_close_and_http10_are_honoured(fast: Served) -> None:
    for raw in (get(f"/o/{OPEN}", extra="Connection: close\r\n"), get(f"/o/{OPEN}", version="1.0")):
        reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
        writer.write(raw)
        st, h, body = await read_answer(reader)
        assert (st, body, h["connection"]) == (200, GIF, "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the edge
        writer.close()
    (st, h, _), = await exchange(fast.port, get(f"/o/{OPEN}", version="1.0", extra="Connection: keep-alive\r\n"))
    assert (st, h["connection"]) == (200, "keep-alive")


async def test_what_the_fast_path_does_not_take_gets_aiohttps_answer(fast: Served, plain: Served) -> None:
    cases = [
        get("/o/a%2Eb.gif"),  # percent-encoding: aiohttp decodes, so aiohttp routes it
        get(f"/c/{CLICK}", extra="X-Long: " + "x" * 9000 + "\r\n"),  # past the header limit: 431/400
        f"GET /o/{OPEN}.gif HTTP/1.1\nHost: t.example\n\n".encode(),  # bare LF line ends
        get(f"/c/{CLICK}").replace(b"Host: t.example\r\n", b""),  # no Host
        f"GET /o/{OPEN}.gif HTTP/1.1\r\nHost: t.example\r\nHost: u.example\r\n\r\n".encode(),
        b"GET /o/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: t.example\r\n\r\n",  # request line too long
        get("/metrics/"), get(f"/u/{CLICK}"), get(f"/o/{OPEN}", method="POST", extra="Content-Length: 0\r\n"),
    ]
    for raw in cases:
        want = (await exchange(plain.port, raw + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 1))[0]
        got = (await exchange(fast.port, raw + b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 1))[0]
        assert (got[0], got[2]) == (want[0], want[2]), raw[:60]


async def test_idle_connections_are_closed_and_stop_closes_the_rest() -> None:
    runner, served = await _serve(True, keepalive_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(get(f"/o/{OPEN}"))
        assert (await read_answer(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 2) == b""  # idle past the timeout: closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /o/")  # a head that never ends (slowloris) is idle too
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(get(f"/o/{OPEN}"))
        assert (await read_answer(reader))[0] == 200
        await served.site.stop()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    finally:
        await runner.cleanup()


# --- parse_head against aiohttp's own parser (differential) ---------------------------------------------

def aiohttp_message(head: bytes) -> RawRequestMessage | None:
    """The request aiohttp's parser (with the edge's limits) reads from `head`: None if it refuses it or
    finds anything but one bodiless, non-upgrade request."""
    parser = HttpRequestParser(None, None, 2 ** 16, **SERVER_LIMITS)  # type: ignore[arg-type]
    try:
        messages, upgraded, tail = parser.feed_data(head)
    except Exception:
        return None
    if len(messages) != 1 or upgraded or tail:
        return None
    message, payload = messages[0]
    if payload is not EMPTY_PAYLOAD or message.chunked or message.upgrade:
        return None
    return message


def aiohttp_reads(head: bytes) -> tuple[str, str, int, list[tuple[str, str]], bool] | None:
    """What aiohttp's parser reads from `head` (aiohttp_message): method, target, minor version, headers,
    whether the connection closes after it."""
    message = aiohttp_message(head)
    if message is None:
        return None
    return (message.method, message.path, message.version.minor, list(message.headers.items()),
            message.should_close)


class PeerTransport:
    """A transport as far as web.Request reads one: the client's address."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.peer, 40000) if name == "peername" else default


def aiohttp_facts(head: bytes, peer: str) -> RequestFacts | None:
    """The facts the aiohttp front end (ingest.app.request_facts) hands the Edge for `head`, parsed by
    aiohttp's parser."""
    message = aiohttp_message(head)
    if message is None:
        return None
    request = make_mocked_request(message.method, message.path, message.headers, version=message.version,
                                  transport=PeerTransport(peer), loop=None)
    return request_facts(request)


VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
TCHARS = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
obs_text = st.binary(min_size=1, max_size=20).map(lambda b: bytes(c | 0x80 for c in b).decode("latin-1"))
# Parts of heads the fast path should take, and parts that should send a head to aiohttp.
GOOD = {
    "method": st.sampled_from(["GET", "HEAD"]),
    "route": st.sampled_from(["/o/", "/c/", "/d/", "/i/"]),
    "name": st.one_of(st.just(OPEN), st.just(CLICK), st.text(alphabet="aZ09_.-", min_size=1, max_size=20)),
    "query": st.one_of(st.just(""), st.text(alphabet=VISIBLE, max_size=20).map(lambda q: "?" + q)),
    "version": st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
    "host": st.sampled_from(["Host: t.example", "host:t.example", "HOST: t.example:8080"]),
    "name_h": st.one_of(st.sampled_from(["User-Agent", "Accept", "Connection", "X-Forwarded-For", "Via"]),
                        st.text(alphabet=TCHARS, min_size=1, max_size=12)),
    "sep": st.sampled_from([": ", ":"]),
    "value": st.one_of(st.sampled_from(["close", "keep-alive", "Close, keep-alive", "upgrade", UA, "", "a\tb"]),
                       st.text(alphabet=VISIBLE + " ", max_size=30).map(str.strip), obs_text),
}
ODD = {
    "method": st.sampled_from(["get", "POST", "GETS", "GET ", "CONNECT"]),
    "route": st.sampled_from(["/o//", "//c/", "/x/", "/o", "o/", "http://t.example/o/"]),
    "name": st.text(alphabet="aZ09_.-%/é \x00?#", max_size=20),
    "query": st.binary(max_size=20).map(lambda b: "?" + b.decode("latin-1")),
    "version": st.sampled_from(["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 "]),
    "host": st.sampled_from(["", "Host:", "Host: a\r\nHost: b", "Host : t.example", " Host: t.example"]),
    "name_h": st.one_of(st.sampled_from(["Content-Length", "Transfer-Encoding", "Upgrade", "Expect", ""]),
                        st.text(alphabet="abc:;@ \t\x00é\x7f", min_size=1, max_size=8)),
    "sep": st.sampled_from([":  ", " : ", ":\t", ": \t"]),
    "value": st.one_of(st.sampled_from([" x", "x ", "a  b", "\tx", "x\x00", "\x7f", "0", "chunked"]),
                       st.binary(max_size=30).map(lambda b: b.decode("latin-1"))),
}


@st.composite
def heads(draw: st.DrawFn, odd_parts: int) -> bytes:
    """A request head of GOOD parts with up to `odd_parts` of them swapped for ODD ones."""
    odd = set(draw(st.lists(st.sampled_from([*GOOD, "header"]), max_size=odd_parts)))
    part = {k: draw((ODD if k in odd else GOOD)[k]) for k in GOOD}
    lines = [f"{part['method']} {part['route']}{part['name']}{part['query']} {part['version']}"]
    if part["host"]:
        lines.append(part["host"])
    for _ in range(draw(st.integers(0, 5))):
        src = ODD if "header" in odd and draw(st.booleans()) else GOOD
        lines.append(f"{draw(src['name_h'])}{draw(src['sep'])}{draw(src['value'])}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return raw[:raw.index(b"\r\n\r\n") + 4]  # what the protocol cuts: up to the first blank line


@settings(max_examples=1500, deadline=None)
@given(head=st.one_of(heads(0), heads(1), heads(3)))
def test_what_parse_head_takes_aiohttp_reads_the_same(head: bytes) -> None:
    req = parse_head(head)
    event("fast path" if req is not None else "aiohttp")
    if req is None:
        return
    read = aiohttp_reads(head)
    assert read is not None, head
    # Header names compare without case: aiohttp spells well-known names its own way ("host" -> "Host").
    assert read[:3] + read[4:] == (req.facts.method, req.facts.target, 0 if req.http10 else 1, req.close)
    assert [(k.lower(), v) for k, v in read[3]] == [(k.lower(), v) for k, v in req.pairs]
    assert req.facts.headers == kept_headers(read[3])
    assert req.facts.target.startswith(f"/{req.route.decode()}/{req.name}")
    # What the Edge is handed: the same facts from either front end (but the clock's reading).
    before = time.time()
    req = parse_head(head, "198.51.100.7")
    ours = aiohttp_facts(head, "198.51.100.7")
    assert req is not None
    assert ours is not None
    assert before <= req.facts.received_at <= ours.received_at <= time.time()
    assert req.facts._replace(received_at=0.0) == ours._replace(received_at=0.0)


def test_parse_head_takes_what_mail_clients_send() -> None:
    for extra in ("", "Connection: keep-alive\r\n", "Accept-Language: en-US,en;q=0.9\r\nVia: 1.1 google\r\n",
                  "X-Empty:\r\n"):
        head = get(f"/o/{OPEN}.gif?x=1&y=%20", extra=extra)
        req = parse_head(head)
        assert req is not None, extra
        assert aiohttp_reads(head) == (req.facts.method, req.facts.target, 1, req.pairs, req.close)


def test_the_fast_paths_singleton_headers_are_aiohttps() -> None:
    """The fast path refuses a second Host, User-Agent, ... as aiohttp's parser does, from a copy of the
    private aiohttp.http_parser.SINGLETON_HEADERS: an aiohttp that changes the set fails here, by name."""
    assert {h.lower() for h in SINGLETON_HEADERS} == FAST_SINGLETONS, \
        "aiohttp.http_parser.SINGLETON_HEADERS changed: update ingest.fastpath.SINGLETON_HEADERS"


async def test_an_edge_site_is_its_runners_and_the_check_names_what_moved() -> None:
    """EdgeSite hands aiohttp its listener through two private fields (BaseSite._server, TCPSite._bound_port):
    the runner lists the port and stop() closes it; when aiohttp reads them elsewhere the check at start
    refuses, naming them."""
    runner, served = await _serve(True)
    try:
        assert [a[1] for a in runner.addresses] == [served.port]
        check_site_internals(served.site, runner, served.port)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match=r"BaseSite\._server/TCPSite\._bound_port moved"):
            check_site_internals(served.site, runner, served.port + 1)  # type: ignore[arg-type]
        await served.site.stop()
        assert runner.addresses == []
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", served.port)
    finally:
        await runner.cleanup()
