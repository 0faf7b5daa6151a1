"""The site after the click, at the edge: /s.js (the first-party script) and /s/e (its beacons).

The beacon's meaning (schemas/site.py): a page view with a click id becomes a RawHit of kind `visit`
(attributed through the click id, classified by the processors), one without becomes a `site_visit`
(the site's origin only), a conversion becomes a Conversion on the conversions topic, idempotent by
the click's message and the conversion's id. The edge checks the click id with the keys of the tenant
whose domain was posted to and answers from memory: nothing waits for Kafka or ClickHouse. Junk is a
4xx naming the field and a dead letter, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ingest.edge import Edge, RequestFacts
from ingest.pixel import NO_STORE
from ingest.site_script import etag, render
from schemas.privacy import recipient_hash
from schemas.records import Record
from schemas.sends import Conversion
from schemas.site import MAX_BEACON_BYTES, SITE_VISIT, VISIT, Beacon, conversion_key, origin_of, parse_beacon
from schemas.tokens import TokenError

log = logging.getLogger(__name__)

SCRIPT_MAX_AGE = 3600  # a changed script reaches every site within the hour
BEACON = "beacon"  # the kind of a beacon's dead letters and answer counts

# A beacon comes from another origin (the sender's site): sendBeacon's text/plain POST needs no
# preflight, and nothing it could read is in the answer; a page posting JSON with fetch gets its preflight.
BEACON_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": NO_STORE,
}))
PREFLIGHT_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
    "Cache-Control": "public, max-age=86400",
}))


class SiteScript:
    """The script as this edge serves it: rendered once, with its validators."""

    def __init__(self, click_id_param: str, days: int) -> None:
        self.body = render(click_id_param, days)
        self.etag = etag(self.body)
        self.headers = CIMultiDictProxy(CIMultiDict({
            "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": f"public, max-age={SCRIPT_MAX_AGE}",
            "ETag": self.etag,
            "X-Content-Type-Options": "nosniff",
            # Loaded by other sites' pages, with or without crossorigin="anonymous" (for SRI).
            "Cross-Origin-Resource-Policy": "cross-origin",
            "Access-Control-Allow-Origin": "*",
        }))


class BeaconAnswer:
    """What a beacon gets: a status and, for a refusal, the reason in a line of text."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason


ACCEPTED = BeaconAnswer(204)


def take_beacon(edge: Edge, facts: RequestFacts, body: bytes) -> BeaconAnswer:
    """What the beacon `body` posted with `facts` means: recorded (204), refused with a dead letter
    (400 unreadable, 413 too large, 422 a field or the click id), or not kept just now (503)."""
    try:
        beacon = parse_beacon(body)
    except ValueError as exc:
        reason = "too_large" if len(body) > MAX_BEACON_BYTES else "malformed"
        edge.record_bad(BEACON, reason, str(exc), facts)
        return BeaconAnswer(413 if reason == "too_large" else 400 if str(exc).startswith("body") else 422, str(exc))
    if not beacon.click_id:
        return _site_visit(edge, facts, beacon)
    try:
        ref = edge.tenants.verify_click_id(facts.host, beacon.click_id)
    except TokenError as exc:
        edge.record_bad(BEACON, exc.reason, f"click_id: {exc}", facts)
        return BeaconAnswer(422, f"click_id: not a valid click id ({exc.reason})")
    except Exception as exc:  # a payload of an unexpected shape: never a 500
        edge.record_bad(BEACON, "malformed", f"click_id: {type(exc).__name__}", facts)
        return BeaconAnswer(422, "click_id: not a valid click id (malformed)")
    if edge.dnt and recipient_hash(ref.tenant, ref.recipient) in edge.dnt:
        edge.count(BEACON, "do_not_track")
        return ACCEPTED  # answered as usual, nothing kept
    if beacon.event == "view":
        # The RawHit's path is the page (origin and path), its token the click id.
        edge.record_hit(VISIT, beacon.click_id, ref.message, facts._replace(target=beacon.page))
        return ACCEPTED
    record = Conversion(tenant=ref.tenant, idempotency_key=conversion_key(ref.message, beacon.id),
                        ts=facts.received_at, value=beacon.value, currency=beacon.currency,
                        click_id=beacon.click_id, click_hit_id=ref.hit_id, message=ref.message,
                        campaign=ref.campaign, variant=ref.variant, recipient=ref.recipient, link=ref.link)
    try:
        kept = edge.forwarder.submit(Record(edge.topics.conversions, ref.message.encode(), record.encode()))
    except Exception:  # the spool's disk failing
        log.exception("site conversion not kept")
        kept = False
    edge.count("conversion", "ok" if kept else "dropped")
    return ACCEPTED if kept else BeaconAnswer(503, "not recorded just now")


def _site_visit(edge: Edge, facts: RequestFacts, beacon: Beacon) -> BeaconAnswer:
    """A page view without a click id: the site's origin only, for the tenant of the posted domain."""
    if edge.tenants.for_host(facts.host) is None:
        edge.record_bad(BEACON, "unknown_host", facts.host[:100], facts)
        return BeaconAnswer(422, "host: no tenant serves this domain")
    origin = origin_of(beacon.page)
    # Keyed by the site: one site's visits stay on one partition, in order.
    edge.record_hit(SITE_VISIT, "", origin, facts._replace(target=origin))
    return ACCEPTED


def _answer(answer: BeaconAnswer) -> web.Response:
    if answer.status == 204:
        return web.Response(status=204, headers=BEACON_HEADERS)
    return web.Response(status=answer.status, text=answer.reason + "\n", headers=BEACON_HEADERS)


async def preflight(request: web.Request) -> web.Response:
    """OPTIONS /s/e: a page posting with fetch and a JSON content type asks first."""
    return web.Response(status=204, headers=PREFLIGHT_HEADERS)


async def read_beacon(request: web.Request) -> bytes | None:
    """The body, at most MAX_BEACON_BYTES + 1 bytes of it (more is refused without reading it all);
    None when the client's upload breaks off."""
    body = b""
    try:
        while len(body) <= MAX_BEACON_BYTES:
            more = await request.content.read(MAX_BEACON_BYTES + 1 - len(body))
            if not more:
                break
            body += more
    except (web.HTTPException, ConnectionError, ValueError):
        return None
    return body


def add_routes(app: web.Application, edge: Edge, facts_of: Callable[[web.BaseRequest], RequestFacts],
               click_id_param: str, days: int) -> None:
    """The site script's routes on the edge app: `facts_of` reads a request as the Edge does."""
    served = SiteScript(click_id_param, days)

    async def script(request: web.Request) -> web.Response:
        """GET /s.js: the site script, cacheable; 304 when the browser has this version."""
        if served.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=served.headers)
        return web.Response(body=served.body, headers=served.headers)

    async def beacon(request: web.Request) -> web.Response:
        """POST /s/e: one beacon of the site script."""
        facts = facts_of(request)
        if request.content_length is not None and request.content_length > MAX_BEACON_BYTES:
            edge.record_bad(BEACON, "too_large", f"{request.content_length} bytes", facts)
            return _answer(BeaconAnswer(413, f"body: over {MAX_BEACON_BYTES} bytes"))
        body = await read_beacon(request)
        if body is None:
            edge.record_bad(BEACON, "unreadable", "the body broke off", facts)
            return _answer(BeaconAnswer(400, "body: unreadable"))
        return _answer(take_beacon(edge, facts, body))

    app.router.add_get("/s.js", script, allow_head=True)
    app.router.add_post("/s/e", beacon)
    app.router.add_route("OPTIONS", "/s/e", preflight)
