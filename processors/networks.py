"""Network lists with provenance (mail security, proxies, relays, crawlers, clouds, …) and a fast IP lookup."""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

MAIL_SECURITY = "mail_security"
PROVIDER_PROXY = "provider_proxy"
PRIVACY_RELAY = "privacy_relay"
CLOUD = "cloud"
INTERNAL = "internal"
# Services that fetch URLs on their own, never on a reader's screen: search and AI crawlers, the
# link-preview fetchers of social networks and messengers, uptime monitors' probes.
CRAWLER = "crawler"
LINK_PREVIEW = "link_preview"
MONITOR = "monitor"
# A VPN's exits: people browse through them, so the network says nothing about person or machine;
# only the place is the exit's, not the reader's.
VPN = "vpn"
CATEGORIES: frozenset[str] = frozenset({MAIL_SECURITY, PROVIDER_PROXY, PRIVACY_RELAY, CLOUD, INTERNAL,
                                        CRAWLER, LINK_PREVIEW, MONITOR, VPN})

# Later layers win over earlier ones when the very same prefix is listed twice; a more specific
# prefix always wins over a wider one, whatever its layer.
_LAYER_SHIPPED, _LAYER_USER, _LAYER_INTERNAL = 0, 1, 2

@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """What a listed network is: who runs it, its category, and where the listing comes from."""

    vendor: str
    category: str
    product: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class NetworkEntry:
    """One entry of a network list file: a vendor's CIDRs with one category and a provenance note."""

    info: NetworkInfo
    cidrs: tuple[str, ...]
    # (version, first, last) of each CIDR when already parsed (parse_entries fills it): parsing tens of
    # thousands of networks once, not twice, at every processor start.
    bounds: tuple[tuple[int, int, int], ...] = ()


def ip_to_int(ip: str) -> tuple[int, int] | None:
    """(version, integer) of an IP address string; IPv4-mapped IPv6 counts as IPv4; None if not an address."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
    except (OSError, ValueError):
        # inet_pton rejects zone ids ("fe80::1%eth0"); ipaddress copes with the rest of the odd forms.
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0].strip())
        except ValueError:
            return None
        return addr.version, int(addr)
    if value >> 32 == 0xFFFF:
        return 4, value & 0xFFFFFFFF
    return 6, value


def cidr_bounds(cidr: str) -> tuple[int, int, int] | None:
    """(version, first, last) integer addresses of a network in CIDR notation (host bits ignored, as
    ipaddress.ip_network(strict=False) does); None if it is not one.

    The common "address/length" form is parsed with inet_pton, ~10x faster than ipaddress: the shipped
    snapshot holds tens of thousands of networks and is parsed at every processor start.
    """
    addr, sep, length = cidr.partition("/")
    if sep and length.isdigit() and length.isascii() and len(length) <= 3:
        n = int(length)
        bits = 128 if ":" in addr else 32
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6 if bits == 128 else socket.AF_INET, addr), "big")
        except (OSError, ValueError):
            return None
        if n > bits:
            return None
        host = (1 << (bits - n)) - 1
        first = value & ~host
        return (4 if bits == 32 else 6), first, first | host
    try:  # a bare address, a netmask, a zone id, …: whatever ipaddress accepts
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)


def parse_entries(doc: Any, origin: str) -> list[NetworkEntry]:
    """Entries of a network list document (networks.json shape); ValueError names the bad key and value."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("networks"), list):
        raise ValueError(f"{origin}: expected an object with a 'networks' list")
    entries: list[NetworkEntry] = []
    for i, raw in enumerate(doc["networks"]):
        where = f"{origin}: networks[{i}]"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object")
        vendor, category, cidrs = raw.get("vendor"), raw.get("category"), raw.get("cidrs")
        if not isinstance(vendor, str) or not vendor:
            raise ValueError(f"{where}.vendor must be a non-empty string, got {vendor!r}")
        if not isinstance(category, str) or category not in CATEGORIES:
            raise ValueError(f"{where}.category must be one of {sorted(CATEGORIES)}, got {category!r}")
        if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
            raise ValueError(f"{where}.cidrs must be a list of CIDR strings, got {cidrs!r}")
        bounds: list[tuple[int, int, int]] = []
        for c in cidrs:
            b = cidr_bounds(c)
            if b is None:
                raise ValueError(f"{where}.cidrs has {c!r}, which is not an IPv4 or IPv6 network")
            bounds.append(b)
        info = NetworkInfo(vendor=vendor, category=str(category), product=str(raw.get("product") or ""),
                           source=str(raw.get("source") or ""))
        entries.append(NetworkEntry(info=info, cidrs=tuple(cidrs), bounds=tuple(bounds)))
    return entries


def load_entries(path: str | Path) -> list[NetworkEntry]:
    """Entries of a network list file; ValueError names the file and what is wrong."""
    p = Path(path)
    try:
        doc = orjson.loads(p.read_bytes())
    except OSError as exc:
        raise ValueError(f"network list {str(p)!r} cannot be read: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"network list {str(p)!r} is not JSON: {exc}") from None
    return parse_entries(doc, str(p))


def shipped_entries() -> list[NetworkEntry]:
    """The lists that ship with pixeltrack (processors/data/networks.json)."""
    data = resources.files("processors").joinpath("data/networks.json").read_bytes()
    return parse_entries(orjson.loads(data), "processors/data/networks.json")


class _IntervalTable:
    """Disjoint sorted [start, end] integer intervals of one IP version, each mapped to a NetworkInfo.

    CIDR blocks are either nested or disjoint, so one sweep with a stack flattens them, the most
    specific block winning inside its parent. Lookup is one bisect: O(log n), no allocation.
    """

    __slots__ = ("_ends", "_infos", "_starts")

    def __init__(self, blocks: list[tuple[int, int, int, NetworkInfo]]) -> None:
        # blocks: (start, end, layer, info); parents sort before their children, lower layers first.
        blocks.sort(key=lambda b: (b[0], -(b[1] - b[0]), b[2]))
        out: list[tuple[int, int, NetworkInfo]] = []

        def emit(a: int, b: int, info: NetworkInfo) -> None:
            if a > b:
                return
            if out and out[-1][2] is info and out[-1][1] + 1 == a:
                out[-1] = (out[-1][0], b, info)
            else:
                out.append((a, b, info))

        stack: list[tuple[int, NetworkInfo]] = []  # (end, info) of open blocks, innermost last
        cursor = 0
        for start, end, _layer, info in blocks:
            while stack and stack[-1][0] < start:
                top_end, top_info = stack.pop()
                emit(cursor, top_end, top_info)
                cursor = top_end + 1
            if stack:
                emit(cursor, start - 1, stack[-1][1])
            stack.append((end, info))
            cursor = start
        while stack:
            top_end, top_info = stack.pop()
            emit(cursor, top_end, top_info)
            cursor = top_end + 1
        self._starts = [a for a, _, _ in out]
        self._ends = [b for _, b, _ in out]
        self._infos = [i for _, _, i in out]

    def __len__(self) -> int:
        return len(self._starts)

    def find(self, value: int) -> NetworkInfo | None:
        i = bisect_right(self._starts, value) - 1
        if i >= 0 and value <= self._ends[i]:
            return self._infos[i]
        return None


class NetworkLists:
    """IP → NetworkInfo over the shipped lists, a user's extra file and the sender's internal networks.

    Memory: the entries and interval tables (the shipped ~27,000 networks flatten to ~19,000
    intervals: ~7 MB, built in about half a second at start) plus a lookup cache of at most
    `cache_size` addresses (~200 bytes each: 20 MB at the default 100,000); when full, the older
    half is dropped, so the bound holds under any traffic.
    """

    def __init__(self, entries: Iterable[NetworkEntry], internal: Sequence[str] = (),
                 *, cache_size: int = 100_000) -> None:
        self._layers: list[tuple[int, NetworkEntry]] = [(_LAYER_SHIPPED, e) for e in entries]
        if internal:
            for c in internal:
                try:
                    ipaddress.ip_network(c, strict=False)
                except ValueError:
                    raise ValueError(f"internal network {c!r} is not an IPv4 or IPv6 network "
                                     f"(expected CIDR notation such as 10.0.0.0/8)") from None
            info = NetworkInfo(vendor="internal", category=INTERNAL, product="sender's own networks",
                               source="internal networks setting")
            self._layers.append((_LAYER_INTERNAL, NetworkEntry(info=info, cidrs=tuple(internal))))
        self._cache_size = max(16, cache_size)
        self._cache: dict[str, NetworkInfo | None] = {}
        self._build()

    @classmethod
    def load(cls, extra_file: str | Path | None = None, internal: Sequence[str] = (), *,
             shipped: bool = True, cache_size: int = 100_000) -> NetworkLists:
        """The shipped lists (unless shipped=False), extended by `extra_file` (same JSON shape) and
        `internal` CIDRs. The extra file wins over shipped entries for the very same prefix; internal
        networks win over both; a more specific prefix always wins.
        """
        base = shipped_entries() if shipped else []
        lists = cls(base, internal, cache_size=cache_size)
        if extra_file is not None:
            lists._layers.extend((_LAYER_USER, e) for e in load_entries(extra_file))
            lists._build()
        return lists

    def _build(self) -> None:
        v4: list[tuple[int, int, int, NetworkInfo]] = []
        v6: list[tuple[int, int, int, NetworkInfo]] = []
        for layer, entry in self._layers:
            parsed = entry.bounds if len(entry.bounds) == len(entry.cidrs) else [cidr_bounds(c) for c in entry.cidrs]
            for c, bounds in zip(entry.cidrs, parsed, strict=True):
                if bounds is None:  # parse_entries validates; a NetworkEntry made by hand may not be valid
                    raise ValueError(f"{entry.info.vendor}: {c!r} is not an IPv4 or IPv6 network")
                version, start, end = bounds
                if version == 6 and start >> 32 == 0xFFFF and end >> 32 == 0xFFFF:
                    # ::ffff:a.b.c.d/n is an IPv4 network; lookups map such addresses to IPv4 too.
                    v4.append((start & 0xFFFFFFFF, end & 0xFFFFFFFF, layer, entry.info))
                else:
                    (v4 if version == 4 else v6).append((start, end, layer, entry.info))
        self._v4 = _IntervalTable(v4)
        self._v6 = _IntervalTable(v6)
        self._cache.clear()

    @property
    def entries(self) -> list[NetworkEntry]:
        """Every entry in force, shipped first, then the user's file, then internal networks."""
        return [e for _, e in self._layers]

    def __len__(self) -> int:
        """Number of disjoint intervals in the lookup tables."""
        return len(self._v4) + len(self._v6)

    def lookup(self, ip: str) -> NetworkInfo | None:
        """The most specific listed network holding `ip`, or None (also for text that is not an address)."""
        cache = self._cache
        try:
            return cache[ip]
        except KeyError:
            pass
        parsed = ip_to_int(ip)
        if parsed is None:
            info = None
        elif parsed[0] == 4:
            info = self._v4.find(parsed[1])
        else:
            info = self._v6.find(parsed[1])
        if len(cache) >= self._cache_size:
            # Drop the older half (dicts keep insertion order): amortised O(1), bounded memory.
            for key in list(cache)[: self._cache_size // 2]:
                del cache[key]
        cache[ip] = info
        return info
