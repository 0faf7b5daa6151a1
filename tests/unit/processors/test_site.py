"""The site script's hits in the processors: a visit becomes an attributed, classified event; a page view
without a click id a site_visits row that keeps no address, user agent or page."""

from __future__ import annotations

import base64

from processors.classify_file import build_classifier
from processors.pipeline import EVENT_COLUMNS, HitProcessor
from processors.site import SITE_VISIT_COLUMNS
from schemas.records import RawHit
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import ClickRef, Keyring, mint_click_ref
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, SENT, processor_letters
from tests.unit.processors.test_pipeline import Rec

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")
REF = ClickRef("", "camp-7", "B", "msg-3", "rcpt-5", "click-hit-1", "L2", int(SENT * 1000))
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
            "Safari/537.36")
BEACON_HEADERS = {"accept": "*/*", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "empty"}


def visit(hit_id: str, at: float, page: str = "https://shop.example.com/land", ua: str = CHROME,
          click_id: str = "", offset: int = 7) -> Rec:
    raw = RawHit(hit_id, SENT + at, "visit", "POST", "t.example.com", page, click_id or mint_click_ref(KEYRING, REF),
                 "81.2.69.142", ua, "edge-9", dict(BEACON_HEADERS))
    return Rec(Topics().hits_raw, 1, offset, raw.encode())


def site_visit(hit_id: str, host: str = "t.example.com", offset: int = 9) -> Rec:
    raw = RawHit(hit_id, SENT + 60, "site_visit", "POST", host, "https://shop.example.com/", "", "81.2.69.142",
                 CHROME, "edge-9", dict(BEACON_HEADERS))
    return Rec(Topics().hits_raw, 0, offset, raw.encode())


def rows(out_rows: list[object], columns: tuple[str, ...]) -> list[dict[str, object]]:
    return [dict(zip(columns, r, strict=True)) for r in out_rows]  # type: ignore[call-overload]


def test_a_visit_is_an_event_attributed_to_the_click_with_its_page_and_link() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    out = processor.process([visit("v-1", 700.25)])
    assert processor_letters(out) == []
    (row,) = rows(out.events.rows, EVENT_COLUMNS)
    assert {k: row[k] for k in ("tenant", "hit_id", "kind", "ts", "sent_at", "campaign", "variant", "message_id",
                                "recipient_id", "link_url", "link_id", "method", "host", "ip", "user_agent",
                                "verdict", "source", "sign", "click_hit_id", "src_offset")} == {
        "tenant": "", "hit_id": "v-1", "kind": "visit", "ts": SENT + 700.25, "sent_at": SENT, "campaign": "camp-7",
        "variant": "B", "message_id": "msg-3", "recipient_id": "rcpt-5", "link_url": "https://shop.example.com/land",
        "link_id": "L2", "method": "POST", "host": "t.example.com", "ip": "81.2.69.0", "user_agent": CHROME,
        "verdict": "human", "source": "direct", "sign": 1, "click_hit_id": "click-hit-1", "src_offset": 7}


def test_a_headless_browser_running_the_script_is_a_machine() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    (row,) = rows(processor.process([visit("v-1", 700, ua=HEADLESS)]).events.rows, EVENT_COLUMNS)
    assert (row["kind"], row["verdict"], row["source"], row["reasons"]) == ("visit", "machine", "bot", ["bot_ua"])


def test_a_reload_within_seconds_is_a_duplicate_and_another_page_counts() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    out = processor.process([visit("v-1", 700, offset=1), visit("v-2", 703, offset=2),
                             visit("v-3", 705, page="https://shop.example.com/thanks", offset=3)])
    got = [(r["hit_id"], r["verdict"]) for r in rows(out.events.rows, EVENT_COLUMNS)]
    assert got == [("v-1", "human"), ("v-2", "duplicate"), ("v-3", "human")]


def test_a_visit_repeated_by_a_spool_replay_counts_once() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    out = processor.process([visit("v-1", 700, offset=1), visit("v-1", 700, offset=2)])
    assert [r[1] for r in out.events.rows] == ["v-1"]
    assert processor.repeats_dropped == 1


def test_a_visit_with_a_click_id_not_genuine_is_a_dead_letter() -> None:
    other = Keyring({"k1": b"another-secret-0123456789abc"}, "k1")
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    out = processor.process([visit("v-1", 700, click_id=mint_click_ref(other, REF))])
    assert out.events.rows == []
    assert [(letter["reason"], letter["kind"]) for letter in processor_letters(out)] == [("bad_signature", "visit")]


def test_a_site_visit_keeps_tenant_site_time_and_verdict_only() -> None:
    processor = HitProcessor(KEYRING, build_classifier(geoip_default=True), Topics())
    out = processor.process([site_visit("s-1")])
    assert out.events.rows == []
    (row,) = rows(out.site_visits.rows, SITE_VISIT_COLUMNS)
    assert row == {"tenant": "", "hit_id": "s-1", "ts": SENT + 60, "site": "shop.example.com", "verdict": "human",
                   "source": "direct", "reasons": ["no_machine_signal"], "asn": 0, "as_org": "",
                   "src_topic": Topics().hits_raw, "src_partition": 0, "src_offset": 9}


def test_a_tenant_that_turns_it_on_gets_the_visitors_organisation_never_the_address() -> None:
    secret = base64.urlsafe_b64encode(b"acme-site-secret-0123456789").decode().rstrip("=")
    acme = Tenant("acme", ("t.acme.example",), f"a1:{secret}", "a1", site_visit_org=True)
    processor = HitProcessor(TenantRegistry({"acme": acme}, KEYRING), build_classifier(geoip_default=True), Topics())
    out = processor.process([site_visit("s-1", host="t.acme.example"), site_visit("s-2", offset=10)])
    got = [(r["tenant"], r["asn"], r["as_org"]) for r in rows(out.site_visits.rows, SITE_VISIT_COLUMNS)]
    # 81.2.69.142 is in AS20712 (the shipped open ASN data); the default tenant did not turn it on
    assert got == [("acme", 20712, "Andrews & Arnold Ltd"), ("", 0, "")]
    assert not any("81.2.69" in str(v) for r in out.site_visits.rows for v in r)


def test_the_default_tenants_setting_turns_it_on_for_tenant_default() -> None:
    processor = HitProcessor(KEYRING, build_classifier(geoip_default=True), Topics(), site_visit_org=True)
    (row,) = rows(processor.process([site_visit("s-1")]).site_visits.rows, SITE_VISIT_COLUMNS)
    assert (row["asn"], row["as_org"]) == (20712, "Andrews & Arnold Ltd")


def test_a_site_visit_on_a_domain_no_tenant_serves_is_a_dead_letter() -> None:
    secret = base64.urlsafe_b64encode(b"acme-site-secret-0123456789").decode().rstrip("=")
    acme = Tenant("acme", ("t.acme.example",), f"a1:{secret}", "a1")
    processor = HitProcessor(TenantRegistry({"acme": acme}), build_classifier(), Topics())
    out = processor.process([site_visit("s-1", host="elsewhere.example")])
    assert out.site_visits.rows == []
    assert [letter["reason"] for letter in processor_letters(out)] == ["unknown_host"]
