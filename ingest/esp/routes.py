"""The routes `POST /v1/esp/<platform>[?tenant=NAME]` of the ingest API: tenant, verification, publish.

The receivers are not behind the API key (a platform cannot send one): each request is authenticated by
its platform's signature (Postmark: Basic credentials) with the secrets of the tenant the `tenant` query
parameter names (absent: the default tenant, with the PIXELTRACK_ESP_* settings). A request that does not
verify is refused (401; SES 403), counted, and nothing of it is published. One that does is published
whole (deliveries, hits and dead letters in one acknowledged publish) before the 200; a publish that fails
answers 503 and the platform sends it again (every record's id makes the repeat count once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ingest import metrics
from ingest.esp import mailgun, postmark, sendgrid, ses
from ingest.esp.common import Batch, Context, Refused, Request
from ingest.publisher import Publisher
from schemas.esp import EspSecrets
from schemas.tenants import TenantRegistry
from schemas.tokens import Keyring
from schemas.topics import Topics

Adapter = Callable[[bytes, Mapping[str, str], EspSecrets, Batch, Context], Awaitable[dict[str, Any] | None]]
ADAPTERS: dict[str, Adapter] = {"sendgrid": sendgrid.take, "mailgun": mailgun.take, "postmark": postmark.take,
                                "ses": ses.take}
PREFIX = "/v1/esp/"
_log = logging.getLogger("pixeltrack.esp")


@dataclass(slots=True)
class EspSettings:
    """The default tenant's platform secrets, the replay window, and how SNS certificates are fetched."""

    default: EspSecrets = field(default_factory=EspSecrets)
    max_age_seconds: float = 600.0
    fetch: ses.Fetch | None = None  # None: HTTPS GET (tests give their own; see ingest.esp.ses)


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _tenant(registry: TenantRegistry, esp: EspSettings, name: str,
            platform: str) -> tuple[EspSecrets, Keyring, str]:
    """(secrets, keys, tracking host) of the tenant named, or Refused (404) saying why it cannot be served."""
    if name:
        tenant = registry.tenants.get(name)
        ring = registry.for_tenant(name)
        if tenant is None or ring is None:
            raise Refused(404, "unknown_tenant", f"tenant {name[:64]!r} is not a tenant of this installation")
        if not tenant.domains:
            raise Refused(404, "not_configured", f"tenant {name!r} has no tracking domain: its hits need one "
                          "(pixeltrack tenants add-domain)")
        secrets, host = tenant.esp, tenant.domains[0]
    else:
        if registry.default is None:
            raise Refused(404, "unknown_tenant", "no default tenant here: name one with ?tenant=NAME")
        secrets, ring, host = esp.default, registry.default, ""
    if not secrets.configured(platform):
        raise Refused(404, "not_configured", f"{platform} webhooks are not set up for this tenant (docs/esp.md)")
    return secrets, ring, host


def add_esp_routes(app: web.Application, registry: TenantRegistry, topics: Topics,
                   publisher: Callable[[], Publisher], esp: EspSettings, clock: Callable[[], float]) -> None:
    """POST /v1/esp/sendgrid, /mailgun, /postmark and /ses on `app` (the API key middleware lets PREFIX by)."""
    verifier = ses.SnsVerifier(esp.fetch)

    def handler(platform: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        adapter = ADAPTERS[platform]

        async def receive(request: web.Request) -> web.Response:
            try:
                return await _receive(request, platform, adapter)
            except Refused as refused:
                metrics.ESP_REQUESTS.labels(platform, refused.result).inc()
                return _answer(refused.status, {"error": str(refused)})

        return receive

    async def _receive(request: web.Request, platform: str, adapter: Adapter) -> web.Response:
        now = clock()
        secrets, ring, host = _tenant(registry, esp, request.query.get("tenant", ""), platform)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, "too_large", "body is over the API's size limit") from None
        batch = Batch(Request(platform, request.query.get("tenant", ""), host, ring, now, request.path,
                              request.remote or "", request.headers.get("User-Agent", "")), topics)
        extra = await adapter(body, request.headers, secrets, batch, Context(now, esp.max_age_seconds, verifier))
        if batch.records:
            try:
                await publisher().publish(batch.records)
            except Exception as exc:
                _log.warning("esp %s: publish failed (%s); the platform will send it again", platform, exc)
                raise Refused(503, "unavailable", f"could not record the events now ({type(exc).__name__}); "
                              "retry") from None
        metrics.ESP_REQUESTS.labels(platform, "ok").inc()
        for outcome, n in batch.counts.items():
            metrics.ESP_EVENTS.labels(platform, outcome).inc(n)
        return _answer(200, {**batch.summary(), **(extra or {})})

    for platform in ADAPTERS:
        app.router.add_post(f"{PREFIX}{platform}", handler(platform))
