"""The authenticated ingest API, apart from the public edge: sends, conversions, delivery events, consents and
aggregate sends from senders."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from ingest.esp.routes import PREFIX as ESP_PREFIX
from ingest.esp.routes import EspSettings, add_esp_routes
from ingest.openapi import openapi_document
from ingest.publisher import KafkaPublisher, Publisher
from ingest.serverlog import quiet_bad_requests
from schemas.aggregate import AggregateSends
from schemas.consents import Consent
from schemas.deliveries import Delivery
from schemas.records import Record
from schemas.sends import Conversion, Send, text_field, time_field
from schemas.settings import Settings
from schemas.tenants import TenantRegistry
from schemas.timefmt import MAX_FUTURE
from schemas.tokens import ClickRef, Keyring, TokenError, verify_click_ref
from schemas.topics import Topics

MAX_ITEMS = 10_000  # per request; larger lists are split by the SDK
MAX_BODY = 16 * 1024 * 1024
MAX_ERRORS_SHOWN = 20

PUBLISHER = web.AppKey("publisher", Publisher)


def _error(status: int, message: str, errors: list[str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors[:MAX_ERRORS_SHOWN]
        if len(errors) > MAX_ERRORS_SHOWN:
            body["more_errors"] = len(errors) - MAX_ERRORS_SHOWN
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def _items(request: web.Request, name: str) -> list[Any] | web.Response:
    """The JSON list under `name` (or a bare list), or a 4xx answer saying what is wrong."""
    try:
        body = orjson.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body is over {MAX_BODY} bytes; send fewer {name} per request")
    except orjson.JSONDecodeError as exc:
        return _error(400, f"body is not JSON: {exc}")
    items = body.get(name) if isinstance(body, dict) else body
    if not isinstance(items, list):
        return _error(422, f"body must be {{\"{name}\": [...]}} or a JSON list")
    if not items:
        return _error(422, f"{name}: is empty")
    if len(items) > MAX_ITEMS:
        return _error(413, f"{name}: {len(items)} items; at most {MAX_ITEMS} per request")
    return items


PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})  # answered without an API key
TENANT = web.RequestKey("tenant", str)  # the tenant an API key belongs to; absent for an operator's key


def create_api_app(tenants: TenantRegistry | Keyring, api_keys: list[str], topics: Topics, publisher: Publisher,
                   own_publisher: bool = True, clock: Callable[[], float] = time.time,
                   esp: EspSettings | None = None) -> web.Application:
    """POST /v1/sends, /v1/conversions and /v1/events (delivery events) with `Authorization: Bearer
    KEY`. A 202 means the records were acknowledged by the transport (acks=all for Kafka): a sender
    that gets any other answer may retry, and conversions carry an idempotency key (delivery events
    their message, type and id) so a retry counts once. Validation is all or nothing per request, and
    every error names its item and field.

    `api_keys` (the settings') are the operator's: their records name their tenant ("" by default, else
    one of the registry's). A tenant's own API keys (`pixeltrack tenants add`) write for that tenant
    only, and its click ids are checked with its signing keys.

    `esp`: the email platforms' webhook receivers `/v1/esp/<platform>` (ingest/esp; not behind the API key:
    each platform's signature authenticates it), with the default tenant's secrets."""
    registry = tenants if isinstance(tenants, TenantRegistry) else TenantRegistry({}, tenants)
    # (key, tenant or None for the operator), every one compared on each request so that the time
    # taken does not say which key, or which prefix, matched.
    keys = [(k.encode(), None) for k in api_keys if k] + [
        (k.encode(), t.name) for t in registry.tenants.values() for k in t.api_keys if k]

    @web.middleware
    async def auth(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS or request.path.startswith(ESP_PREFIX):
            resp: web.StreamResponse = await handler(request)
            return resp
        # surrogateescape: a header that is not UTF-8 is a wrong key (401), not an encoding error (500).
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode(
            "utf-8", "surrogateescape")
        matches = [hmac.compare_digest(given, k) for k, _ in keys]
        if not any(matches):
            return _error(401, "missing or wrong API key (Authorization: Bearer KEY)")
        tenant = keys[matches.index(True)][1]
        if tenant is not None:
            request[TENANT] = tenant
        return await handler(request)  # type: ignore[no-any-return]

    async def accept(request: web.Request, name: str, topic: str,
                     parse: Callable[[Any, str, float, str | None],
                                     Send | Conversion | Delivery | Consent | AggregateSends],
                     key: Callable[[Any], str] = lambda x: str(x.message)) -> web.Response:
        """Validates every item (all or nothing), publishes them, answers 202 once acknowledged."""
        items = await _items(request, name)
        if isinstance(items, web.Response):
            return items
        now = clock()
        key_tenant = request.get(TENANT)
        out, errors = [], []
        for i, item in enumerate(items):
            where = f"{name}[{i}]"
            try:
                record = parse(item, where, now, key_tenant)
                _check_tenant(registry, record.tenant, key_tenant, where)
                out.append(record)
            except ValueError as exc:
                errors.append(str(exc))
        if errors:
            return _error(422, f"invalid {name}; nothing was recorded", errors)
        try:
            await request.app[PUBLISHER].publish([Record(topic, key(x).encode(), x.encode()) for x in out])
        except Exception as exc:
            return _error(503, f"could not record the {name} now ({type(exc).__name__}); retry")
        return web.json_response({"accepted": len(out)}, status=202)

    async def post_sends(request: web.Request) -> web.Response:
        return await accept(request, "sends", topics.sends,
                            lambda item, where, now, tenant: Send.from_api(item, where, default_ts=now,
                                                                           tenant=tenant or "",
                                                                           latest=now + MAX_FUTURE))

    async def post_conversions(request: web.Request) -> web.Response:
        return await accept(request, "conversions", topics.conversions,
                            lambda item, where, now, tenant: _conversion(registry, item, where, now, tenant))

    async def post_events(request: web.Request) -> web.Response:
        return await accept(request, "events", topics.deliveries,
                            lambda item, where, now, tenant: Delivery.from_api(item, where, default_ts=now,
                                                                               tenant=tenant or "",
                                                                               latest=now + MAX_FUTURE))

    async def post_consents(request: web.Request) -> web.Response:
        return await accept(request, "consents", topics.consents,
                            lambda item, where, now, tenant: _consent(item, where, now, tenant or ""),
                            key=lambda c: str(c.recipient))

    async def post_aggregate_sends(request: web.Request) -> web.Response:
        return await accept(request, "aggregate_sends", topics.aggregate_sends,
                            lambda item, where, now, tenant: AggregateSends.from_api(
                                item, where, default_ts=now, tenant=tenant or "", latest=now + MAX_FUTURE),
                            key=lambda a: str(a.campaign))

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    document = orjson.dumps(openapi_document(MAX_ITEMS, MAX_BODY))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    quiet_bad_requests()  # a malformed request: one DEBUG line, address truncated (ingest.serverlog)
    app = web.Application(middlewares=[auth], client_max_size=MAX_BODY)
    app[PUBLISHER] = publisher

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        if own_publisher:
            # A broker that does not answer at start is the caller's one error (pixeltrack api says it in
            # one line): aiokafka's own ERROR line is muted for the start only, and the failed producer closed.
            kafka_log = logging.getLogger("aiokafka")
            level = kafka_log.level
            kafka_log.setLevel(logging.CRITICAL)
            try:
                await publisher.start()
            except BaseException:
                await publisher.stop()
                raise
            finally:
                kafka_log.setLevel(level)
        yield
        if own_publisher:
            await publisher.stop()

    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/v1/sends", post_sends)
    app.router.add_post("/v1/conversions", post_conversions)
    app.router.add_post("/v1/events", post_events)
    app.router.add_post("/v1/consents", post_consents)
    app.router.add_post("/v1/aggregate-sends", post_aggregate_sends)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    add_esp_routes(app, registry, topics, lambda: app[PUBLISHER], esp or EspSettings(), clock)
    return app


def _check_tenant(registry: TenantRegistry, tenant: str, key_tenant: str | None, where: str) -> None:
    """A tenant's key writes for its tenant only; the operator's for the default tenant or a known one."""
    if key_tenant is not None and tenant != key_tenant:
        raise ValueError(f"{where}.tenant: {tenant[:64]!r} is not the tenant of this API key ({key_tenant!r})")
    if tenant and tenant not in registry.tenants:
        raise ValueError(f"{where}.tenant: {tenant[:64]!r} is not a tenant of this installation")


def _verify_click_id(registry: TenantRegistry, click_id: str, key_tenant: str | None) -> ClickRef:
    """The click id's ClickRef, checked with the keys of the tenant that minted it: the key's tenant, or
    for an operator's key the default keys and every tenant's whose key id matches. A ref must name
    the tenant whose keys signed it."""
    if key_tenant is not None:
        rings: list[tuple[str, Keyring | None]] = [(key_tenant, registry.for_tenant(key_tenant))]
    else:
        rings = [("", registry.default), *((name, registry.for_tenant(name)) for name in registry.tenants)]
    kid = click_id.split(".", 1)[0]
    reason = "unknown_key"
    for tenant, ring in rings:
        if ring is None or not ring.has_key(kid):
            continue
        try:
            ref = verify_click_ref(ring, click_id)
        except TokenError as exc:
            reason = exc.reason
            continue
        if ref.tenant == tenant:
            return ref
        reason = "wrong_tenant"
    raise TokenError(reason)


def _conversion(registry: TenantRegistry, item: Any, where: str, now: float, key_tenant: str | None) -> Conversion:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object")
    key = item.get("idempotency_key")
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError(f"{where}.idempotency_key: is required (a string of at most 200 characters)")
    value, currency = Conversion.validate_amount(item, where)
    ts = time_field(item, "ts", where, now, now + MAX_FUTURE)
    click_id = item.get("click_id") or ""
    if click_id:
        if not isinstance(click_id, str):
            raise ValueError(f"{where}.click_id: must be a string")
        try:
            ref = _verify_click_id(registry, click_id, key_tenant)
        except TokenError as exc:
            raise ValueError(f"{where}.click_id: not a valid click id ({exc.reason})") from None
        return Conversion(tenant=ref.tenant, idempotency_key=key, ts=ts, value=value, currency=currency,
                          click_id=click_id, click_hit_id=ref.hit_id,
                          message=ref.message, campaign=ref.campaign, variant=ref.variant,
                          recipient=ref.recipient, link=ref.link)
    message = text_field(item, "message", where, required=False)
    if not message:
        raise ValueError(f"{where}: needs click_id or message")
    return Conversion(tenant=text_field(item, "tenant", where, required=False) or key_tenant or "",
                      idempotency_key=key, ts=ts,
                      value=value, currency=currency, message=message,
                      campaign=text_field(item, "campaign", where, required=False))


API_CONSENT_SOURCES = ("api", "sdk", "csv")  # "preferences" is the edge's own (the recipient's page)


def _consent(item: Any, where: str, now: float, tenant: str) -> Consent:
    source = item.get("source") if isinstance(item, dict) else None
    if source is not None and source not in API_CONSENT_SOURCES:
        raise ValueError(f"{where}.source: {str(source)[:40]!r} is not one of {', '.join(API_CONSENT_SOURCES)}")
    return Consent.from_api(item, where, now, tenant=tenant, source=source or "api", latest=now + MAX_FUTURE)


def create_api_from_settings(settings: Settings, tenants: TenantRegistry | Keyring,
                             publisher: Publisher | None = None) -> web.Application:
    """The API as `pixeltrack api` runs it: Kafka from settings unless a publisher is given."""
    own = publisher is None
    pub: Publisher = publisher or KafkaPublisher(
        settings.kafka_bootstrap, client_id=f"pixeltrack-api-{settings.edge_id}",
        linger_ms=settings.producer_linger_ms, compression=settings.producer_compression)
    keys = settings.api_keys.get_secret_value().split(",") if settings.api_keys else []
    return create_api_app(tenants, [k.strip() for k in keys], Topics(settings.topic_prefix), pub, own_publisher=own,
                          esp=esp_settings(settings))


def esp_settings(settings: Settings) -> EspSettings:
    """The webhook receivers' settings: the default tenant's platform secrets and the replay window."""
    return EspSettings(settings.esp_secrets(), float(settings.esp_max_age_seconds))
