"""The edge's aiohttp front end: routes, thin handlers (parse, call the Edge, answer) and the app factory
with the lifetimes of the queue, forwarder and background tasks. What a fetch means is ingest/edge.py's;
the pages are ingest/pages.py's; the fast path (ingest/fastpath.py) serves the same Edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ingest import metrics
from ingest.adopt import adopt_spool
from ingest.client_ip import ClientIpResolver
from ingest.edge import Edge, RequestFacts, UnsubscribeAnswer, forwarded_for, kept_headers
from ingest.forwarder import Forwarder, HitQueue
from ingest.objectstore import document_store
from ingest.pages import (
    HTML_NO_STORE,
    NOT_FOUND_HEADERS,
    NOT_FOUND_HTML,
    PREFERENCES_BAD_CHOICE_PAGE,
    PREFERENCES_FAILED_PAGE,
    UNSUBSCRIBE_FAILED_PAGE,
    UNSUBSCRIBE_PAGE,
    UNSUBSCRIBED_PAGE,
    preferences_page,
    preferences_saved_page,
)
from ingest.pixel import GIF, PIXEL_HEADERS, REDIRECT_HEADERS
from ingest.publisher import KafkaPublisher, Publisher
from ingest.serverlog import quiet_bad_requests
from ingest.site import add_routes as add_site_routes
from ingest.spool import Spool
from schemas.aio import finish_within
from schemas.privacy import load_do_not_track, recipient_key
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring
from schemas.topics import Topics

log = logging.getLogger(__name__)

# Bounds on what a client may send, enforced by aiohttp's parser before any handler runs (an answer
# of 400, or 431 for too many headers, never a 5xx). The request line fits the longest token
# (MAX_TOKEN_CHARS) with room for a query string; a header field fits a long User-Agent or cookie.
# The fast path takes only heads within them too.
SERVER_LIMITS: dict[str, Any] = {
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 64,
}
TASK_CANCEL_WAIT = 1.0  # shutdown: how long the edge's own tasks get to end once cancelled

EDGE = web.AppKey("edge", Edge)
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def request_facts(request: web.BaseRequest) -> RequestFacts:
    """The facts of a request aiohttp parsed, as the Edge reads them (the fast path's parse_head makes
    the same from the same bytes)."""
    headers = request.headers
    return RequestFacts(request.method, request.raw_path, request.host or "", request.remote,
                        forwarded_for(headers), headers.get("User-Agent", ""), kept_headers(headers.items()),
                        time.time())


def _not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_HTML, headers=NOT_FOUND_HEADERS)


async def open_pixel(request: web.Request) -> web.Response:
    request.app[EDGE].open_hit(request_facts(request), request.match_info["name"])
    # A pixel is always a pixel: a bad token must not show a broken image in someone's mail.
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def click(request: web.Request) -> web.Response:
    location = request.app[EDGE].click_hit(request_facts(request), request.match_info["token"])
    if location is None:
        return _not_found()
    headers = dict(REDIRECT_HEADERS)
    headers["Location"] = location
    return web.Response(status=302, headers=headers)


async def download(request: web.Request) -> web.Response:
    """/d/<token>: a document sent with the email; 302 to it (Edge.download_hit), 404 for a bad token."""
    return _redirect(request.app[EDGE].download_hit(request_facts(request), request.match_info["token"]))


async def image(request: web.Request) -> web.Response:
    """/i/<token>: one of the email's own images; 302 to the original (never cached, so every reading
    fetches it), and the pixel for a bad token: never a broken image."""
    location = request.app[EDGE].image_hit(request_facts(request), request.match_info["token"])
    if location is None:
        return web.Response(body=GIF, headers=PIXEL_HEADERS)
    return _redirect(location)


def _redirect(location: str | None) -> web.Response:
    if location is None:
        return _not_found()
    headers = dict(REDIRECT_HEADERS)
    headers["Location"] = location
    return web.Response(status=302, headers=headers)


async def unsubscribe(request: web.Request) -> web.Response:
    """/u/<token>: GET shows the confirmation form, POST records the unsubscribe (Edge.unsubscribe)."""
    return _unsubscribe_answer(request.app[EDGE].unsubscribe(request_facts(request), request.match_info["token"],
                                                             confirmed=request.method == "POST"))


async def click_post(request: web.Request) -> web.Response:
    """A POST to /c/<token>: on the email's own unsubscribe link (List-Unsubscribe, RFC 8058 one-click) the
    unsubscribe and /u/'s answer to a POST (Edge.one_click); on any other link 405, as aiohttp answers a
    method a route does not take. (The fast path takes only GET and HEAD: a POST always comes here.)"""
    answer = request.app[EDGE].one_click(request_facts(request), request.match_info["token"])
    if answer is None:
        raise web.HTTPMethodNotAllowed(request.method, ("GET", "HEAD"))
    return _unsubscribe_answer(answer)


def _unsubscribe_answer(answer: UnsubscribeAnswer) -> web.Response:
    if answer is UnsubscribeAnswer.NOT_FOUND:
        return _not_found()
    if answer is UnsubscribeAnswer.CONFIRM:
        return web.Response(text=UNSUBSCRIBE_PAGE, headers=HTML_NO_STORE)
    if answer is UnsubscribeAnswer.TRY_AGAIN:
        # Never confirm what was not kept.
        return web.Response(status=503, text=UNSUBSCRIBE_FAILED_PAGE, headers={**HTML_NO_STORE, "Retry-After": "60"})
    return web.Response(text=UNSUBSCRIBED_PAGE, headers=HTML_NO_STORE)


async def preferences(request: web.Request) -> web.Response:
    """/p/<token>: GET shows the preferences page, POST (form field `consent`) records the choice
    (Edge.preferences). A GET never changes anything: scanners prefetch every link of an email."""
    choice: str | None = None
    if request.method == "POST":
        form = await request.post()
        value = form.get("consent", "")
        choice = value.strip().lower() if isinstance(value, str) else ""
    answer = request.app[EDGE].preferences(request_facts(request), request.match_info["token"], choice)
    if answer.kind == "not_found" or answer.ref is None:
        return _not_found()
    if answer.kind == "form":
        return web.Response(text=preferences_page(answer.ref.state), headers=HTML_NO_STORE)
    if answer.kind == "bad_choice":
        return web.Response(status=400, text=PREFERENCES_BAD_CHOICE_PAGE, headers=HTML_NO_STORE)
    if answer.kind == "try_again":
        return web.Response(status=503, text=PREFERENCES_FAILED_PAGE, headers={**HTML_NO_STORE, "Retry-After": "60"})
    return web.Response(text=preferences_saved_page(choice or ""), headers=HTML_NO_STORE)


async def open_malformed(request: web.Request) -> web.Response:
    """/o/ paths that are not one token (a slash inside, an empty name): still a pixel."""
    request.app[EDGE].bad_request(request_facts(request), "open", "malformed", "path is not /o/<token>")
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def click_malformed(request: web.Request) -> web.Response:
    request.app[EDGE].bad_request(request_facts(request), "click", "malformed", "path is not /c/<token>")
    return _not_found()


async def download_malformed(request: web.Request) -> web.Response:
    request.app[EDGE].bad_request(request_facts(request), "download", "malformed", "path is not /d/<token>")
    return _not_found()


async def image_malformed(request: web.Request) -> web.Response:
    request.app[EDGE].bad_request(request_facts(request), "image", "malformed", "path is not /i/<token>")
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


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
                     topics=Topics(settings.topic_prefix),
                     click_id_param="" if settings.tracking == "aggregate" else settings.click_id_param,
                     dnt=load_do_not_track(settings.do_not_track_file),
                     privacy_key=_privacy_key(settings, registry), sign_document=document_store(settings))
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
    app.router.add_post("/c/{token}", click_post)
    app.router.add_get("/c/{tail:.*}", click_malformed, allow_head=True)
    app.router.add_get("/d/{token}", download, allow_head=True)
    app.router.add_get("/d/{tail:.*}", download_malformed, allow_head=True)
    app.router.add_get("/i/{token}", image, allow_head=True)
    app.router.add_get("/i/{tail:.*}", image_malformed, allow_head=True)
    app.router.add_route("GET", "/u/{token}", unsubscribe)
    app.router.add_route("POST", "/u/{token}", unsubscribe)
    app.router.add_route("GET", "/p/{token}", preferences)
    app.router.add_route("POST", "/p/{token}", preferences)
    add_site_routes(app, app[EDGE], request_facts, settings.click_id_param, settings.site_click_days)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app
