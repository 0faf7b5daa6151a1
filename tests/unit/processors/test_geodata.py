"""Shipped address data: open country and ASN databases by default, MaxMind files over them, hosting ASNs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from pixeltrack.compose.build import build_processor
from processors import geodata
from processors.classify_file import build_classifier
from processors.enrich import Enricher
from processors.networks import CLOUD
from processors.pipeline import EVENT_COLUMNS
from schemas.records import RawHit
from schemas.settings import Settings
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics

from .builders import CHROME, HOME_IP, HTML_ACCEPT, LINKS, SENT, make_hit

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")


@pytest.fixture(scope="module")
def shipped() -> Enricher:
    return Enricher(default_geo=True)


@pytest.mark.parametrize(("ip", "country", "asn", "org"), [
    ("8.8.8.8", "US", 15169, "Google LLC"),
    ("2001:4860:4860::8888", "US", 15169, "Google LLC"),
    ("1.1.1.1", "AU", 13335, "Cloudflare, Inc."),
    ("2606:4700:4700::1111", "US", 13335, "Cloudflare, Inc."),
    ("172.224.226.1", "GB", 36183, "Akamai Technologies, Inc."),      # iCloud Private Relay egress
    ("17.253.144.10", "US", 714, "Apple Inc."),
    ("73.162.0.1", "US", 7922, "Comcast Cable Communications, LLC"),  # residential cable
    ("86.150.1.1", "GB", 2856, "British Telecommunications PLC"),
    ("2003:e0::1", "DE", 3320, "Deutsche Telekom AG"),                  # residential IPv6
    ("2a02:c7c:1::1", "GB", 5607, "Sky UK Limited"),
    ("45.77.120.14", "US", 20473, "The Constant Company, LLC"),       # Vultr
])
def test_the_shipped_databases_answer_for_well_known_addresses(
        shipped: Enricher, ip: str, country: str, asn: int, org: str) -> None:
    e = shipped.enrich(make_hit(60, ip=ip))
    assert (e.country, e.city, e.asn, e.as_org) == (country, "", asn, org)


@pytest.mark.parametrize("ip", ["10.1.2.3", "172.16.5.5", "192.168.0.1", "100.64.1.1", "203.0.113.9",
                                "::1", "fd00::1", "fe80::1", "2001:db8::1", "2002:808:808::1", "not-an-address"])
def test_private_and_bad_addresses_have_no_place_in_the_shipped_data(shipped: Enricher, ip: str) -> None:
    e = shipped.enrich(make_hit(60, ip=ip))
    assert (e.country, e.asn, e.as_org) == ("", 0, "")


def test_without_the_default_place_and_network_stay_unknown() -> None:
    e = Enricher(default_geo=False).enrich(make_hit(60, ip="8.8.8.8"))
    assert (e.country, e.city, e.asn, e.as_org) == ("", "", 0, "")


def _maxmind(path: Path, database_type: str, record: dict[str, object]) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type)
    w.insert_network(IPSet(["8.8.8.0/24"]), record)
    w.to_db_file(str(path))
    return path


def test_maxmind_files_take_over_each_slot_on_its_own(tmp_path: Path) -> None:
    city = _maxmind(tmp_path / "city.mmdb", "GeoLite2-City",
                    {"country": {"iso_code": "CA"}, "city": {"names": {"en": "Toronto"}}})
    asn = _maxmind(tmp_path / "asn.mmdb", "GeoLite2-ASN",
                   {"autonomous_system_number": 64512, "autonomous_system_organization": "Test AS"})
    both = Enricher(city, asn, default_geo=True).enrich(make_hit(60, ip="8.8.8.8"))
    assert (both.country, both.city, both.asn, both.as_org) == ("CA", "Toronto", 64512, "Test AS")
    # Only a City file: its place, the shipped ASN.
    city_only = Enricher(city, None, default_geo=True).enrich(make_hit(60, ip="8.8.8.8"))
    assert (city_only.country, city_only.city, city_only.asn) == ("CA", "Toronto", 15169)
    # Only an ASN file: the shipped country, its ASN.
    asn_only = Enricher(None, asn, default_geo=True).enrich(make_hit(60, ip="8.8.8.8"))
    assert (asn_only.country, asn_only.asn, asn_only.as_org) == ("US", 64512, "Test AS")
    # An address the MaxMind file does not cover stays unknown there: no mixing of sources per slot.
    other = Enricher(city, asn, default_geo=True).enrich(make_hit(60, ip="1.1.1.1"))
    assert (other.country, other.asn) == ("", 0)


def test_a_damaged_configured_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mmdb"
    bad.write_bytes(b"not a maxmind database" * 100)
    with pytest.raises(ValueError, match=r"GeoIP asn database '.*broken\.mmdb' cannot be opened"):
        Enricher(None, bad, default_geo=True)


def test_a_damaged_shipped_file_is_logged_once_and_leaves_the_asn_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "geo-asn.mmdb"
    bad.write_bytes(b"\x00" * 4096)
    monkeypatch.setattr(geodata, "DEFAULT_ASN_DB", bad)
    with caplog.at_level(logging.WARNING, logger="processors.geodata"):
        e = Enricher(default_geo=True)
        results = [e.enrich(make_hit(60 + i, ip=f"8.8.8.{i}")) for i in range(1, 50)]
    assert {(r.country, r.asn) for r in results} == {("US", 0)}
    warnings = [r for r in caplog.records if r.name == "processors.geodata"]
    assert len(warnings) == 1
    assert "geo-asn.mmdb" in warnings[0].getMessage()
    assert "geoip_asn_db" in warnings[0].getMessage()


def test_a_file_damaged_past_its_header_gives_unknown_and_one_log_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(geodata, "_damaged_logged", [False])  # logged once per process: this test's turn
    path = _maxmind(tmp_path / "asn.mmdb", "GeoLite2-ASN",
                    {"autonomous_system_number": 64512, "autonomous_system_organization": "Test AS"})
    data = bytearray(path.read_bytes())
    tree_end = data.find(b"\xab\xcd\xefMaxMind.com")  # the metadata marker stays: the file opens
    data[:tree_end] = b"\xff" * tree_end
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="processors.geodata"):
        e = Enricher(None, path, default_geo=True)
        results = [e.enrich(make_hit(60 + i, ip=f"8.8.8.{i}")) for i in range(1, 20)]
    assert {(r.country, r.asn) for r in results} == {("", 0)}
    assert len([r for r in caplog.records if "search tree is corrupt" in r.getMessage()]) <= 1
    assert "search tree is corrupt" in caplog.text


def test_a_missing_shipped_file_is_logged_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(geodata, "DEFAULT_COUNTRY_DB", tmp_path / "absent.mmdb")
    with caplog.at_level(logging.WARNING, logger="processors.geodata"):
        e = Enricher(default_geo=True).enrich(make_hit(60, ip="8.8.8.8"))
    assert (e.country, e.asn) == ("", 15169)
    assert "absent.mmdb" in caplog.text


def test_the_setting_turns_the_default_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).geoip_default is True
    monkeypatch.setenv("PIXELTRACK_GEOIP_DEFAULT", "false")
    assert Settings(_env_file=None).geoip_default is False


@dataclass
class _Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def _direct_click_row(settings: Settings, ip: str) -> dict[str, object]:
    payload = TokenPayload("click", "", "camp-7", "B", "msg-3", "rcpt-5", int(SENT * 1000), 0,
                           "https://shop.example.com/p?x=1", "L2", 0)
    raw = RawHit("h-1", SENT + 600.5, "click", "GET", "t.example.com", "/c/x", KEYRING.mint(payload),
                 ip, CHROME, "edge-9", dict(HTML_ACCEPT))
    out = build_processor(settings, KEYRING).process([_Rec(Topics().hits_raw, 0, 1, raw.encode())])
    assert out.dead_letters.rows == []
    return dict(zip(EVENT_COLUMNS, out.events.rows[0], strict=True))


def test_the_embedded_wiring_fills_country_and_asn_for_a_direct_human_hit() -> None:
    # `pixeltrack serve` and `pixeltrack process` build their processor with build_processor: on a
    # fresh install (no GeoIP settings) a person's click from a Comcast home address gets a place.
    row = _direct_click_row(Settings(_env_file=None), "73.162.0.1")
    assert (row["verdict"], row["source"]) == ("human", "direct")
    assert (row["country"], row["asn"], row["as_org"]) == ("US", 7922, "Comcast Cable Communications, LLC")
    assert row["ip"] == "73.162.0.0"  # stored truncated, enriched before


def test_the_embedded_wiring_without_the_default_leaves_place_unknown() -> None:
    row = _direct_click_row(Settings(_env_file=None, geoip_default=False), "73.162.0.1")
    assert (row["country"], row["asn"], row["as_org"]) == ("", 0, "")


def test_build_classifier_keeps_no_geoip_unless_asked() -> None:
    hit = make_hit(60, ip="8.8.8.8")
    assert build_classifier()._enricher.enrich(hit).asn == 0
    assert build_classifier(geoip_default=True)._enricher.enrich(hit).asn == 15169


# --- hosting ASNs ---------------------------------------------------------------------------------

def test_hosting_asns_name_the_big_clouds_and_hosters() -> None:
    assert {16509, 14618, 8075, 396982, 31898, 45102, 132203, 14061, 63949, 20473, 16276, 24940,
            51167, 12876, 60781} <= geodata.HOSTING_ASNS
    info = geodata.hosting_network(24940)
    assert info is not None
    assert (info.vendor, info.category) == ("Hetzner", CLOUD)
    assert "X4BNet lists_vpn" in info.source
    assert "bad-asn-list" in info.source


def test_no_residential_mobile_or_relay_network_is_a_hosting_asn() -> None:
    # Comcast, Charter, AT&T, Verizon, Verizon Wireless, T-Mobile US, BT, Sky, Virgin Media, DTAG,
    # Vodafone DE, Orange FR, Telefonica ES, Jio, plus Google (Gmail proxy, Fi), Cloudflare (WARP,
    # Private Relay), Akamai and Fastly (Private Relay) and Apple.
    people = {7922, 20115, 7018, 701, 22394, 21928, 2856, 5607, 5089, 3320, 3209, 3215, 3352, 55836,
              15169, 13335, 36183, 20940, 54113, 714}
    assert not people & geodata.HOSTING_ASNS
    doc = json.loads(geodata.HOSTING_ASNS_FILE.read_text())
    assert not {e["asn"] for e in doc["excluded"]} & geodata.HOSTING_ASNS


def test_an_unlisted_cloud_address_is_found_by_its_asn(shipped: Enricher) -> None:
    # 5.189.140.1 (Contabo) is on no shipped network list; its ASN marks it as hosting.
    e = shipped.enrich(make_hit(60, ip="5.189.140.1"))
    info = geodata.hosting_network(e.asn)
    assert info is not None
    assert info.vendor == "Contabo"
    assert geodata.hosting_network(shipped.enrich(make_hit(60, ip=HOME_IP)).asn) is None


@pytest.mark.parametrize(("doc", "match"), [
    ({"sources": {}, "asns": {}}, r"needs a `sources` object and an `asns` list"),
    ({"sources": {"a": "x"}, "asns": [{"asn": "16509", "sources": ["a"]}]}, r"asns\[0\]\.asn .* got '16509'"),
    ({"sources": {"a": "x"}, "asns": [{"asn": 16509, "sources": ["b"]}]}, r"asns\[0\]\.sources .* got \['b'\]"),
])
def test_a_bad_hosting_asn_file_names_the_entry(tmp_path: Path, doc: object, match: str) -> None:
    path = tmp_path / "hosting.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        geodata.load_hosting_asns(path)


def test_the_wired_classifier_takes_an_unlisted_hosting_asn_as_evidence() -> None:
    # As `serve`, `process` and `classify` build it: shipped data, shipped hosting ASNs. A sandbox's one
    # click 10 minutes after delivery from a cloud no list names (Contabo) is a machine's; the same click
    # from a home line (Comcast) is a person's.
    classifier = build_classifier(geoip_default=True, hosting_asns=geodata.HOSTING_ASNS)
    sandbox, person = (classifier.feed(make_hit(600, "click", ip=ip, ua=CHROME, link=LINKS[0], message=m,
                                                headers=dict(HTML_ACCEPT)))[0].verdict
                       for ip, m in (("5.189.140.1", "m-1"), ("73.15.20.9", "m-2")))
    assert sandbox.verdict == "machine"
    assert "net_hosting" in sandbox.reasons
    assert person.verdict == "human"
