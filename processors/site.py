"""The site script's hits in the processors (schemas/site.py): a visit as a Hit, a site visit as its row.

A `visit` (a page view with a click id) becomes a Hit attributed through the click id and goes through
the Classifier like any other hit, into `events`: its link_url is the page viewed, its link_id the link
of the click, click_hit_id the click's hit id. A `site_visit` (no click id) is judged on its own
(Classifier.judge) and becomes a row of `site_visits`: tenant, site, time and verdict, and the
visitor's organisation where the tenant turns that on; no address, no user agent, no page.
"""

from __future__ import annotations

from schemas.hit import Hit
from schemas.records import RawHit
from schemas.site import VISIT, site_of
from schemas.timefmt import EARLIEST_TS
from schemas.tokens import ClickRef

SITE_VISIT_COLUMNS = ("tenant", "hit_id", "ts", "site", "verdict", "source", "reasons", "asn", "as_org",
                      "src_topic", "src_partition", "src_offset")


def visit_hit(raw: RawHit, ref: ClickRef) -> Hit:
    """The Hit of a page view after the click `ref` names. Its sent_at is the message's (click ids minted
    before they carried it: 2000-01-01, so that no visit looks "fast after send" for want of it)."""
    sent_at = ref.sent_at / 1000.0 if ref.sent_at else EARLIEST_TS
    return Hit(raw.id, raw.received_at, VISIT, raw.method, raw.ip, raw.ua, ref.message, ref.recipient, ref.campaign,
               sent_at, raw.headers, raw.path, False, ref.variant, ref.tenant, ref.link, 0, raw.host, raw.edge,
               click_hit_id=ref.hit_id)


def site_visit_hit(raw: RawHit, tenant: str) -> Hit:
    """A page view without a click id, as a Hit for the static verdict only (of no message)."""
    return Hit(raw.id, raw.received_at, raw.kind, raw.method, raw.ip, raw.ua, "", "", "", EARLIEST_TS, raw.headers,
               raw.path, False, "", tenant, "", 0, raw.host, raw.edge)


def site_visit_site(raw: RawHit) -> str:
    """The site a site visit's path (an origin) names."""
    return site_of(raw.path)
