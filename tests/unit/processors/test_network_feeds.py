"""Providers' published feeds: every official format read, bad files named, the shipped snapshot rebuilt."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from processors.feedformats import read_feed
from processors.netfeeds import (
    SNAPSHOT_AGE,
    SNAPSHOT_STALE,
    build_snapshot,
    report_snapshot_age,
    snapshot_status,
)
from processors.networks import PRIVACY_RELAY, NetworkLists, parse_entries, shipped_entries

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "netfeeds"
MANIFEST = ROOT / "deploy" / "networks" / "feeds.toml"
SHIPPED = ROOT / "processors" / "data" / "networks.json"
APPLE = ROOT / "deploy" / "networks" / "feeds" / "published" / "apple-proxy"


def _nets(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


@pytest.mark.parametrize(("name", "fmt", "date", "cidrs"), [
    ("aws-ip-ranges.json", "aws", "2026-08-22",
     ["3.4.12.4/32", "3.5.140.0/22", "3.5.140.0/22", "54.80.0.0/13", "2600:1f14:fff:f800::/53", "2a05:d07a:a000::/40"]),
    ("google-cloud.json", "google", "2026-08-22", ["34.1.208.0/20", "2600:1900:8000::/44", "35.190.0.0/18"]),
    ("goog.json", "google", "2026-08-21", ["8.8.4.0/24", "8.8.8.0/24", "2001:4860::/32"]),
    ("googlebot.json", "google", "2026-08-22", ["2001:4860:4801:10::/64", "66.249.66.0/24", "66.249.64.0/27"]),
    ("ServiceTags_Public_20260818.json", "azure", "",
     ["4.145.74.52/30", "13.66.60.119/32", "2603:1030:c06:6::2c/126", "13.69.0.0/17", "20.50.0.0/18",
      "2603:1020:200::/46"]),
    ("m365-endpoints-worldwide.json", "m365", "",
     ["13.107.6.152/31", "13.107.18.10/31", "40.96.0.0/13", "2603:1006::/40", "40.92.0.0/15", "40.107.0.0/16",
      "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48", "13.107.136.0/22", "2620:1ec:8f8::/46"]),
    ("oracle-public_ip_ranges.json", "oracle", "2026-08-20",
     ["129.146.0.0/21", "134.70.8.0/21", "129.213.8.0/21", "134.70.24.0/21"]),
    ("apple-egress-ip-ranges.csv", "geofeed", "",
     ["172.224.226.0/27", "172.224.226.32/27", "104.28.28.0/26", "146.75.128.0/23", "2a02:26f7:b00a:4000::/64",
      "2a09:bac1:14a0::/44"]),
    ("digitalocean-geofeed.csv", "geofeed", "",
     ["5.101.96.0/21", "45.55.0.0/19", "104.131.0.0/18", "2604:a880:800::/48", "2a03:b0c0:2::/48"]),
    ("mimecast-allow-list.txt", "cidr", "", ["205.139.110.0/24", "205.139.111.0/24", "207.211.30.0/24"]),
])
def test_each_official_format_is_recognised_and_read(name: str, fmt: str, date: str, cidrs: list[str]) -> None:
    feed = read_feed(FIXTURES / name)
    assert (feed.format, feed.date) == (fmt, date)
    assert feed.networks == _nets(*cidrs)
    assert read_feed(FIXTURES / name, fmt).networks == feed.networks  # the format named gives the same


@pytest.mark.parametrize(("name", "services", "cidrs"), [
    ("aws-ip-ranges.json", ["EC2"], ["54.80.0.0/13", "2a05:d07a:a000::/40"]),
    ("google-cloud.json", ["Google Cloud"], ["34.1.208.0/20", "2600:1900:8000::/44", "35.190.0.0/18"]),
    ("ServiceTags_Public_20260818.json", ["ActionGroup"], ["4.145.74.52/30", "13.66.60.119/32",
                                                           "2603:1030:c06:6::2c/126"]),
    ("m365-endpoints-worldwide.json", ["SharePoint"], ["13.107.136.0/22", "2620:1ec:8f8::/46"]),
    ("oracle-public_ip_ranges.json", ["OBJECT_STORAGE"], ["134.70.8.0/21", "134.70.24.0/21"]),
])
def test_services_keep_only_the_named_services(name: str, services: list[str], cidrs: list[str]) -> None:
    assert read_feed(FIXTURES / name, services=services).networks == _nets(*cidrs)


@pytest.mark.parametrize(("text", "where"), [
    ('{"createDate": "2026-08-22-03-13-07", "prefixes": [{"ip_prefix": "3.4.12.4/32"}, {"ip_prefix": "3.5.140.0/33"}]}',
     "prefixes[1].ip_prefix: '3.5.140.0/33' is not"),
    ('{"ipv6_prefixes": [{"ipv6_prefix": "2600:1f14::/53"}, {"ipv6_prefix": 7}]}',
     "ipv6_prefixes[1].ipv6_prefix: expected a CIDR string, got 7"),
    ('{"creationTime": "2026-08-22T01:15:08", "prefixes": [{"service": "Google Cloud"}]}',
     "prefixes[0].ipv6Prefix: expected a CIDR string, got None"),
    ('{"changeNumber": 1, "values": [{"name": "A", "properties": {"addressPrefixes": ["13.69.0.0/17", "13.69.x"]}}]}',
     "values[0].properties.addressPrefixes[1]: '13.69.x'"),
    ('{"changeNumber": 1, "values": [{"name": "A"}]}', "values[0].properties: expected an object, got None"),
    ('[{"id": 1, "serviceArea": "Exchange", "ips": ["40.92.0.0/15", "2603:1006::/400"]}]',
     "[0].ips[1]: '2603:1006::/400'"),
    ('{"regions": [{"region": "r", "cidrs": [{"cidr": "129.146.0.0/21"}, {"cidr": "129.146.0.0/-1"}]}]}',
     "regions[0].cidrs[1].cidr: '129.146.0.0/-1'"),
    ('{"regions": {"region": "r"}}', "'regions' must be a list, got dict"),
    ('{"something": []}', "a JSON feed of no known format (keys ['something'])"),
    ("{not json", "is not JSON"),
    ("172.224.226.0/27,GB,GB-EN,London,\n# comment\n172.224.266.32/27,GB,GB-EN,London,\n",
     "line 3: '172.224.266.32/27'"),
    ("205.139.110.0/24\n205.139.111.0/24 207.211.30.0/24\n",
     "line 2: '205.139.111.0/24 207.211.30.0/24' is not one CIDR"),
    ("205.139.110.0/24\nmimecast.com\n", "line 2: 'mimecast.com' is not"),
])
def test_a_malformed_feed_is_one_error_naming_the_file_and_the_place(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "feed.data"
    f.write_text(text)
    with pytest.raises(ValueError, match=re.escape(where)) as exc:
        read_feed(f)
    assert str(f) in str(exc.value)


def test_unreadable_or_binary_feeds_and_misused_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"absent\.json: cannot be read"):
        read_feed(tmp_path / "absent.json")
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"1.2.3.0/24\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"list\.txt: is not UTF-8 text"):
        read_feed(binary)
    with pytest.raises(ValueError, match="'services' only applies to the JSON feeds"):
        read_feed(FIXTURES / "mimecast-allow-list.txt", services=["EC2"])
    with pytest.raises(ValueError, match="format 'xml' is not one of"):
        read_feed(FIXTURES / "goog.json", "xml")
    with pytest.raises(ValueError, match="a Microsoft 365 endpoints feed is a JSON list"):
        read_feed(FIXTURES / "goog.json", "m365")


def _manifest(tmp_path: Path, body: str) -> Path:
    for f in FIXTURES.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    m = tmp_path / "feeds.toml"
    m.write_text('description = "test lists"\n' + body)
    return m


FEED = '''
[[feed]]
vendor = "{vendor}"
product = "p"
category = "{category}"
files = [{files}]
source = "s"
{extra}
'''


def _feed(vendor: str, category: str, files: str, extra: str = "") -> str:
    return FEED.format(vendor=vendor, category=category, files=files, extra=extra)


def test_build_merges_collapses_and_lets_the_first_listed_feed_win(tmp_path: Path) -> None:
    m = _manifest(tmp_path, "".join([
        _feed("Microsoft", "mail_security", '"m365-endpoints-worldwide.json"',
              'services = ["Exchange"]\ndate = "2026-09-01"'),
        _feed("Googlebot", "crawler", '"googlebot.json"'),
        _feed("Google", "cloud", '"goog.json", "google-cloud.json"'),
        _feed("Azure", "cloud", '"ServiceTags_Public_20260818.json", "m365-endpoints-worldwide.json"',
              'date = "2026-08-18"'),
        _feed("AWS", "cloud", '"aws-ip-ranges.json"'),
    ]))
    doc = orjson.loads(build_snapshot(m))
    assert doc["version"] == 2
    assert doc["date"] == "2026-08-18"  # the oldest data in it
    by_vendor = {e["vendor"]: e for e in doc["networks"]}
    # Dates: the manifest's, else the oldest its files state.
    assert by_vendor["Google"]["date"] == "2026-08-21"
    assert by_vendor["AWS"]["date"] == "2026-08-22"
    assert by_vendor["Microsoft"]["date"] == "2026-09-01"
    # Azure lists all of M365 too: the Exchange networks the mail-security entry holds are shadowed.
    assert len(by_vendor["Microsoft"]["cidrs"]) == 9
    azure = by_vendor["Azure"]
    assert azure["cidrs"] == ["4.145.74.52/30", "13.66.60.119/32", "13.69.0.0/17", "13.107.136.0/22", "20.50.0.0/18",
                              "2603:1020:200::/46", "2603:1030:c06:6::2c/126", "2620:1ec:8f8::/46"]
    assert azure["counts"] == {"ipv4": 5, "ipv6": 3, "published": 17, "shadowed": 9, "not_global": 0}
    # AWS lists 3.5.140.0/22 twice: once in the snapshot.
    assert by_vendor["AWS"]["cidrs"] == ["3.4.12.4/32", "3.5.140.0/22", "54.80.0.0/13", "2600:1f14:fff:f800::/53",
                                         "2a05:d07a:a000::/40"]
    assert by_vendor["AWS"]["counts"]["published"] == 6
    lists = NetworkLists(parse_entries(doc, "t"))
    for ip, vendor in [("66.249.66.7", "Googlebot"), ("2001:4860:4801:10::1", "Googlebot"),
                       ("2001:4860:4801:11::1", "Google"), ("40.107.1.1", "Microsoft"), ("40.96.0.1", "Microsoft"),
                       ("13.107.136.1", "Azure"), ("54.80.0.1", "AWS")]:
        info = lists.lookup(ip)
        assert info is not None, ip
        assert info.vendor == vendor, ip
    totals = doc["counts"]
    assert totals["ipv4"] == sum(e["counts"]["ipv4"] for e in doc["networks"])
    assert totals["ipv4"] + totals["ipv6"] == sum(len(e["cidrs"]) for e in doc["networks"])


def test_build_drops_documentation_and_private_space_from_a_feed(tmp_path: Path) -> None:
    (tmp_path / "geo.csv").write_text("45.32.0.0/16,US,US-NJ,Piscataway,\n192.0.2.0/24,US,,,\n10.0.0.0/8,US,,,\n"
                                      "2001:db8::/32,US,,,\n")
    m = tmp_path / "feeds.toml"
    m.write_text('description = "d"\n' + _feed("Vultr", "cloud", '"geo.csv"', 'date = "2026-08-22"'))
    [entry] = orjson.loads(build_snapshot(m))["networks"]
    assert entry["cidrs"] == ["45.32.0.0/16"]
    assert entry["counts"]["not_global"] == 3


@pytest.mark.parametrize(("body", "message"), [
    (_feed("X", "cloud", '"mimecast-allow-list.txt"'), "feed 'X' (p) needs a 'date'"),
    (_feed("X", "isp", '"goog.json"'), "feed[0].category must be one of"),
    (_feed("X", "cloud", '"absent.txt"'), "feed[0].files has 'absent.txt', which is neither a file nor a folder"),
    (_feed("X", "cloud", '"goog.json"', 'format = "xml"'), "feed[0].format must be one of"),
    (_feed("X", "cloud", '"goog.json"', 'date = "22/08/2026"'), "feed[0].date must be a date"),
    (_feed("X", "cloud", '"goog.json"', 'colour = "red"'), "feed[0] has unknown keys ['colour']"),
    (_feed("", "cloud", '"goog.json"'), "feed[0].vendor must be a non-empty string"),
    ("[[feed\n", "is not TOML"),
])
def test_a_bad_manifest_names_the_key(tmp_path: Path, body: str, message: str) -> None:
    m = _manifest(tmp_path, body)
    with pytest.raises(ValueError, match=re.escape(message)):
        build_snapshot(m)


def test_the_shipped_snapshot_is_what_the_feeds_in_the_repository_build() -> None:
    assert build_snapshot(MANIFEST) == SHIPPED.read_bytes(), (
        "rebuild: pixeltrack networks build deploy/networks/feeds.toml")


def test_every_range_of_apples_relay_list_is_a_privacy_relay() -> None:
    """Apple Mail Privacy Protection fetches through iCloud Private Relay: every published egress range,
    at its first and last address, is the relay in the shipped lists (nothing more specific takes it)."""
    lists = NetworkLists.load()
    ranges = [line.strip() for f in sorted(APPLE.glob("*.txt")) for line in f.read_text().splitlines() if line.strip()]
    assert len(ranges) == 13_745
    for cidr in ranges:
        net = ipaddress.ip_network(cidr)
        for addr in (net.network_address, net.broadcast_address):
            info = lists.lookup(str(addr))
            assert info is not None, cidr
            assert (info.vendor, info.category) == ("Apple", PRIVACY_RELAY), (cidr, info)


def test_no_shipped_entry_cites_a_document_the_project_does_not_hold() -> None:
    text = SHIPPED.read_text() + MANIFEST.read_text()
    root = Path(__file__).resolve().parents[3]
    cited = set(re.findall(r"[\w./-]+\.md\b", text))
    assert all((root / c).exists() for c in cited), [c for c in cited if not (root / c).exists()]
    assert "shared/" not in text
    assert all(e.info.source for e in shipped_entries())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "pixeltrack.cli", "networks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_networks_status_prints_the_date_totals_and_every_source() -> None:
    doc = orjson.loads(SHIPPED.read_bytes())
    out = _cli("status", "--max-age-days", "100000")
    assert out.returncode == 0, out.stderr
    assert f"date of data  {doc['date']} (" in out.stdout
    v4 = sum(1 for e in doc["networks"] for c in e["cidrs"] if ":" not in c)
    v6 = sum(1 for e in doc["networks"] for c in e["cidrs"] if ":" in c)
    assert f"{v4:,} IPv4 + {v6:,} IPv6 in {len(doc['networks'])} entries" in out.stdout
    assert "STALE" not in out.stdout
    rows = [line for line in out.stdout.splitlines() if "│" in line]
    assert len(rows) == len(doc["networks"])
    for row, entry in zip(rows, doc["networks"], strict=True):
        cells = [c.strip() for c in row.split("│")]
        assert cells[0] == entry["vendor"]
        assert cells[2:6] == [entry["category"], entry["date"], f"{entry['counts']['ipv4']:,}",
                              f"{entry['counts']['ipv6']:,}"]
    stale = _cli("status", "--max-age-days", "1")
    assert "STALE" in stale.stdout


def test_networks_build_writes_the_snapshot_and_check_compares(tmp_path: Path) -> None:
    out = tmp_path / "networks.json"
    built = _cli("build", str(MANIFEST), "--out", str(out))
    assert built.returncode == 0, built.stderr
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert _cli("build", "--check").returncode == 0  # default manifest, default (shipped) file
    out.write_bytes(out.read_bytes().replace(b'"Apple"', b'"Pear"'))
    check = _cli("build", str(MANIFEST), "--out", str(out), "--check")
    assert check.returncode == 1
    assert "differs" in check.stdout
    bad = _cli("build", str(tmp_path / "absent.toml"))
    assert bad.returncode == 2
    assert "absent.toml: cannot be read" in bad.stderr
    assert "Traceback" not in bad.stderr


def _day(date: str) -> float:
    return dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()


def test_an_old_snapshot_is_a_gauge_and_one_warning_never_an_error(caplog: pytest.LogCaptureFixture,
                                                                   tmp_path: Path) -> None:
    date = snapshot_status().date
    with caplog.at_level(logging.WARNING, logger="processors.netfeeds"):
        age = report_snapshot_age(90, now=_day(date) + 100 * 86400 + 5)
    assert age == 100 * 86400 + 5
    assert SNAPSHOT_AGE._value.get() == age
    assert SNAPSHOT_STALE._value.get() == 1
    [record] = caplog.records
    assert f"network lists of {date} are 100 days old (networks_max_age_days=90)" in record.getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="processors.netfeeds"):
        assert report_snapshot_age(90, now=_day(date) + 10 * 86400) == 10 * 86400
    assert SNAPSHOT_STALE._value.get() == 0
    assert caplog.records == []

    broken = tmp_path / "networks.json"
    broken.write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="processors.netfeeds"):
        assert report_snapshot_age(90, path=broken) is None
    [record] = caplog.records
    assert "cannot tell the snapshot's age" in record.getMessage()
    assert str(broken) in record.getMessage()


def test_a_processor_reports_the_snapshots_age_when_it_is_built() -> None:
    from pixeltrack.compose.build import build_processor
    from schemas.settings import Settings
    from schemas.tokens import Keyring

    SNAPSHOT_AGE.set(-1)
    SNAPSHOT_STALE.set(-1)
    build_processor(Settings(networks_max_age_days=100_000), Keyring({"k1": b"0123456789abcdef"}, "k1"))
    expected = dt.datetime.now(dt.UTC).timestamp() - _day(snapshot_status().date)
    assert abs(SNAPSHOT_AGE._value.get() - expected) < 60
    assert SNAPSHOT_STALE._value.get() == 0
