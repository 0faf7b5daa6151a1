"""Network lists: shipped data with provenance, most-specific lookup, user extension, internal networks."""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from pathlib import Path

import orjson
import pytest

from processors.networks import (
    CATEGORIES,
    CLOUD,
    CRAWLER,
    INTERNAL,
    LINK_PREVIEW,
    MAIL_SECURITY,
    PRIVACY_RELAY,
    PROVIDER_PROXY,
    NetworkEntry,
    NetworkInfo,
    NetworkLists,
    ip_to_int,
    shipped_entries,
)


@functools.cache
def _shipped() -> NetworkLists:
    """The shipped lists, loaded once for the tests that only look up (~27,000 networks)."""
    return NetworkLists.load()


def test_every_shipped_entry_has_provenance_and_a_known_category() -> None:
    entries = shipped_entries()
    assert len(entries) >= 10
    for e in entries:
        assert e.info.vendor, e
        assert e.info.source, e
        assert e.info.category in CATEGORIES
        assert e.cidrs


@pytest.mark.parametrize(("ip", "vendor", "category"), [
    # Mail-security vendors, providers' proxies, relays, crawlers and clouds, at addresses other than
    # those in the labelled sample.
    ("40.93.250.1", "Microsoft", MAIL_SECURITY),        # 40.92.0.0/15
    ("40.107.3.200", "Microsoft", MAIL_SECURITY),
    ("52.103.0.9", "Microsoft", MAIL_SECURITY),         # 52.100.0.0/14
    ("104.47.127.255", "Microsoft", MAIL_SECURITY),     # last address of 104.47.0.0/17
    ("40.94.200.3", "Microsoft", MAIL_SECURITY),        # Safe Links, inside Azure's 40.64.0.0/10
    ("205.139.110.250", "Mimecast", MAIL_SECURITY),
    ("207.211.30.1", "Mimecast", MAIL_SECURITY),
    ("148.163.159.254", "Proofpoint", MAIL_SECURITY),
    ("67.231.150.1", "Proofpoint", MAIL_SECURITY),
    ("209.222.87.1", "Barracuda", MAIL_SECURITY),
    ("64.235.159.1", "Barracuda", MAIL_SECURITY),
    ("66.249.95.1", "Google", PROVIDER_PROXY),
    ("66.102.15.1", "Google", PROVIDER_PROXY),
    ("2a00:1450:4009:81f::2004", "Google", PROVIDER_PROXY),
    ("74.6.231.20", "Yahoo", PROVIDER_PROXY),
    ("172.224.226.9", "Apple", PRIVACY_RELAY),          # relay egress on Akamai
    ("104.28.28.9", "Apple", PRIVACY_RELAY),            # on Cloudflare
    ("146.75.128.9", "Apple", PRIVACY_RELAY),           # on Fastly
    ("2a02:26f7:b00a:4000::9", "Apple", PRIVACY_RELAY),
    ("172.239.255.1", "Linode (Akamai Connected Cloud)", CLOUD),  # Akamai space outside Apple's list
    ("54.81.0.1", "Amazon Web Services", CLOUD),
    ("35.190.12.9", "Google", CLOUD),
    ("35.190.247.13", "Google", PROVIDER_PROXY),         # the mail netblocks are listed before Google's cloud
    ("20.40.1.1", "Microsoft Azure", CLOUD),
    ("66.249.66.1", "Google", CRAWLER),                  # Googlebot, inside Gmail's 66.249.64.0/19
    ("4.151.71.177", "OpenAI", CRAWLER),                 # GPTBot, inside Azure
    ("157.240.0.1", "Meta", LINK_PREVIEW),
    ("::ffff:148.163.130.5", "Proofpoint", MAIL_SECURITY),  # IPv4-mapped IPv6
])
def test_lookup_finds_the_most_specific_listed_network(ip: str, vendor: str, category: str) -> None:
    info = _shipped().lookup(ip)
    assert info is not None
    assert (info.vendor, info.category) == (vendor, category)


@pytest.mark.parametrize("ip", ["81.2.69.142", "10.0.0.1", "2a02:c7f::1", "148.163.160.0", "not-an-ip", ""])
def test_lookup_of_unlisted_or_invalid_address_is_none(ip: str) -> None:
    assert _shipped().lookup(ip) is None


def test_lookup_agrees_with_ipaddress_on_random_addresses() -> None:
    """The flattened interval table gives what a naive most-specific match over all CIDRs gives."""
    entries = shipped_entries()
    lists = NetworkLists(entries)
    # The reference: every listed network keyed by (version, prefix length, network address); an
    # address's answer is the entry holding its longest matching prefix (the same prefix listed twice:
    # the later entry, as in the table).
    nets = [(ipaddress.ip_network(c), e.info) for e in entries for c in e.cidrs]
    by_prefix = {(n.version, n.prefixlen, int(n.network_address)): info for n, info in nets}

    def naive(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> NetworkInfo | None:
        bits = addr.max_prefixlen
        for length in range(bits, -1, -1):
            key = (addr.version, length, int(addr) >> (bits - length) << (bits - length))
            if key in by_prefix:
                return by_prefix[key]
        return None

    rng = random.Random(3)
    probes = [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(3000)]
    probes += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(300)]
    # and addresses at and around every listed boundary, of both versions
    for n, _ in nets:
        top = 2**n.max_prefixlen
        for v in (int(n.network_address) - 1, int(n.network_address), int(n.broadcast_address),
                  int(n.broadcast_address) + 1):
            if 0 <= v < top:
                probes.append(ipaddress.ip_address(v) if n.version == 4 else ipaddress.IPv6Address(v))
    assert len(probes) > 100_000
    for addr in probes:
        assert lists.lookup(str(addr)) is naive(addr), addr


def test_user_file_extends_and_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "networks.json"
    extra.write_bytes(orjson.dumps({"networks": [
        {"vendor": "Example Gateway", "category": "mail_security", "cidrs": ["198.51.100.0/24"],
         "source": "our gateway vendor's allow-list"},
        {"vendor": "Our VPN", "category": "cloud", "cidrs": ["54.80.0.0/13"], "source": "ops"},
    ]}))
    lists = NetworkLists.load(extra)
    found = lists.lookup("198.51.100.77")
    assert found is not None
    assert (found.vendor, found.category, found.source) == (
        "Example Gateway", MAIL_SECURITY, "our gateway vendor's allow-list")
    overridden = lists.lookup("54.80.1.1")
    assert overridden is not None
    assert overridden.vendor == "Our VPN"
    assert NetworkLists.load().lookup("198.51.100.77") is None


def test_internal_networks_win_over_everything() -> None:
    lists = NetworkLists.load(internal=["10.0.0.0/8", "148.163.140.0/24", "2001:db8::/32"])
    for ip in ("10.20.30.40", "148.163.140.9", "2001:db8::5"):
        info = lists.lookup(ip)
        assert info is not None, ip
        assert info.category == INTERNAL, ip
    still = lists.lookup("148.163.141.9")
    assert still is not None
    assert still.vendor == "Proofpoint"


@pytest.mark.parametrize(("doc", "message"), [
    ({"nets": []}, "'networks' list"),
    ({"networks": [{"vendor": "", "category": "cloud", "cidrs": []}]}, "vendor"),
    ({"networks": [{"vendor": "X", "category": "isp", "cidrs": []}]}, "category must be one of"),
    ({"networks": [{"vendor": "X", "category": ["cloud"], "cidrs": []}]}, "category must be one of"),
    ({"networks": [{"vendor": "X", "category": "cloud", "cidrs": ["300.1.1.0/24"]}]}, "'300.1.1.0/24'"),
    ({"networks": [{"vendor": "X", "category": "cloud", "cidrs": "1.2.3.0/24"}]}, "cidrs must be a list"),
])
def test_bad_user_file_names_the_problem(tmp_path: Path, doc: object, message: str) -> None:
    extra = tmp_path / "bad.json"
    extra.write_bytes(orjson.dumps(doc))
    with pytest.raises(ValueError, match=message) as exc:
        NetworkLists.load(extra)
    assert str(extra) in str(exc.value)


def test_missing_or_non_json_user_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        NetworkLists.load(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        NetworkLists.load(broken)


def test_bad_internal_network_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        NetworkLists.load(internal=["10.0.0.0/33"])


def test_lookup_cache_stays_bounded() -> None:
    lists = NetworkLists(shipped_entries(), cache_size=64)
    for i in range(1000):
        lists.lookup(f"81.2.{i // 256}.{i % 256}")
    assert len(lists._cache) <= 64
    assert lists.lookup("148.163.128.1") is not None


def test_nested_blocks_are_flattened_with_the_inner_block_winning() -> None:
    outer = NetworkInfo("Outer", CLOUD)
    inner = NetworkInfo("Inner", MAIL_SECURITY)
    lists = NetworkLists([NetworkEntry(outer, ("10.0.0.0/8",)), NetworkEntry(inner, ("10.1.0.0/16",))])
    assert lists.lookup("9.255.255.255") is None
    assert lists.lookup("10.0.255.255") is outer
    assert lists.lookup("10.1.0.0") is inner
    assert lists.lookup("10.1.255.255") is inner
    assert lists.lookup("10.2.0.0") is outer
    assert lists.lookup("10.255.255.255") is outer
    assert lists.lookup("11.0.0.0") is None
    assert len(lists) == 3


@pytest.mark.parametrize(("ip", "expected"), [
    ("1.2.3.4", (4, 0x01020304)),
    ("::ffff:1.2.3.4", (4, 0x01020304)),
    ("2001:db8::1", (6, 0x20010DB8000000000000000000000001)),
    ("fe80::1%eth0", (6, 0xFE800000000000000000000000000001)),
    ("1.2.3", None),
    ("", None),
])
def test_ip_to_int(ip: str, expected: tuple[int, int] | None) -> None:
    assert ip_to_int(ip) == expected
