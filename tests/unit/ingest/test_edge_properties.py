"""Property tests (hypothesis) over token checking and every route, with raw bytes on the wire: the edge
never answers 5xx, and never redirects anywhere but to a destination signed into a valid click token."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.app import EDGE, create_app
from ingest.edge import Edge, RequestFacts, UnsubscribeAnswer, check_token
from ingest.fastpath import EdgeSite, parse_head
from ingest.pixel import GIF
from schemas.records import DeadLetter, RawHit, Record
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.tokens import MAX_TOKEN_CHARS, Keyring, TokenError, TokenPayload

KEYRING = Keyring({"p1": b"property-secret-0123456789abcdef", "p0": b"older-property-secret-0123456789"}, "p1")
ANY_HOST = TenantRegistry({}, KEYRING)  # no tenants: every host is tenant "" with KEYRING
NOW = int(time.time() * 1000)
URLS = [f"https://shop.example.com/item/{i}?ref=mail&x=%20" for i in range(5)]
CLICKS = [KEYRING.mint(TokenPayload("click", "", "c", "A", f"m-{i}", "r", NOW, url=u)) for i, u in enumerate(URLS)]
OPENS = [KEYRING.mint(TokenPayload("open", "", "c", "A", f"m-{i}", "r", NOW)) for i in range(5)]
EXPIRED = KEYRING.mint(TokenPayload("click", "", "c", "A", "m-x", "r", 1000, expires_at=2000,
                                    url="https://expired.example/"))
FOREIGN = Keyring({"p1": b"someone-elses-secret-0123456789ab"}, "p1").mint(
    TokenPayload("click", "", "c", "A", "m-f", "r", NOW, url="https://evil.example/"))
CLICK_ID = re.compile(r"[?&]pt_cid=[A-Za-z0-9_.-]+$")  # the edge's signed click id, appended to the query


def destination(location: str) -> str:
    """The redirect's target without the click id the edge appends (settings.click_id_param)."""
    return CLICK_ID.sub("", location)


HYPO = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- token checking ----------------------------------------------------------------------------------

def mutations(token: str) -> st.SearchStrategy[str]:
    """Tokens a forger could try from a real one: a character changed, dropped or added; cut short."""
    n = len(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/%é\x00"
    return st.one_of(
        st.tuples(st.integers(0, n - 1), st.sampled_from(alphabet)).map(
            lambda t: token[:t[0]] + t[1] + token[t[0] + 1:]),
        st.integers(0, n - 1).map(lambda i: token[:i] + token[i + 1:]),
        st.tuples(st.integers(0, n), st.sampled_from(alphabet)).map(
            lambda t: token[:t[0]] + t[1] + token[t[0]:]),
        st.integers(0, n - 1).map(lambda i: token[:i]),
    )


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)  # surrogates included


@HYPO
@given(candidate=st.one_of(any_text, mutations(CLICKS[0]), mutations(OPENS[0]),
                           st.text(min_size=MAX_TOKEN_CHARS + 1, max_size=MAX_TOKEN_CHARS + 50)))
def test_check_token_raises_only_token_error_and_accepts_only_what_was_signed(candidate: str) -> None:
    reasons = {"too_long", "malformed", "unknown_key", "bad_signature", "wrong_kind", "expired"}
    for kind in ("open", "click"):
        try:
            payload = check_token(ANY_HOST, "t.example.com", candidate, kind, NOW)  # type: ignore[arg-type]
        except TokenError as exc:
            reason = exc.reason
            payload = None
        if payload is None:
            assert reason in reasons
            continue
        # Whatever verifies says exactly what a real token of ours said (base64's spare bits may let
        # another spelling of the same tag through; it carries the same signed payload).
        signed = [KEYRING.verify(t) for t in CLICKS + OPENS]
        assert payload in signed
        assert payload.kind == kind


def test_check_token_rejects_cheaply_before_any_hmac() -> None:
    for junk, reason in [("x" * (MAX_TOKEN_CHARS + 1), "too_long"), ("p1.é.abc", "malformed"),
                         ("p1.\udcff.abc", "malformed"), ("p1.a b.c", "malformed"), ("", "malformed")]:
        with pytest.raises(TokenError) as caught:
            check_token(ANY_HOST, "t.example.com", junk, "click", NOW)
        assert caught.value.reason == reason


# --- every route, raw bytes on the wire ----------------------------------------------------------------

class CollectingPublisher:
    """Our Publisher protocol, keeping what the edge forwarded (appended from the server's thread)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def start(self) -> None:
        return None

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    async def stop(self) -> None:
        return None

    async def reset(self) -> None:
        return None

    def healthy(self) -> bool:
        return True


class RecordingEdge(Edge):
    """The app's Edge, keeping what each front end hands it: (method called, its arguments but the facts,
    the facts)."""

    __slots__ = ("seen",)

    def __init__(self, edge: Edge) -> None:
        super().__init__(edge.tenants, edge.forwarder, edge.ips, edge.edge_id, edge.topics, edge.click_id_param,
                         edge.dnt, edge.privacy_key)
        self.seen: list[tuple[str, tuple[object, ...], RequestFacts]] = []

    def open_hit(self, facts: RequestFacts, name: str) -> None:
        self.seen.append(("open_hit", (name,), facts))
        super().open_hit(facts, name)

    def click_hit(self, facts: RequestFacts, token: str) -> str | None:
        self.seen.append(("click_hit", (token,), facts))
        return super().click_hit(facts, token)

    def unsubscribe(self, facts: RequestFacts, token: str, confirmed: bool) -> UnsubscribeAnswer:
        self.seen.append(("unsubscribe", (token, confirmed), facts))
        return super().unsubscribe(facts, token, confirmed)

    def bad_request(self, facts: RequestFacts, kind: str, reason: str, detail: str = "") -> None:
        self.seen.append(("bad_request", (kind, reason, detail), facts))
        super().bad_request(facts, kind, reason, detail)


class ThreadedEdge:
    """The edge on 127.0.0.1 in a thread of its own, so synchronous hypothesis tests can send it raw
    bytes through a socket (what a test HTTP client would refuse to send). `fast`: served by EdgeSite
    (the fast path, handing other requests to aiohttp) as `pixeltrack edge` serves it, else by aiohttp
    alone: every property must hold for both."""

    def __init__(self, fast: bool = True) -> None:
        self.fast = fast
        self.publisher = CollectingPublisher()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="edge-under-test", daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.recording: RecordingEdge | None = None

    async def _start(self) -> int:
        s = Settings(_env_file=None, edge_id="prop", spool_dir=None, trusted_proxies=["127.0.0.0/8"],  # type: ignore[call-arg]
                     producer_linger_ms=0)
        app = create_app(s, publisher=self.publisher, keyring=KEYRING)
        app[EDGE] = self.recording = RecordingEdge(app[EDGE])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = EdgeSite(self.runner, "127.0.0.1", 0) if self.fast else web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return int(self.runner.addresses[0][1])

    def start(self) -> None:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Sends one raw request (the connection closes after it); the status, headers and body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status = lines[0].split(b" ")[:2]
        # aiohttp answers in the version it parsed: 0.9 for a request line with an empty target
        # ("CONNECT  HTTP/1.1"), which it answers 404.
        assert version in (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9"), lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
        return int(status), headers, body


@pytest.fixture(scope="module", params=["fastpath", "aiohttp"])
def edge(request: pytest.FixtureRequest) -> Iterator[ThreadedEdge]:
    e = ThreadedEdge(fast=request.param == "fastpath")
    e.start()
    yield e
    e.stop()


def _b(token: str) -> bytes:
    return token.encode("utf-8", "surrogateescape")


token_bytes = st.one_of(
    st.sampled_from([_b(t) for t in CLICKS + OPENS + [EXPIRED, FOREIGN]]),
    mutations(CLICKS[1]).map(_b), mutations(OPENS[1]).map(_b),
    st.binary(max_size=120),
    st.binary(max_size=40).map(lambda b: "".join(f"%{c:02X}" for c in b).encode()),  # percent-encoded junk
    st.sampled_from([b"..", b"../c/" + _b(CLICKS[2]), b"%2e%2e%2Fc%2F" + _b(CLICKS[2]), b"a%2Fb", b"%00", b"",
                     b"x" * 5000, b"x" * 9000, _b(CLICKS[3]) + b"/extra", b"/" + _b(CLICKS[3])]),
)
target = st.tuples(
    st.sampled_from([b"/o/", b"/c/", b"//o/", b"//c/", b"/o//", b"/c//", b"/o/../c/", b"/c/./", b"/", b"/metrics/",
                     b"http://evil.example/c/", b""]),
    token_bytes,
    st.sampled_from([b"", b".gif", b".GIF", b".gif.gif"]),
    st.one_of(st.just(b""), st.binary(max_size=60).map(lambda q: b"?" + q),
              st.just(b"?next=https://evil.example/&url=https://evil.example/"), st.just(b"?" + b"q" * 9000)),
).map(lambda t: b"".join(t))
method = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
                          b"BREW", b"get", b"G\xffT"])
header_value = st.one_of(st.binary(max_size=80).filter(lambda v: b"\r" not in v and b"\n" not in v),
                         st.sampled_from([b"1.2.3.4, 10.0.0.1", b"not-an-ip, , ,", b"x" * 9000, b"\xff\xfe"]))


def raw_request(m: bytes, path: bytes, ua: bytes, xff: bytes, host: bytes) -> bytes:
    return (m + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nUser-Agent: " + ua
            + b"\r\nX-Forwarded-For: " + xff + b"\r\nConnection: close\r\n\r\n")


@HYPO
@given(m=method, path=target, ua=header_value, xff=header_value,
       host=st.sampled_from([b"t.example", b"", b"\xff", b"evil.example:1"]))
def test_no_route_ever_answers_5xx_or_redirects_unsigned(edge: ThreadedEdge, m: bytes, path: bytes, ua: bytes,
                                                         xff: bytes, host: bytes) -> None:
    status, headers, body = edge.request(raw_request(m, path, ua, xff, host))
    assert status < 500
    if 300 <= status < 400:
        # Only a verified click token sends anyone anywhere, and only to what it signed.
        assert m in (b"GET", b"HEAD")
        assert destination(headers["location"]) in URLS
        signed = CLICKS[URLS.index(destination(headers["location"]))]
        kid, payload, _ = signed.split(".")
        if path.startswith(b"http://"):  # absolute-form request target: the path follows the authority
            path = path[path.index(b"/", len(b"http://")):]
        assert path.startswith(b"/c/" + _b(f"{kid}.{payload}."))
    if status == 200 and path.startswith(b"/o/") and m == b"GET":
        assert body == GIF


def test_every_valid_click_redirects_and_every_valid_pixel_is_recorded(edge: ThreadedEdge) -> None:
    before = len(edge.publisher.records)
    for token, url in zip(CLICKS, URLS, strict=True):
        status, headers, _ = edge.request(raw_request(b"GET", b"/c/" + _b(token), b"UA", b"", b"t.example"))
        assert (status, destination(headers["location"])) == (302, url)
    for token in OPENS:
        status, _, body = edge.request(raw_request(b"GET", b"/o/" + _b(token) + b".gif", b"UA", b"", b"t.example"))
        assert (status, body) == (200, GIF)
    deadline = time.monotonic() + 5
    while len(edge.publisher.records) < before + 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    kinds = sorted(RawHit.decode(r.value).kind for r in edge.publisher.records[before:] if r.topic == "hits.raw")
    assert kinds == ["click"] * 5 + ["open"] * 5


def test_path_tricks_get_the_answer_of_their_route(edge: ThreadedEdge) -> None:
    cases = {
        b"/o/../c/" + _b(CLICKS[0]): (200, None),  # not normalised into /c/: a pixel, not a redirect
        b"/o/%2e%2e%2Fc%2F" + _b(CLICKS[0]): (200, None),
        b"/c/" + _b(CLICKS[0]).replace(b".", b"%2E"): (302, URLS[0]),  # percent-encoded dots decode
        b"/c/..%2F" + _b(CLICKS[0]): (404, None),
        b"/c//" + _b(CLICKS[0]): (404, None),
        b"//c/" + _b(CLICKS[0]): (404, None),
        b"/c/" + _b(FOREIGN): (404, None),
        b"/c/" + _b(EXPIRED): (404, None),
        b"/c/" + _b(OPENS[0]): (404, None),
    }
    for path, (want, location) in cases.items():
        status, headers, _ = edge.request(raw_request(b"GET", path, b"UA", b"", b"t.example"))
        got = headers.get("location")
        assert (status, got and destination(got)) == (want, location), path


def test_unexpected_methods_are_405_and_bad_requests_4xx(edge: ThreadedEdge) -> None:
    for m in (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"):
        for path in (b"/o/x.gif", b"/c/x"):
            assert edge.request(raw_request(m, path, b"UA", b"", b"t"))[0] == 405
    assert edge.request(raw_request(b"BREW", b"/o/x.gif", b"UA", b"", b"t"))[0] == 400
    assert edge.request(raw_request(b"GET", b"/o/" + b"x" * 9000, b"UA", b"", b"t"))[0] == 400  # request line
    assert edge.request(raw_request(b"GET", b"/o/x.gif", b"u" * 9000, b"", b"t"))[0] == 400  # header field
    many = b"GET /o/x.gif HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(100))
    assert edge.request(many + b"Connection: close\r\n\r\n")[0] in (400, 431)


def test_bad_bytes_are_kept_as_dead_letters_with_readable_text(edge: ThreadedEdge) -> None:
    before = len(edge.publisher.records)
    status, _, body = edge.request(raw_request(b"GET", b"/o/%FF%FE.gif", b"\xff\xfeUA", b"", b"\xff"))
    assert (status, body) == (200, GIF)
    deadline = time.monotonic() + 5
    while len(edge.publisher.records) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    letter = DeadLetter.decode(edge.publisher.records[-1].value)
    assert (letter.reason, letter.kind) == ("malformed", "open")
    assert "\ufffd" in letter.ua  # undecodable bytes became replacement characters, not an error page


# --- both front ends hand the Edge the same facts --------------------------------------------------------

@pytest.fixture(scope="module")
def fronts() -> Iterator[tuple[ThreadedEdge, ThreadedEdge]]:
    fast, plain = ThreadedEdge(fast=True), ThreadedEdge(fast=False)
    fast.start()
    plain.start()
    yield fast, plain
    fast.stop()
    plain.stop()


kept_name = st.sampled_from([b"User-Agent", b"X-Forwarded-For", b"x-forwarded-for", b"Accept", b"Accept-Language",
                             b"Via", b"Sec-Purpose", b"Purpose", b"X-Moz", b"Sec-Fetch-Mode", b"Cookie", b"X-Other"])
plain_value = st.one_of(st.binary(max_size=80).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c >= 0x80)),
                        st.sampled_from([b"203.0.113.9, 10.0.0.1", b"1.2.3.4", b"prefetch", b"\xff\xfe", b"a b",
                                         b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"]))
token_part = st.sampled_from([_b(t) for t in CLICKS[:2] + OPENS[:2] + [EXPIRED]] + [b"junk", b"%FF"])
query_part = st.sampled_from([b"", b".gif", b"?a=1&b=%20", b".gif?x", b"?\xff"])
# Mostly what the fast path takes (/o/ and /c/), some of what it hands to aiohttp.
fetch_path = st.one_of(
    st.tuples(st.sampled_from([b"/o/", b"/c/"]), token_part, query_part),
    st.tuples(st.sampled_from([b"/o/", b"/c/"]), token_part, query_part),
    st.tuples(st.sampled_from([b"/u/", b"/o/x/", b"/c//"]), token_part, query_part),
).map(lambda t: b"".join(t))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.sampled_from([b"GET", b"HEAD"]), path=fetch_path,
       lines=st.lists(st.tuples(kept_name, plain_value), max_size=6), ua=st.none() | plain_value,
       host=st.sampled_from([b"t.example", b"t.example:8080", b"\xc3\xa9.example"]),
       version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
def test_both_front_ends_hand_the_edge_the_same_facts(fronts: tuple[ThreadedEdge, ThreadedEdge], m: bytes,
                                                      path: bytes, lines: list[tuple[bytes, bytes]],
                                                      ua: bytes | None, host: bytes, version: bytes) -> None:
    """The same raw request, to the fast path and to aiohttp alone: the Edge is called the same way with
    the same RequestFacts (but the clock's reading), so neither front end can record a hit differently."""
    raw = m + b" " + path + b" " + version + b"\r\nHost: " + host + b"\r\n"
    raw += b"" if ua is None else b"User-Agent: " + ua + b"\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in lines) + b"Connection: close\r\n\r\n"
    event("fast path" if parse_head(raw) is not None else "aiohttp")
    calls = []
    for front in fronts:
        assert front.recording is not None
        before, start = len(front.recording.seen), time.time()
        answer = front.request(raw)
        seen = front.recording.seen[before:]
        assert all(start <= facts.received_at <= time.time() for _, _, facts in seen)
        calls.append((answer[0], [(call, args, facts._replace(received_at=0.0)) for call, args, facts in seen]))
    assert calls[0] == calls[1], raw
