"""The edge's aiohttp application: routes, handlers and the lifetimes of the queue and forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ingest import metrics
from ingest.client_ip import ClientIpResolver
from ingest.forwarder import Forwarder, HitQueue
from ingest.pixel import GIF, NOT_FOUND_HEADERS, NOT_FOUND_HTML, PIXEL_HEADERS, REDIRECT_HEADERS
from ingest.publisher import KafkaPublisher, Publisher
from ingest.serverlog import quiet_bad_requests
from ingest.spool import LOCK_FILE, WORKER_PREFIX, Spool, SpoolInUse, is_journal_file
from schemas.aio import finish_within
from schemas.privacy import (
    claimed_recipients,
    keyed_recipient_hash,
    load_do_not_track,
    recipient_hash,
    recipient_key,
)
from schemas.records import (
    KEPT_HEADERS,
    MAX_HEADER,
    MAX_HOST,
    MAX_PATH,
    MAX_UA,
    RAW_HIT_VERSION,
    DeadLetter,
    Record,
)
from schemas.sends import Unsubscribe
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.tokens import (
    FLAG_HONEYPOT,
    FLAG_NO_CLICK_ID,
    FLAG_UNSUBSCRIBE,
    MAX_TOKEN_CHARS,
    ClickRef,
    Keyring,
    TokenError,
    TokenKind,
    TokenPayload,
    mint_click_ref,
)
from schemas.topics import Topics

log = logging.getLogger(__name__)

# Bounds on what a client may send, enforced by aiohttp's parser before any handler runs (an answer
# of 400, or 431 for too many headers, never a 5xx). The request line fits the longest token
# (MAX_TOKEN_CHARS) with room for a query string; a header field fits a long User-Agent or cookie.
SERVER_LIMITS: dict[str, Any] = {
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 64,
}
# A token is base64url and the dots between kid, payload and tag, nothing else.
_token_shape = re.compile(r"[A-Za-z0-9_.-]+").fullmatch


def check_token(tenants: TenantRegistry, host: str, token: str, kind: TokenKind, now_ms: int) -> TokenPayload:
    """The payload of a genuine token of `kind` fetched on `host` (TenantRegistry.verify_token: the
    host's tenant's keys, naming that tenant), or TokenError. Junk is turned away before any decoding:
    anything too long or not plain base64url-and-dots costs a length check and one regex match, so a
    token that is not ASCII (a surrogate-escaped byte from the request line included) never reaches
    the HMAC. Whatever else goes wrong in checking a token makes it malformed, never an error page."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("too_long", f"{len(token)} characters")
    if _token_shape(token) is None:
        raise TokenError("malformed", "characters outside base64url")
    try:
        return tenants.verify_token(host, token, kind, now_ms)
    except TokenError:
        raise
    except Exception as exc:  # e.g. a payload of an unexpected shape
        raise TokenError("malformed", type(exc).__name__) from None


def _clean(text: str) -> str:
    # aiohttp hands undecodable request bytes over as surrogate escapes, which JSON cannot carry.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


TASK_CANCEL_WAIT = 1.0  # shutdown: how long the edge's own tasks get to end once cancelled


KEPT = frozenset(KEPT_HEADERS)
Headers = CIMultiDictProxy[str]  # a request's headers, as aiohttp's parser hands them over


def kept_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers a RawHit keeps (KEPT_HEADERS), by lower-case name: the first of each, cut to MAX_HEADER.
    A request has a handful of headers; KEPT_HEADERS has a dozen."""
    kept: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in KEPT and key not in kept:
            kept[key] = value[:MAX_HEADER]
    return kept


def raw_hit_json(hit_id: str, received_at: float, kind: str, method: str, host: str, path: str, token: str,
                 ip: str, ua: str, edge: str, headers: dict[str, str]) -> bytes:
    """RawHit(...).encode(), byte for byte, without building the dataclass first: orjson encodes a dict
    several times faster than a slots dataclass, and this runs for every hit. The keys are RawHit's
    fields in order (test_records_contract pins the equality, so a new field fails a test here)."""
    fields = {"id": hit_id, "received_at": received_at, "kind": kind, "method": method, "host": host,
              "path": path, "token": token, "ip": ip, "ua": ua, "edge": edge, "headers": headers,
              "v": RAW_HIT_VERSION}
    try:
        return compact(orjson.dumps(fields))
    except orjson.JSONEncodeError:  # surrogate escapes of undecodable request bytes
        fields["headers"] = {k: _clean(v) for k, v in headers.items()}
        for key in ("host", "path", "ua"):
            fields[key] = _clean(fields[key])  # type: ignore[arg-type]
        return compact(orjson.dumps(fields))


def compact(data: bytes) -> bytes:
    """A right-sized copy: orjson hands back its whole output buffer (4-8 KiB for a 650-byte hit), and a
    record waiting in the queue through a slow publish would hold all of it (measured: 4 KiB a hit)."""
    return bytes(memoryview(data))


class Edge:
    """Per-app state the handlers use. Handlers parse, enqueue and answer; nothing else."""

    __slots__ = ("_counters", "_dlq_topic", "_ids", "_pending", "_prefix", "_raw_topic", "click_id_param",
                 "dnt", "edge_id", "forwarder", "ips", "privacy_key", "tenants", "topics")

    def __init__(self, tenants: TenantRegistry, forwarder: Forwarder, ips: ClientIpResolver, edge_id: str,
                 topics: Topics, click_id_param: str = "", dnt: frozenset[str] = frozenset(),
                 privacy_key: bytes | None = None) -> None:
        """`privacy_key`: the key of the recipient hashes ClickHouse keeps (an unsubscribe's); by default
        schemas.privacy.recipient_key(tenants), as the processors'."""
        self.tenants = tenants
        self.privacy_key = privacy_key if privacy_key is not None else recipient_key(tenants)
        self.click_id_param = click_id_param
        self.dnt = dnt
        self.forwarder = forwarder
        self.ips = ips
        self.edge_id = edge_id
        self.topics = topics
        self._raw_topic = topics.hits_raw  # one string shared by every record, not one built per hit
        self._dlq_topic = topics.hits_dlq
        self._ids = itertools.count(1)
        self._prefix = os.urandom(8).hex()
        self._counters: dict[tuple[str, str], Any] = {}
        self._pending: dict[tuple[str, str], int] = {}

    def verify(self, host: str, token: str, kind: TokenKind) -> TokenPayload:
        """The payload of a genuine token for the tenant whose domain was fetched, or TokenError (the
        rule is TenantRegistry.verify_token's, the processors' too)."""
        return check_token(self.tenants, host, token, kind, _now_ms())

    def keyring_of(self, host: str) -> Keyring | None:
        found = self.tenants.for_host(host)
        return found[1] if found else None

    def do_not_track(self, payload: TokenPayload) -> bool:
        """A recipient who asked not to be tracked: answered as usual, nothing kept."""
        if self.dnt and recipient_hash(payload.tenant, payload.recipient) in self.dnt:
            self.count(payload.kind, "do_not_track")
            return True
        return False

    def next_id(self) -> str:
        # Unique across edges and restarts: 64 random bits per process start, then a counter.
        return f"{self._prefix}{next(self._ids):x}"

    def count(self, kind: str, result: str) -> None:
        """Counts an answer in memory; flush_counts adds the counts to the Prometheus counter (a
        counter's inc takes a lock: a dict update costs a fifth of that, once per hit)."""
        key = (kind, result)
        self._pending[key] = self._pending.get(key, 0) + 1

    def flush_counts(self) -> None:
        """Adds the answers counted since the last flush to pixeltrack_edge_hits_total: before every
        scrape this worker answers, and twice a second for the scrapes other workers answer."""
        pending, self._pending = self._pending, {}
        for (kind, result), n in pending.items():
            counter = self._counters.get((kind, result))
            if counter is None:
                counter = self._counters[(kind, result)] = metrics.HITS.labels(kind, result)
            counter.inc(n)

    def open_hit(self, host: str, name: str, method: str, raw_path: str, headers: Headers,
                 peer: str | None, kept: dict[str, str] | None = None) -> None:
        """A fetch of /o/<name>: recorded when the token is genuine, a dead letter when not. The answer
        is the pixel either way (the caller's), so a bad token never shows a broken image."""
        token = name[:-4] if name.endswith(".gif") else name
        try:
            payload = self.verify(host, token, "open")
        except TokenError as exc:
            self.record_bad("open", exc.reason, str(exc), method, host, raw_path, headers, peer)
            return
        if not self.do_not_track(payload):
            self.record_hit("open", token, payload.message, method, host, raw_path, headers, peer, kept=kept)

    def click_hit(self, host: str, token: str, method: str, raw_path: str, headers: Headers,
                  peer: str | None, kept: dict[str, str] | None = None) -> str | None:
        """A fetch of /c/<token>: the Location to redirect to (with the click id appended when
        configured), or None for a token that is not genuine (a dead letter; the caller answers 404).
        Never a redirect on anything unsigned: the destination comes only from a verified token."""
        try:
            payload = self.verify(host, token, "click")
            if not _safe_destination(payload.url):
                raise TokenError("bad_destination", payload.url[:60])
        except TokenError as exc:
            self.record_bad("click", exc.reason, str(exc), method, host, raw_path, headers, peer)
            return None
        if self.do_not_track(payload):
            return payload.url
        hit_id = self.next_id()
        self.record_hit("click", token, payload.message, method, host, raw_path, headers, peer, hit_id, kept)
        if self.click_id_param and not payload.flags & (FLAG_NO_CLICK_ID | FLAG_UNSUBSCRIBE | FLAG_HONEYPOT):
            keyring = self.keyring_of(host)
            if keyring is not None:
                ref = ClickRef(payload.tenant, payload.campaign, payload.variant, payload.message, payload.recipient,
                               hit_id, payload.link_id or payload.url)
                return with_query_param(payload.url, self.click_id_param, mint_click_ref(keyring, ref))
        return payload.url

    def record_hit(self, kind: str, token: str, message: str, method: str, host: str, raw_path: str,
                   headers: Headers, peer: str | None, hit_id: str = "", kept: dict[str, str] | None = None) -> None:
        """Journal and queue the hit the edge is about to answer for. Never raises: a hit that cannot
        be kept is counted (result "dropped" or "error") and the answer goes out all the same.
        `kept`: kept_headers(headers) when the caller already has it (the fast path reads it as it parses)."""
        try:
            if kept is None:
                kept = kept_headers(headers.items())
            value = raw_hit_json(hit_id or self.next_id(), time.time(), kind, method, host[:MAX_HOST],
                                 raw_path[:MAX_PATH], token, self.ips.resolve(peer, forwarded_for(headers)),
                                 headers.get("User-Agent", "")[:MAX_UA], self.edge_id, kept)
            ok = self.forwarder.submit(Record(self._raw_topic, message.encode(), value))
        except Exception:
            log.exception("edge: hit not recorded")
            self.count(kind, "error")
            return
        self.count(kind, "ok" if ok else "dropped")

    def record_bad(self, kind: str, reason: str, detail: str, method: str, host: str, raw_path: str,
                   headers: Headers, peer: str | None) -> None:
        """A dead letter for input the edge would not count; never raises, like record_hit. No letter for a
        token naming a do-not-track recipient (expired, of the wrong kind, on another tenant's domain,
        percent-encoded, signed or not): answered as usual, and nothing of it leaves the edge."""
        try:
            if self.dnt and any(recipient_hash(t, r) in self.dnt for t, r in claimed_recipients(raw_path)):
                self.count(kind, "do_not_track")
                return
            letter = DeadLetter(id=self.next_id(), received_at=time.time(), stage="edge", reason=reason,
                                detail=_clean(detail[:200]), kind=kind, method=method,
                                host=_clean(host[:MAX_HOST]), path=_clean(raw_path[:MAX_PATH]),
                                ip=self.ips.resolve(peer, forwarded_for(headers)),
                                ua=_clean(headers.get("User-Agent", "")[:MAX_UA]), edge=self.edge_id)
            self.forwarder.submit(Record(self._dlq_topic, None, compact(letter.encode())))
        except Exception:
            log.exception("edge: dead letter not recorded")
            self.count(kind, "error")
            return
        self.count(kind, reason)

    def bad_request(self, request: web.Request, kind: str, reason: str, detail: str = "") -> None:
        """record_bad for a request aiohttp parsed."""
        self.record_bad(kind, reason, detail, request.method, request.host or "", request.raw_path,
                        request.headers, request.remote)


EDGE = web.AppKey("edge", Edge)
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def open_pixel(request: web.Request) -> web.Response:
    request.app[EDGE].open_hit(request.host or "", request.match_info["name"], request.method, request.raw_path,
                               request.headers, request.remote)
    # A pixel is always a pixel: a bad token must not show a broken image in someone's mail.
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


def _not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_HTML, headers=NOT_FOUND_HEADERS)


def _safe_destination(url: str) -> bool:
    # mint() allows only http(s); a control character would make the header unsendable (an error
    # page), so such a destination is treated like a bad token.
    return url.startswith(("https://", "http://")) and url.isprintable()


async def click(request: web.Request) -> web.Response:
    location = request.app[EDGE].click_hit(request.host or "", request.match_info["token"], request.method,
                                           request.raw_path, request.headers, request.remote)
    if location is None:
        return _not_found()
    headers = dict(REDIRECT_HEADERS)
    headers["Location"] = location
    return web.Response(status=302, headers=headers)


def with_query_param(url: str, name: str, value: str) -> str:
    """`url` with name=value added to its query, before any #fragment; the rest left as signed."""
    head, hash_, fragment = url.partition("#")
    sep = "&" if "?" in head else "?"
    return f"{head}{sep}{name}={value}{hash_}{fragment}"


def forwarded_for(headers: Any) -> str | None:
    """Every X-Forwarded-For line, folded: a client can send its own line first, and a proxy appends
    to the last one, so reading only the first would let the client choose its address."""
    lines = headers.getall("X-Forwarded-For", None)
    return ",".join(lines) if lines else None


UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head><body><h1>Unsubscribe</h1><p>Stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>"""
UNSUBSCRIBED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribed</title></head><body><h1>You are unsubscribed</h1></body></html>"""
UNSUBSCRIBE_FAILED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head><body><h1>Please try again</h1><p>Your unsubscribe could not be recorded
just now. Please try again in a minute.</p></body></html>"""
HTML_NO_STORE = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                 "X-Robots-Tag": "noindex"}


async def unsubscribe(request: web.Request) -> web.Response:
    """/u/<token> with a link token flagged unsubscribe. GET (a person, or a scanner following every
    link) only shows a confirmation form and changes nothing; POST (the form, or a mail client's RFC 8058
    one-click POST) records the unsubscribe."""
    edge = request.app[EDGE]
    token = request.match_info["token"]
    try:
        payload = edge.verify(request.host, token, "click")
        if not payload.flags & FLAG_UNSUBSCRIBE:
            raise TokenError("not_unsubscribe", "the token is not an unsubscribe link")
    except TokenError as exc:
        edge.bad_request(request, "unsubscribe", exc.reason, str(exc))
        return _not_found()
    if request.method != "POST":
        return web.Response(text=UNSUBSCRIBE_PAGE, headers=HTML_NO_STORE)
    # Kept under the keyed hash, as `erasures` names a recipient: a plain hash of the id would tell
    # anyone with a guess whether that id unsubscribed, after `forget` too.
    record = Unsubscribe(payload.tenant, keyed_recipient_hash(edge.privacy_key, payload.tenant, payload.recipient),
                         payload.campaign, payload.message, time.time())
    try:
        kept = edge.forwarder.submit(Record(edge.topics.unsubscribes, payload.message.encode(), record.encode()))
    except Exception:  # the spool's disk failing: the same answer as a spool at its bound
        log.exception("unsubscribe not kept")
        kept = False
    if not kept:
        # Never confirm what was not kept: the person (or their mail client) tries again later.
        edge.count("unsubscribe", "error")
        return web.Response(status=503, text=UNSUBSCRIBE_FAILED_PAGE,
                            headers={**HTML_NO_STORE, "Retry-After": "60"})
    edge.count("unsubscribe", "ok")
    return web.Response(text=UNSUBSCRIBED_PAGE, headers=HTML_NO_STORE)


async def open_malformed(request: web.Request) -> web.Response:
    """/o/ paths that are not one token (a slash inside, an empty name): still a pixel."""
    request.app[EDGE].bad_request(request, "open", "malformed", "path is not /o/<token>")
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def click_malformed(request: web.Request) -> web.Response:
    request.app[EDGE].bad_request(request, "click", "malformed", "path is not /c/<token>")
    return _not_found()


async def watch_loop_lag(interval: float = 0.1) -> None:
    """Observes how late a timer fires (LOOP_LAG): anything that holds the event loop (a long batch, a
    blocking call, a collection) delays every answer by as much, and shows here."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Not ready when the spool nears its bound, so the load balancer prefers other edges. A broken
    transport alone keeps it ready: the spool holds the hits. Pixels are answered either way; with
    several workers on one port this is the answer of whichever worker took the connection."""
    f = request.app[EDGE].forwarder
    ready = not f.at_bound()
    body = {"ready": ready, "transport": "ok" if f.healthy() else "catching-up",
            "mode": "direct" if f.direct else "catch-up", "queue": f.queue.qsize(),
            "spool_bytes": f.spool.pending_bytes() if f.spool else 0,
            "spool_segments": f.spool.segment_count() if f.spool else 0, "dropped": f.dropped,
            "pid": os.getpid()}
    return web.json_response(body, status=200 if ready else 503)


async def flush_counts(edge: Edge, interval: float = 0.5) -> None:
    try:
        while True:
            await asyncio.sleep(interval)
            edge.flush_counts()
    finally:
        edge.flush_counts()


async def metrics_view(request: web.Request) -> web.Response:
    request.app[EDGE].flush_counts()
    request.app[EDGE].forwarder.update_gauges()
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_registry(multiprocess_dir: Path | None) -> CollectorRegistry:
    """The registry /metrics shows: this process's metrics, or, with several workers (prometheus_client
    multiprocess mode, PROMETHEUS_MULTIPROC_DIR set before prometheus_client was imported), the sum of
    every worker's, whichever worker answers the scrape."""
    if multiprocess_dir is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return registry


async def adopt_spool(folder: Path, settings: Settings, publisher: Publisher, owned: bool) -> None:
    """Replays a spool no live edge writes to any more (a former worker's), then removes its files.
    Skipped when another process still holds it; on shutdown what is left stays for the next start."""
    try:
        spool = Spool(folder, settings.spool_segment_bytes, settings.spool_max_bytes)
    except SpoolInUse as exc:
        log.warning("not replaying %s: %s", folder, exc)
        return
    try:
        if spool.pending_bytes():
            log.info("replaying %d bytes left in %s", spool.pending_bytes(), folder)
            fwd = Forwarder(HitQueue(1), publisher, spool, publish_timeout=settings.publish_timeout_ms / 1000,
                            report=False)
            try:
                await fwd.replay_all()
            finally:
                if owned:
                    with contextlib.suppress(Exception):
                        await finish_within(publisher.stop(), 5.0)
        emptied = spool.pending_bytes() == 0
    finally:
        spool.close()
    if emptied:
        _remove_spool_files(folder)
        log.info("replayed and removed %s", folder)


def _remove_spool_files(folder: Path) -> None:
    """Removes an emptied spool: a former worker's folder entirely; at the spool root (which holds the
    worker folders) only the journal files."""
    for p in folder.iterdir():
        if is_journal_file(p.name) or (p.name == LOCK_FILE and folder.name.startswith(WORKER_PREFIX)):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def edge_tenants(settings: Settings, keyring: Keyring | None = None) -> TenantRegistry:
    """The tenants file's tenants, and for tenant "" `keyring`, else the settings' keys (if any)."""
    default = keyring or (settings.keyring() if settings.signing_keys is not None else None)
    tenants = TenantRegistry.load(settings.tenants_file, default=default)
    if default is None and not tenants.tenants:
        settings.keyring()  # raises, naming PIXELTRACK_SIGNING_KEYS
    return tenants


def _privacy_key(settings: Settings, tenants: TenantRegistry) -> bytes:
    """The installation's key of recipient hashes, as the processors derive it (schemas.privacy)."""
    secret = settings.privacy_key.get_secret_value() if settings.privacy_key is not None else None
    return recipient_key(tenants, secret)


def create_app(settings: Settings, publisher: Publisher | None = None,
               keyring: Keyring | None = None, tenants: TenantRegistry | None = None, drain_timeout: float = 10.0,
               spool_dir: Path | None = None, metrics_dir: Path | None = None,
               adopt: Sequence[Path] = (), max_batch: int = 2000,
               queue_max_bytes: int = 16 << 20) -> web.Application:
    """The edge. `publisher` defaults to Kafka at settings.kafka_bootstrap; tokens are checked with
    `tenants`, by default the settings' tenants file plus, for tenant "", `keyring` or else the
    settings' keys (edge_tenants); the spool is `spool_dir`, else settings.spool_dir (None: no spool).
    The transport is started by the forwarder, so the edge answers even when Kafka is down at start.
    On shutdown it stops accepting, then publishes what is left within `drain_timeout`; the rest stays in the spool.
    `metrics_dir`: the prometheus_client multiprocess folder when several workers share the port.
    `adopt`: spool folders of former workers to replay in the background (see ingest.workers).
    `queue_max_bytes`: the in-memory queue's bound in bytes of record values (with a spool)."""

    def kafka() -> Publisher:
        return KafkaPublisher(
            settings.kafka_bootstrap, client_id=f"pixeltrack-edge-{settings.edge_id}",
            linger_ms=settings.producer_linger_ms, compression=settings.producer_compression,
            request_timeout_ms=settings.publish_timeout_ms)

    pub: Publisher = publisher or kafka()
    folder = spool_dir or settings.spool_dir
    spool = Spool(folder, settings.spool_segment_bytes, settings.spool_max_bytes) if folder is not None else None
    # With a spool the queue is only the fast path (an overflow sends the forwarder to the spool, losing
    # nothing), so it is also bounded in bytes: memory stays flat when Kafka stalls under load.
    queue = HitQueue(settings.queue_size, queue_max_bytes if spool is not None else None)
    forwarder = Forwarder(queue, pub, spool, max_batch=max_batch,
                          publish_timeout=settings.publish_timeout_ms / 1000,
                          fsync_interval=settings.spool_fsync_ms / 1000,
                          linger=settings.producer_linger_ms / 1000)
    quiet_bad_requests()  # a malformed request: one DEBUG line, address truncated (ingest.serverlog)
    app = web.Application(client_max_size=64 * 1024, handler_args=SERVER_LIMITS)
    registry = tenants or edge_tenants(settings, keyring)
    app[EDGE] = Edge(tenants=registry, forwarder=forwarder,
                     ips=ClientIpResolver(settings.trusted_proxies), edge_id=settings.edge_id,
                     topics=Topics(settings.topic_prefix), click_id_param=settings.click_id_param,
                     dnt=load_do_not_track(settings.do_not_track_file),
                     privacy_key=_privacy_key(settings, registry))
    app[METRICS_REGISTRY] = metrics_registry(metrics_dir)

    async def forwarding(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(forwarder.run(), name="pixeltrack-forwarder"),
                 asyncio.create_task(watch_loop_lag(), name="pixeltrack-loop-lag"),
                 asyncio.create_task(flush_counts(app[EDGE]), name="pixeltrack-flush-counts")]
        if spool is not None:
            tasks.append(asyncio.create_task(forwarder.sync_spool(), name="pixeltrack-spool-fsync"))
        for old in adopt:
            tasks.append(asyncio.create_task(adopt_spool(old, settings, publisher or kafka(), publisher is None),
                                             name=f"pixeltrack-adopt-{old.name}"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a task that does not end on its cancel is named and left behind (an adopted
            # spool's replay may still be closing its producer), and the drain and the spool's close
            # still run.
            ended, stuck = await asyncio.wait(tasks, timeout=TASK_CANCEL_WAIT)
            for task in stuck:
                log.warning("shutdown: %s did not end within %.0f s of its cancel; going on without it",
                            task.get_name(), TASK_CANCEL_WAIT)
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    log.error("shutdown: %s had failed: %r", task.get_name(), task.exception())
            try:
                await forwarder.drain(drain_timeout)
                with contextlib.suppress(Exception):
                    await finish_within(pub.stop(), 5.0)
            finally:
                if spool is not None:
                    spool.close()

    app.cleanup_ctx.append(forwarding)
    app.router.add_get("/o/{name}", open_pixel, allow_head=True)
    app.router.add_get("/o/{tail:.*}", open_malformed, allow_head=True)
    app.router.add_get("/c/{token}", click, allow_head=True)
    app.router.add_get("/c/{tail:.*}", click_malformed, allow_head=True)
    app.router.add_route("GET", "/u/{token}", unsubscribe)
    app.router.add_route("POST", "/u/{token}", unsubscribe)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
