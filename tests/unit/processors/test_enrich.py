"""Enrichment: UA → browser, OS, device, mail client; IP → place and network; never a proxy's or scanner's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from processors.enrich import UNKNOWN, Enricher, Enrichment, masked, ua_signature
from processors.networks import NetworkLists

from .builders import APPLE_MAIL, CHROME, GMAIL_PROXY, YAHOO_PROXY, make_hit

LONDON = {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
          "city": {"names": {"en": "London", "de": "London"}}}


def _write(path: Path, database_type: str, rows: list[tuple[list[str], dict[str, object]]]) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type, languages=["en"],
                   description="pixeltrack test database")
    for cidrs, record in rows:
        w.insert_network(IPSet(cidrs), record)
    w.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def geo_dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Small GeoLite2-shaped City, Country and ASN databases written with mmdb_writer."""
    d = tmp_path_factory.mktemp("geoip")
    city = _write(d / "city.mmdb", "GeoLite2-City", [
        (["81.2.69.0/24"], LONDON),
        (["2a02:c7f::/32"], {"country": {"iso_code": "GB"}, "city": {"names": {"en": "Leeds"}}}),
        (["66.249.64.0/19", "172.224.0.0/12", "148.163.128.0/19", "54.80.0.0/13"],
         {"country": {"iso_code": "US"}, "city": {"names": {"en": "Mountain View"}}}),
        (["93.184.0.0/16"], {"registered_country": {"iso_code": "NL"}}),
    ])
    country = _write(d / "country.mmdb", "GeoLite2-Country", [
        (["81.2.69.0/24"], {"country": {"iso_code": "GB"}}),
    ])
    asn = _write(d / "asn.mmdb", "GeoLite2-ASN", [
        (["81.2.69.0/24"], {"autonomous_system_number": 20712, "autonomous_system_organization": "Andrews & Arnold"}),
        (["66.249.64.0/19"], {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"}),
        (["148.163.128.0/19"], {"autonomous_system_number": 22843, "autonomous_system_organization": "PROOFPOINT"}),
        (["172.224.0.0/12"], {"autonomous_system_number": 36183, "autonomous_system_organization": "Akamai"}),
    ])
    return city, country, asn


@pytest.fixture
def geo_enricher(geo_dbs: tuple[Path, Path, Path], networks: NetworkLists) -> Iterator[Enricher]:
    city, _, asn = geo_dbs
    with Enricher(city, asn, networks) as e:
        yield e


def test_the_test_database_is_readable_by_maxminddb(geo_dbs: tuple[Path, Path, Path]) -> None:
    with maxminddb.open_database(str(geo_dbs[0])) as reader:
        assert reader.get("81.2.69.142") == LONDON


def test_direct_hit_gets_device_client_and_place(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(60, ua=APPLE_MAIL, ip="81.2.69.142"))
    assert e == Enrichment(browser="Apple Mail", os="Mac OS X", device="desktop", mail_client="apple_mail",
                           country="GB", city="London", asn=20712, as_org="Andrews & Arnold")


def test_ipv6_address_is_looked_up(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(60, ip="2a02:c7f:7e21:9a00::3"))
    assert (e.country, e.city, e.asn) == ("GB", "Leeds", 0)


def test_registered_country_is_the_fallback(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(60, ip="93.184.12.9"))
    assert (e.country, e.city) == ("NL", "")


def test_country_database_gives_country_without_city(geo_dbs: tuple[Path, Path, Path]) -> None:
    _, country, _ = geo_dbs
    with Enricher(country) as e:
        got = e.enrich(make_hit(60, ip="81.2.69.142"))
    assert (got.country, got.city, got.asn, got.as_org) == ("GB", "", 0, "")


@pytest.mark.parametrize(("ua", "ip", "client"), [
    (GMAIL_PROXY, "66.249.84.216", "gmail_proxy"),
    (YAHOO_PROXY, "74.6.0.20", "yahoo_proxy"),
    ("Mozilla/5.0", "172.225.9.9", "apple_mail"),  # Mail Privacy Protection: client known, reader not
])
def test_proxy_and_privacy_prefetch_never_attribute_device_or_place(
        geo_enricher: Enricher, ua: str, ip: str, client: str) -> None:
    e = geo_enricher.enrich(make_hit(60, ua=ua, ip=ip))
    assert (e.browser, e.os, e.device, e.country, e.city) == (UNKNOWN, UNKNOWN, UNKNOWN, "", "")
    assert e.mail_client == client


def test_proxy_ua_from_an_unlisted_address_is_still_not_the_reader(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(60, ua=GMAIL_PROXY, ip="81.2.69.142"))
    assert (e.device, e.country, e.city, e.mail_client) == (UNKNOWN, "", "", "gmail_proxy")


def test_scanner_network_hides_device_and_place_but_keeps_the_network(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(40, "click", ua=CHROME, ip="148.163.130.5", link="https://x.example"))
    assert e == Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "", "", 22843, "PROOFPOINT")


def test_privacy_relay_hides_place_not_the_readers_own_browser(geo_enricher: Enricher) -> None:
    safari = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/18.1 Mobile/15E148 Safari/604.1")
    e = geo_enricher.enrich(make_hit(600, "click", ua=safari, ip="172.224.226.9", link="https://x.example"))
    assert (e.browser, e.device, e.country, e.city, e.asn) == ("Mobile Safari", "mobile", "", "", 36183)


def test_no_databases_means_unknown_place_and_still_works(enricher: Enricher) -> None:
    e = enricher.enrich(make_hit(60, ip="81.2.69.142"))
    assert (e.country, e.city, e.asn, e.as_org) == ("", "", 0, "")
    assert e.mail_client == "apple_mail"


def test_bad_address_gives_unknown_place(geo_enricher: Enricher) -> None:
    e = geo_enricher.enrich(make_hit(60, ip="not-an-address"))
    assert (e.country, e.asn) == ("", 0)


def test_missing_database_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"absent\.mmdb"):
        Enricher(tmp_path / "absent.mmdb")


@pytest.mark.parametrize(("ua", "browser", "os", "device", "client"), [
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
     "Apple Mail", "Mac OS X", "desktop", "apple_mail"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
     "Mobile Safari UI/WKWebView", "iOS", "mobile", "ios_mail"),
    ("Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
     "Mobile Safari UI/WKWebView", "iOS", "tablet", "ios_mail"),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18129; Pro)",
     "Outlook", "Windows", "desktop", "outlook"),
    ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "Outlook", "Windows", "desktop", "outlook"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.4.0",
     "Thunderbird", "Windows", "desktop", "thunderbird"),
    (CHROME, "Chrome", "Windows", "desktop", "webmail"),
    ("Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
     "Safari/537.36", "Chrome Mobile", "Android", "mobile", "webmail"),
    ("Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
     "Chrome", "Android", "tablet", "webmail"),
    ("Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36", "Chrome Mobile WebView", "Android", "mobile",
     UNKNOWN),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungEmail/6.1 "
     "Chrome/120.0 Mobile Safari/537.36", "Chrome", "Android", "mobile", "samsung_email"),
    ("python-requests/2.32.3", "Python Requests", UNKNOWN, "bot", UNKNOWN),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", UNKNOWN, "bot",
     UNKNOWN),
    ("", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
])
def test_user_agent_fields(enricher: Enricher, ua: str, browser: str, os: str, device: str, client: str) -> None:
    p = enricher.ua_profile(ua)
    assert (p.browser, p.os, p.device, p.mail_client) == (browser, os, device, client)


@pytest.mark.parametrize(("ua", "kind"), [
    (GMAIL_PROXY, "gmail_proxy"),
    ("Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "gmail_proxy"),
    (YAHOO_PROXY, "yahoo_proxy"),
    ("Mozilla/5.0", "bare_mozilla"),
    (" Mozilla/5.0 ", "bare_mozilla"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
     "Safari/537.36 Edge/12.246 Mozilla/5.0", "gmail_prefetch"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/44.0.2403.155 "
     "Safari/537.36 Edge/12.10240 Mozilla/5.0", "gmail_prefetch"),   # another version of the same bot
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
     "Safari/537.36 Edge/12.246 Gmail-content-sampling", "gmail_prefetch"),
    ("curl/8.11.0", "library"), ("Go-http-client/2.0", "library"), ("Wget/1.24.5", "library"),
    ("okhttp/4.12.0", "library"), ("python-urllib3/2.2.1", "library"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "bot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
     "Safari/537.36", "bot"),
    ("", "empty"),
    (CHROME, None), (APPLE_MAIL, None),
    ("Mozilla/5.0 (Linux; Android 10; CUBOT X30 Build/QP1A.190711.020) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.6099.144 Mobile Safari/537.36", None),  # a phone maker ending in "bot"
])
def test_ua_signature(ua: str, kind: str | None) -> None:
    assert ua_signature(ua) == kind


def test_ua_cache_is_bounded(networks: NetworkLists) -> None:
    e = Enricher(networks=networks, ua_cache_size=32)
    for i in range(200):
        e.ua_profile(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/{i}.0.0.0 Safari/537.36")
    assert len(e._ua_cache) <= 32
    e.close()


def test_masked_keeps_only_the_network() -> None:
    e = Enrichment("Chrome", "Windows", "desktop", "webmail", "GB", "London", 20712, "AAISP")
    assert masked(e) == Enrichment(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "", "", 20712, "AAISP")
    assert masked(e, "gmail_proxy").mail_client == "gmail_proxy"
