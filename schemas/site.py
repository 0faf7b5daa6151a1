"""The site script's beacons (docs/site.md): what the edge reads of a POST to /s/e, bounded and checked.

The script the edge serves at /s.js runs on the sender's own site. After a click it reads the signed
click id the redirect appended, keeps it in the site's first-party storage, and posts beacons:

- a page view with the click id: a RawHit of kind VISIT on hits.raw (token: the click id, path: the
  page, origin and path only), classified like any other hit and stored in `events`, attributed to the
  click's campaign, variant, message, recipient and link;
- a page view without one: a RawHit of kind SITE_VISIT (token "", path: the site's origin only),
  counted per site in `site_visits`, never per person;
- a conversion (with a click id only): a Conversion on the conversions topic, its idempotency key
  made of the click's message and the conversion's id, so a reload of the thank-you page counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from schemas.records import MAX_PATH
from schemas.sends import Conversion

VISIT = "visit"  # RawHit kind: a page view with a click id (events, attributed)
SITE_VISIT = "site_visit"  # RawHit kind: a page view without a click id (site_visits, per site only)
SITE_KINDS = frozenset({VISIT, SITE_VISIT})
EVENTS = ("view", "conversion")
MAX_BEACON_BYTES = 4096  # a beacon is a few hundred bytes; a click id is at most ~1 KB
MAX_CLICK_ID = 2048
MAX_CONVERSION_ID = 100
CONVERSION_KEY_PREFIX = "site:"


@dataclass(frozen=True, slots=True)
class Beacon:
    """One beacon: `event` view or conversion; `page` the page's origin and path (no query, no fragment:
    they may carry a person's data); a conversion's `value`, `currency` and `id` (the order's)."""

    event: str
    page: str
    click_id: str = ""
    value: float = 0.0
    currency: str = ""
    id: str = ""


def page_of(url: str) -> str:
    """The page a URL names, as stored: scheme, host (and port) and path; user info, query and fragment
    left out. ValueError for anything but an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ValueError("page: not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("page: must be an http(s) URL")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"[:MAX_PATH]


def site_of(page: str) -> str:
    """The site of a stored page: its host (and port), lower case."""
    rest = page.partition("://")[2]
    return rest.split("/", 1)[0].lower()


def origin_of(page: str) -> str:
    """The origin of a stored page: what a site visit without a click id keeps of it."""
    scheme, _, rest = page.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def _text(obj: dict[str, Any], name: str, limit: int) -> str:
    value = obj.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string")
    if len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters")
    return value


def parse_beacon(body: bytes) -> Beacon:
    """The beacon in a POST body (JSON, as text/plain: what navigator.sendBeacon sends a string as).
    ValueError naming the field for anything else."""
    if len(body) > MAX_BEACON_BYTES:
        raise ValueError(f"body: over {MAX_BEACON_BYTES} bytes")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("body: not JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("body: must be a JSON object")
    event = obj.get("event")
    if event not in EVENTS:
        raise ValueError(f"event: must be one of {', '.join(EVENTS)}")
    page = page_of(_text(obj, "page", 4 * MAX_PATH))
    click_id = _text(obj, "click_id", MAX_CLICK_ID)
    if event == "view":
        return Beacon(event, page, click_id)
    if not click_id:
        raise ValueError("click_id: a conversion needs the click id")
    conversion_id = _text(obj, "id", MAX_CONVERSION_ID)
    if not conversion_id:
        raise ValueError("id: a conversion needs an id (the order's), so that a repeat counts once")
    value, currency = Conversion.validate_amount(obj, "beacon")
    return Beacon(event, page, click_id, value, currency, conversion_id)


def conversion_key(message: str, conversion_id: str) -> str:
    """A site conversion's idempotency key: one per message and conversion id (a reload, another tab or
    another click of the same message count once)."""
    return f"{CONVERSION_KEY_PREFIX}{message}:{conversion_id}"
