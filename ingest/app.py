"""The edge's aiohttp application: routes, handlers and the lifetimes of the queue and forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest import metrics
from ingest.client_ip import ClientIpResolver
from ingest.forwarder import Forwarder, HitQueue
from ingest.pixel import GIF, NOT_FOUND_HEADERS, NOT_FOUND_HTML, PIXEL_HEADERS, REDIRECT_HEADERS
from ingest.publisher import KafkaPublisher, Publisher
from ingest.spool import Spool
from schemas.records import KEPT_HEADERS, MAX_HEADER, MAX_HOST, MAX_PATH, MAX_UA, DeadLetter, RawHit, Record
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenError
from schemas.topics import Topics


@dataclass(slots=True)
class Edge:
    """Per-app state the handlers use. Handlers parse, enqueue and answer; nothing else."""

    keyring: Keyring
    forwarder: Forwarder
    ips: ClientIpResolver
    edge_id: str
    topics: Topics
    _ids: itertools.count[int]
    _prefix: str

    def next_id(self) -> str:
        # Unique across edges and restarts: 64 random bits per process start, then a counter.
        return f"{self._prefix}{next(self._ids):x}"

    def _common(self, request: web.Request) -> tuple[str, float, str, str, str, str]:
        h = request.headers
        ip = self.ips.resolve(request.remote, h.get("X-Forwarded-For"))
        return (self.next_id(), time.time(), ip, h.get("User-Agent", "")[:MAX_UA],
                (request.host or "")[:MAX_HOST], request.raw_path[:MAX_PATH])

    def record_hit(self, request: web.Request, kind: str, token: str, message: str) -> None:
        hid, now, ip, ua, host, path = self._common(request)
        h = request.headers
        headers = {k: h[k][:MAX_HEADER] for k in KEPT_HEADERS if k in h}
        hit = RawHit(id=hid, received_at=now, kind=kind, method=request.method, host=host, path=path,
                     token=token, ip=ip, ua=ua, edge=self.edge_id, headers=headers)
        kept = self.forwarder.submit(Record(self.topics.hits_raw, message.encode(), hit.encode()))
        metrics.HITS.labels(kind, "ok" if kept else "dropped").inc()

    def record_bad(self, request: web.Request, kind: str, reason: str, detail: str = "") -> None:
        hid, now, ip, ua, host, path = self._common(request)
        letter = DeadLetter(id=hid, received_at=now, stage="edge", reason=reason, detail=detail[:200],
                            kind=kind, method=request.method, host=host, path=path, ip=ip, ua=ua,
                            edge=self.edge_id)
        self.forwarder.submit(Record(self.topics.hits_dlq, None, letter.encode()))
        metrics.HITS.labels(kind, reason).inc()


EDGE = web.AppKey("edge", Edge)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def open_pixel(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    name = request.match_info["name"]
    token = name[:-4] if name.endswith(".gif") else name
    try:
        payload = edge.keyring.verify(token, "open", _now_ms())
    except TokenError as exc:
        edge.record_bad(request, "open", exc.reason, str(exc))
    else:
        edge.record_hit(request, "open", token, payload.message)
    # A pixel is always a pixel: a bad token must not show a broken image in someone's mail.
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def click(request: web.Request) -> web.Response:
    edge = request.app[EDGE]
    token = request.match_info["token"]
    try:
        payload = edge.keyring.verify(token, "click", _now_ms())
    except TokenError as exc:
        edge.record_bad(request, "click", exc.reason, str(exc))
        # Never redirect on anything unsigned: the destination comes only from a verified token.
        return web.Response(status=404, body=NOT_FOUND_HTML, headers=NOT_FOUND_HEADERS)
    edge.record_hit(request, "click", token, payload.message)
    headers = dict(REDIRECT_HEADERS)
    headers["Location"] = payload.url
    return web.Response(status=302, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Not ready when the spool nears its bound, so the load balancer prefers other edges. A broken
    transport alone keeps it ready: the spool holds the hits. Pixels are answered either way."""
    f = request.app[EDGE].forwarder
    ready = not f.at_bound()
    body = {"ready": ready, "transport": "ok" if f.healthy() else "catching-up",
            "queue": f.queue.qsize(), "spool_bytes": f.spool.pending_bytes() if f.spool else 0}
    return web.json_response(body, status=200 if ready else 503)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings, publisher: Publisher | None = None,
               keyring: Keyring | None = None, drain_timeout: float = 10.0) -> web.Application:
    """The edge. `publisher` defaults to Kafka at settings.kafka_bootstrap, `keyring` to the settings'
    keys; the spool is settings.spool_dir (None: no spool). The transport is started by the forwarder,
    so the edge answers even when Kafka is down at start. On shutdown it stops accepting, then
    publishes what is left within `drain_timeout`; the rest stays in the spool."""
    pub: Publisher = publisher or KafkaPublisher(
        settings.kafka_bootstrap, client_id=f"pixeltrack-edge-{settings.edge_id}",
        linger_ms=settings.producer_linger_ms, compression=settings.producer_compression)
    spool = (Spool(settings.spool_dir, settings.spool_segment_bytes, settings.spool_max_bytes)
             if settings.spool_dir is not None else None)
    forwarder = Forwarder(HitQueue(settings.queue_size), pub, spool,
                          publish_timeout=settings.publish_timeout_ms / 1000,
                          fsync_interval=settings.spool_fsync_ms / 1000)
    app = web.Application(client_max_size=64 * 1024)
    app[EDGE] = Edge(keyring=keyring or settings.keyring(), forwarder=forwarder,
                     ips=ClientIpResolver(settings.trusted_proxies), edge_id=settings.edge_id,
                     topics=Topics(settings.topic_prefix),
                     _ids=itertools.count(1), _prefix=os.urandom(8).hex())

    async def forwarding(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(forwarder.run(), name="pixeltrack-forwarder")]
        if spool is not None:
            tasks.append(asyncio.create_task(forwarder.sync_spool(), name="pixeltrack-spool-fsync"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await forwarder.drain(drain_timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pub.stop(), 5.0)
        if spool is not None:
            spool.close()

    app.cleanup_ctx.append(forwarding)
    app.router.add_get("/o/{name}", open_pixel, allow_head=True)
    app.router.add_get("/c/{token}", click, allow_head=True)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
