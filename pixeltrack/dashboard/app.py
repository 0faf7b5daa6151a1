"""The dashboard's aiohttp app: pages, the panels they poll, /healthz, and a shared read cache."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from aiohttp import web

from ingest.serverlog import quiet_bad_requests
from ingest.serving import ServerLimits
from pixeltrack.dashboard import pages
from pixeltrack.dashboard.queries import (
    SIDES,
    Query,
    ReasonRows,
    fetch_campaign,
    fetch_campaigns,
    fetch_examples,
    fetch_reasons,
)
from pixeltrack.dashboard.rows import CampaignData, CampaignRow, ExampleHit
from pixeltrack.dashboard.templates import CONTENT_SECURITY_POLICY
from schemas.tenants import host_name

log = logging.getLogger(__name__)
T = TypeVar("T")
HEALTH_TIMEOUT_SECONDS = 5.0
QUERY_TIMEOUT_SECONDS = 30.0
REASONS_CACHE_SECONDS = 30.0  # reasons read raw events (no aggregate keeps them): refreshed less often


class ResultCache:
    """Shares one load per key among concurrent requests and keeps its answer for `ttl` seconds after it
    arrived, so any number of open pages polling every few seconds cost at most one set of queries per
    ttl (in `pixeltrack serve` they queue on the writer's thread with the inserts). Failures are not
    kept. Holds at most `max_entries` keys (campaign names come from URLs), oldest dropped first."""

    def __init__(self, ttl: float, max_entries: int = 64) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()

    async def get(self, key: tuple[str, ...], load: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is None or not entry.usable(loop.time(), self.ttl):
            entry = _Entry(asyncio.ensure_future(load()))
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        # shield: a request that goes away does not cancel the load the others wait for
        return cast(T, await asyncio.shield(entry.future))

    def close(self) -> None:
        for entry in self._entries.values():
            entry.future.cancel()
        self._entries.clear()


class _Entry:
    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.done_at: float | None = None
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self.done_at = asyncio.get_running_loop().time()
        if not future.cancelled():
            future.exception()  # retrieved here: a failure every waiter left is not logged as lost

    def usable(self, now: float, ttl: float) -> bool:
        if not self.future.done():
            return True
        ok = not self.future.cancelled() and self.future.exception() is None
        return ok and self.done_at is not None and now - self.done_at < ttl


@dataclass(frozen=True, slots=True)
class Dashboard:
    query: Query
    tenant: str
    refresh_seconds: int
    cache: ResultCache
    slow_cache: ResultCache  # for reads of raw events: reasons and example hits

    async def campaigns(self) -> list[CampaignRow]:
        return await self.cache.get(("list",), lambda: _timed(fetch_campaigns(self.query, self.tenant)))

    async def campaign(self, name: str) -> CampaignData | None:
        return await self.cache.get(("campaign", name),
                                    lambda: _timed(fetch_campaign(self.query, name, self.tenant, self._reasons(name))))

    def _reasons(self, name: str) -> Callable[[], Awaitable[ReasonRows]]:
        return lambda: self.slow_cache.get(("reasons", name), lambda: fetch_reasons(self.query, name, self.tenant))

    async def examples(self, name: str, source: str, side: str, kind: str, reason: str) -> list[ExampleHit]:
        return await self.slow_cache.get(
            ("examples", name, source, side, kind, reason),
            lambda: _timed(fetch_examples(self.query, name, source, side, kind, reason, self.tenant)))


DASHBOARD = web.AppKey("dashboard", Dashboard)


async def _timed(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, QUERY_TIMEOUT_SECONDS)


def _now() -> datetime:
    return datetime.now(UTC)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _unavailable(exc: BaseException) -> str:
    log.warning("dashboard query failed: %r", exc)
    if isinstance(exc, TimeoutError):
        detail = "it took too long"
    else:
        lines = str(exc).strip().splitlines()
        detail = lines[0][:300] if lines else type(exc).__name__
    return f"ClickHouse did not answer ({detail}). The page retries on its own."


async def index(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    try:
        rows = await d.campaigns()
    except Exception as exc:
        return _html(pages.error_page("Dashboard unavailable", _unavailable(exc), d.refresh_seconds, _now(),
                                      reload_when_back=True), 503)
    return _html(pages.list_page(rows, d.tenant, d.refresh_seconds, _now()))


async def list_panels(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    try:
        rows = await d.campaigns()
    except Exception as exc:
        return web.json_response({"error": _unavailable(exc)}, status=503)
    return web.json_response({"panels": pages.list_panels(rows), "updated": pages.updated_at(_now())})


def _campaign_name(request: web.Request) -> str | None:
    name = request.query.get("name")
    return name if name is not None and len(name) <= 512 else None


async def campaign(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    name = _campaign_name(request)
    if name is None:
        return _html(pages.error_page("No campaign given", "Open a campaign from the list: "
                                      "campaign?name=<campaign>.", d.refresh_seconds, _now()), 400)
    panels_url = pages.panels_href(name)
    try:
        data = await d.campaign(name)
    except Exception as exc:
        return _html(pages.error_page("Dashboard unavailable", _unavailable(exc), d.refresh_seconds, _now(),
                                      panels_url, reload_when_back=True), 503)
    if data is None:
        return _html(pages.error_page("Campaign not found", f"No sends or hits for campaign {name!r} yet. "
                                      "This page opens it as soon as there are.", d.refresh_seconds, _now(),
                                      panels_url, reload_when_back=True), 404)
    return _html(pages.campaign_page(data, d.tenant, d.refresh_seconds, _now()))


async def campaign_panels(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    name = _campaign_name(request)
    if name is None:
        return web.json_response({"error": "name=<campaign> is required"}, status=400)
    try:
        data = await d.campaign(name)
    except Exception as exc:
        return web.json_response({"error": _unavailable(exc)}, status=503)
    if data is None:
        return web.json_response({"error": f"no campaign {name!r}"}, status=404)
    return web.json_response({"panels": pages.campaign_panels(data), "updated": pages.updated_at(_now())})


def _examples_filter(request: web.Request) -> tuple[str, str, str, str, str] | str:
    """(campaign, source, side, kind, reason) of a drill-down, or what is wrong with the request."""
    q = request.query
    name, source = q.get("name"), q.get("source")
    side, kind, reason = q.get("side", "machine"), q.get("kind", ""), q.get("reason", "")
    if name is None or len(name) > 512 or source is None or len(source) > 64:
        return "name=<campaign> and source=<source> are required"
    if side not in SIDES:
        return f"side={side!r}: must be one of {', '.join(SIDES)}"
    if kind not in ("", "open", "click", "download"):
        return f"kind={kind!r}: must be open, click or download"
    if len(reason) > 64:
        return "reason=: at most 64 characters"
    return name, source, side, kind, reason


async def examples(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    f = _examples_filter(request)
    if isinstance(f, str):
        return _html(pages.error_page("Which hits?", f, d.refresh_seconds, _now()), 400)
    panels_url = pages.examples_panels_href(*f)
    try:
        hits = await d.examples(*f)
    except Exception as exc:
        return _html(pages.error_page("Dashboard unavailable", _unavailable(exc), d.refresh_seconds, _now(),
                                      panels_url, reload_when_back=True), 503)
    return _html(pages.examples_page(*f, hits, d.tenant, d.refresh_seconds, _now()))


async def examples_panels(request: web.Request) -> web.Response:
    d = request.app[DASHBOARD]
    f = _examples_filter(request)
    if isinstance(f, str):
        return web.json_response({"error": f}, status=400)
    try:
        hits = await d.examples(*f)
    except Exception as exc:
        return web.json_response({"error": _unavailable(exc)}, status=503)
    return web.json_response({"panels": pages.examples_panels(hits), "updated": pages.updated_at(_now())})


async def healthz(request: web.Request) -> web.Response:
    """200 when ClickHouse answers a trivial read, 503 with the reason when it does not."""
    d = request.app[DASHBOARD]
    try:
        await asyncio.wait_for(d.query("SELECT 1", {}), HEALTH_TIMEOUT_SECONDS)
    except Exception as exc:
        return web.json_response({"status": "unavailable", "error": _unavailable(exc)}, status=503)
    return web.json_response({"status": "ok"})


@web.middleware
async def security_headers(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def same_site_only(allowed_hosts: frozenset[str] | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuses what another site makes a browser send: any request marked Sec-Fetch-Site: cross-site
    (a page elsewhere firing GETs at the dashboard, which run queries on the thread that inserts), and,
    when `allowed_hosts` is given, a Host header naming anything else (DNS rebinding: a page whose
    name resolves to 127.0.0.1 reading the dashboard as its own origin)."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return web.Response(status=403, text="cross-site requests are refused")
        if allowed_hosts is not None and host_name(request.host or "") not in allowed_hosts:
            return web.Response(status=421, text="this dashboard answers to its own address only")
        return await handler(request)

    return middleware


def create_dashboard_app(query: Query, tenant: str = "", refresh_seconds: int = 5, *,
                         cache_seconds: float | None = None,
                         allowed_hosts: frozenset[str] | None = None) -> web.Application:
    """The dashboard for one tenant. `query` runs read-only SQL with `{name:Type}` parameters (see
    `query_with`). Pages poll their panels every `refresh_seconds`; reads are shared for
    `cache_seconds` (default: half the refresh interval). No authentication: bind it to localhost or
    put it behind one. `allowed_hosts`: the Host names it answers to (None: any, as behind a proxy);
    cross-site requests are refused either way."""
    if refresh_seconds < 1:
        raise ValueError(f"refresh_seconds={refresh_seconds!r}: must be a whole number of seconds >= 1")
    ttl = refresh_seconds / 2 if cache_seconds is None else cache_seconds
    if ttl < 0:
        raise ValueError(f"cache_seconds={cache_seconds!r}: must be >= 0")
    quiet_bad_requests()  # a malformed request: one DEBUG line, address truncated (ingest.serverlog)
    app = web.Application(middlewares=[same_site_only(allowed_hosts), security_headers])
    cache = ResultCache(ttl)
    # raw-event reads are shared longer, unless the caller chose the cache time
    slow_cache = ResultCache(ttl if cache_seconds is not None else max(ttl, REASONS_CACHE_SECONDS))
    app[DASHBOARD] = Dashboard(query, tenant, refresh_seconds, cache, slow_cache)

    async def close_cache(_: web.Application) -> None:
        cache.close()
        slow_cache.close()

    app.on_cleanup.append(close_cache)
    app.router.add_get("/", index)
    app.router.add_get("/panels", list_panels)
    app.router.add_get("/campaign", campaign)
    app.router.add_get("/campaign/panels", campaign_panels)
    app.router.add_get("/hits", examples)
    app.router.add_get("/hits/panels", examples_panels)
    app.router.add_get("/healthz", healthz)
    return app


class ReadOnlyQuerier(Protocol):
    """What `query_with` needs: processors.writer.ClickHouseWriter has it."""

    async def query(self, sql: str, readonly: bool = True,
                    parameters: dict[str, Any] | None = None) -> tuple[list[str], list[Sequence[Any]]]: ...


def query_with(writer: ReadOnlyQuerier) -> Query:
    """The dashboard's query function over a ClickHouseWriter: read-only SQL on the thread that owns
    the client (the only one allowed to touch a chDB path in its process)."""

    async def query(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        return await writer.query(sql, readonly=True, parameters=parameters)

    return query


async def start_dashboard(query: Query, host: str = "127.0.0.1", port: int = 8082, *, tenant: str = "",
                          refresh_seconds: int = 5, limits: ServerLimits | None = None) -> web.AppRunner:
    """Serves the dashboard until the returned runner's `cleanup()`; `runner.addresses` has the bound
    (host, port) — port 0 picks a free one. `limits`: the process's deadlines and connection cap
    (default: the settings' defaults)."""
    # Bound to loopback, it answers to loopback names only (see same_site_only).
    loopback = host in LOOPBACK_NAMES or host == "::1" or host.startswith("127.")
    limits = limits or ServerLimits()
    runner = limits.runner(create_dashboard_app(query, tenant, refresh_seconds,
                                                allowed_hosts=LOOPBACK_NAMES | {host} if loopback else None))
    await runner.setup()
    await limits.site(runner, host, port, server="dashboard", reuse_address=True).start()
    return runner
