"""Providers' published address feeds in, the shipped network snapshot (networks.json) out."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Gauge

from processors.networks import CATEGORIES, parse_entries

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 2
SHIPPED_SNAPSHOT = "processors/data/networks.json"
DEFAULT_MANIFEST = "deploy/networks/feeds.toml"

SNAPSHOT_AGE = Gauge("pixeltrack_networks_snapshot_age_seconds",
                     "Age of the shipped network lists' data: seconds since the date of their oldest feed.")
SNAPSHOT_STALE = Gauge("pixeltrack_networks_snapshot_stale",
                       "1 when the shipped network lists are older than networks_max_age_days, else 0.")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The formats a feed file may be in; "auto" tells them apart by their JSON keys or their text's shape.
FORMATS = ("auto", "aws", "google", "azure", "m365", "oracle", "geofeed", "cidr")


@dataclass(frozen=True, slots=True)
class Feed:
    """What one feed file holds: its networks, the date the feed states (or ""), and its format."""

    networks: list[Network]
    date: str
    format: str


def _network(text: object, where: str) -> Network:
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a CIDR string, got {text!r}")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not an IPv4 or IPv6 network") from None


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, got {value!r}")
    return value


def _day(value: object) -> str:
    """The YYYY-MM-DD a feed's own timestamp starts with ("" when it has none)."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            return ""
    return ""


def _wanted(service: object, services: Sequence[str]) -> bool:
    return not services or service in services


def _aws(doc: Mapping[str, Any], where: str, services: Sequence[str]) -> list[Network]:
    # ip-ranges.json: {"createDate", "prefixes": [{"ip_prefix", "service", …}], "ipv6_prefixes": [{"ipv6_prefix", …}]}
    out: list[Network] = []
    for key, field in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        for i, raw in enumerate(_list(doc, key, where)):
            item = _object(raw, f"{where}: {key}[{i}]")
            if _wanted(item.get("service"), services):
                out.append(_network(item.get(field), f"{where}: {key}[{i}].{field}"))
    return out


def _google(doc: Mapping[str, Any], where: str, services: Sequence[str]) -> list[Network]:
    # cloud.json / goog.json, and the crawlers' lists in the same shape (googlebot.json, bingbot.json,
    # gptbot.json, …): {"creationTime", "prefixes": [{"ipv4Prefix"} | {"ipv6Prefix"}, …]}
    out: list[Network] = []
    for i, raw in enumerate(_list(doc, "prefixes", where)):
        item = _object(raw, f"{where}: prefixes[{i}]")
        field = "ipv4Prefix" if "ipv4Prefix" in item else "ipv6Prefix"
        if _wanted(item.get("service"), services):
            out.append(_network(item.get(field), f"{where}: prefixes[{i}].{field}"))
    return out


def _azure(doc: Mapping[str, Any], where: str, services: Sequence[str]) -> list[Network]:
    # ServiceTags_Public_*.json: {"changeNumber", "cloud", "values": [{"name", "properties": {"addressPrefixes"}}]}
    out: list[Network] = []
    for i, raw in enumerate(_list(doc, "values", where)):
        value = _object(raw, f"{where}: values[{i}]")
        if not _wanted(value.get("name"), services):
            continue
        props = _object(value.get("properties"), f"{where}: values[{i}].properties")
        for j, prefix in enumerate(_list(props, "addressPrefixes", f"{where}: values[{i}].properties")):
            out.append(_network(prefix, f"{where}: values[{i}].properties.addressPrefixes[{j}]"))
    return out


def _m365(doc: list[Any], where: str, services: Sequence[str]) -> list[Network]:
    # endpoints/worldwide: [{"id", "serviceArea", "urls", "ips": [CIDR, …], "tcpPorts", …}, …]
    out: list[Network] = []
    for i, raw in enumerate(doc):
        item = _object(raw, f"{where}: [{i}]")
        if _wanted(item.get("serviceArea"), services):
            for j, prefix in enumerate(_list(item, "ips", f"{where}: [{i}]")):
                out.append(_network(prefix, f"{where}: [{i}].ips[{j}]"))
    return out


def _oracle(doc: Mapping[str, Any], where: str, services: Sequence[str]) -> list[Network]:
    # public_ip_ranges.json: {"last_updated_timestamp", "regions": [{"region", "cidrs": [{"cidr", "tags"}]}]}
    out: list[Network] = []
    for i, raw in enumerate(_list(doc, "regions", where)):
        region = _object(raw, f"{where}: regions[{i}]")
        for j, c in enumerate(_list(region, "cidrs", f"{where}: regions[{i}]")):
            item = _object(c, f"{where}: regions[{i}].cidrs[{j}]")
            tags = item.get("tags") or []
            if not services or any(t in services for t in tags):
                out.append(_network(item.get("cidr"), f"{where}: regions[{i}].cidrs[{j}].cidr"))
    return out


def _json_format(doc: object, where: str) -> str:
    """Which official JSON feed `doc` is, from its keys."""
    if isinstance(doc, list):
        if all(isinstance(d, Mapping) and "serviceArea" in d for d in doc):
            return "m365"
    elif isinstance(doc, Mapping):
        if "ipv6_prefixes" in doc or "createDate" in doc:
            return "aws"
        if "prefixes" in doc:
            return "google"
        if "values" in doc and "changeNumber" in doc:
            return "azure"
        if "regions" in doc:
            return "oracle"
        raise ValueError(f"{where}: a JSON feed of no known format (keys {sorted(doc)[:8]}); expected AWS "
                         f"ip-ranges.json, Google cloud/goog.json, Azure Service Tags, Microsoft 365 "
                         f"endpoints or Oracle public_ip_ranges.json")
    raise ValueError(f"{where}: a JSON feed of no known format (a {type(doc).__name__})")


_JSON_READERS: dict[str, Callable[[Any, str, Sequence[str]], list[Network]]] = {
    "aws": _aws, "google": _google, "azure": _azure, "m365": _m365, "oracle": _oracle}


def _text_lines(text: str) -> Iterable[tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def _geofeed(text: str, where: str) -> list[Network]:
    # RFC 8805: ip_prefix,alpha2code,region,city,postal_code; '#' comments. Apple's egress-ip-ranges.csv
    # has the same columns (without the postal code).
    out: list[Network] = []
    for n, line in _text_lines(text):
        out.append(_network(line.split(",", 1)[0], f"{where}: line {n}"))
    return out


def _cidr_list(text: str, where: str) -> list[Network]:
    out: list[Network] = []
    for n, line in _text_lines(text):
        cidr = line.split("#", 1)[0].strip()
        if "," in cidr or " " in cidr:
            raise ValueError(f"{where}: line {n}: {line!r} is not one CIDR (a plain list has one a line)")
        out.append(_network(cidr, f"{where}: line {n}"))
    return out


def read_feed(path: str | Path, fmt: str = "auto", services: Sequence[str] = ()) -> Feed:
    """The networks in one feed file of format `fmt` (one of FORMATS), keeping only `services` (the AWS
    or Google `service`, Azure tag `name`, Microsoft 365 `serviceArea`, Oracle tag) when given.

    ValueError names the file and the line or key that is wrong.
    """
    p = Path(path)
    where = str(p)
    if fmt not in FORMATS:
        raise ValueError(f"{where}: format {fmt!r} is not one of {list(FORMATS)}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read: {exc.strerror}") from None
    head = data.lstrip()[:1]
    if fmt in _JSON_READERS or (fmt == "auto" and head in (b"{", b"[")):
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: is not JSON: {exc}") from None
        kind = _json_format(doc, where) if fmt == "auto" else fmt
        if kind == "m365" and not isinstance(doc, list):
            raise ValueError(f"{where}: a Microsoft 365 endpoints feed is a JSON list")
        if kind != "m365" and not isinstance(doc, Mapping):
            raise ValueError(f"{where}: a {kind} feed is a JSON object")
        date = ""
        if isinstance(doc, Mapping):
            date = _day(doc.get("createDate") or doc.get("creationTime") or doc.get("last_updated_timestamp"))
        return Feed(_JSON_READERS[kind](doc, where, services), date, kind)
    if services:
        raise ValueError(f"{where}: 'services' only applies to the JSON feeds, not to a {fmt} file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: is not UTF-8 text (byte {exc.start})") from None
    if fmt == "auto":
        first = next((line for _, line in _text_lines(text)), "")
        fmt = "geofeed" if "," in first.split("#", 1)[0] else "cidr"
    return Feed(_geofeed(text, where) if fmt == "geofeed" else _cidr_list(text, where), "", fmt)


# --- the manifest and the snapshot ---------------------------------------------------------------

_FEED_KEYS = {"vendor", "product", "category", "source", "date", "format", "files", "services"}


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One manifest entry: which files make one vendor's product's list, its category and provenance."""

    vendor: str
    product: str
    category: str
    source: str
    date: str
    format: str
    files: tuple[Path, ...]
    services: tuple[str, ...]


def _text(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _texts(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}.{key} must be a list of strings, got {value!r}")
    return tuple(value)


def load_manifest(path: str | Path) -> tuple[str, list[FeedSpec]]:
    """(description, feeds) of a build manifest (TOML; see deploy/networks/feeds.toml). File paths are
    relative to the manifest; a folder stands for every file in it. ValueError names the key."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{p}: cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: is not TOML: {exc}") from None
    description = _text(doc, "description", str(p))
    feeds = doc.get("feed")
    if not isinstance(feeds, list) or not feeds:
        raise ValueError(f"{p}: expected [[feed]] tables, one per vendor's list")
    specs: list[FeedSpec] = []
    for i, raw in enumerate(feeds):
        where = f"{p}: feed[{i}]"
        unknown = sorted(set(raw) - _FEED_KEYS)
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; expected some of {sorted(_FEED_KEYS)}")
        category = _text(raw, "category", where)
        if category not in CATEGORIES:
            raise ValueError(f"{where}.category must be one of {sorted(CATEGORIES)}, got {category!r}")
        fmt = _text(raw, "format", where, required=False) or "auto"
        if fmt not in FORMATS:
            raise ValueError(f"{where}.format must be one of {list(FORMATS)}, got {fmt!r}")
        date = _text(raw, "date", where, required=False)
        if date and _day(date) != date:
            raise ValueError(f"{where}.date must be a date such as 2026-08-22, got {date!r}")
        files: list[Path] = []
        for name in _texts(raw, "files", where):
            f = p.parent / name
            if f.is_dir():
                files.extend(sorted(c for c in f.iterdir() if c.is_file() and not c.name.startswith(".")))
            elif f.is_file():
                files.append(f)
            else:
                raise ValueError(f"{where}.files has {name!r}, which is neither a file nor a folder beside {p.name}")
        if not files:
            raise ValueError(f"{where}.files names no file")
        specs.append(FeedSpec(vendor=_text(raw, "vendor", where), product=_text(raw, "product", where),
                              category=category, source=_text(raw, "source", where), date=date, format=fmt,
                              files=tuple(files), services=_texts(raw, "services", where)))
    return description, specs


def _covered(net: Network, earlier: set[tuple[int, int, int]], lengths: Mapping[int, set[int]]) -> bool:
    """Whether an earlier entry holds a network equal to or wider than `net`."""
    base = int(net.network_address)
    bits = net.max_prefixlen
    return any(n <= net.prefixlen and (net.version, n, base >> bits - n) in earlier for n in lengths[net.version])


def build_snapshot(manifest: str | Path) -> bytes:
    """The snapshot document (networks.json) built from a manifest's feeds, as bytes; the same files
    always give the same bytes.

    Each entry's networks are collapsed (duplicates and adjacent blocks merged). Where entries overlap,
    the one listed first in the manifest wins: a later entry's network equal to or inside an earlier
    entry's is dropped (counted as `shadowed`); a wider one stays, and the lookup's most-specific rule
    lets the earlier, narrower network win inside it.
    """
    p = Path(manifest)
    description, specs = load_manifest(p)
    earlier: set[tuple[int, int, int]] = set()  # (version, prefix length, network >> host bits)
    lengths: dict[int, set[int]] = {4: set(), 6: set()}  # prefix lengths in `earlier`, by IP version
    entries: list[dict[str, Any]] = []
    dates: list[str] = []
    totals = {"ipv4": 0, "ipv6": 0, "published": 0, "shadowed": 0, "not_global": 0}
    for spec in specs:
        published: list[Network] = []
        feed_dates: list[str] = []
        for f in spec.files:
            feed = read_feed(f, spec.format, spec.services)
            published.extend(feed.networks)
            if feed.date:
                feed_dates.append(feed.date)
        date = spec.date or min(feed_dates, default="")
        if not date:
            raise ValueError(f"{p}: feed {spec.vendor!r} ({spec.product}) needs a 'date': its files state none")
        dates.append(date)
        v4 = ipaddress.collapse_addresses(n for n in published if isinstance(n, ipaddress.IPv4Network))
        v6 = ipaddress.collapse_addresses(n for n in published if isinstance(n, ipaddress.IPv6Network))
        kept: list[Network] = []
        shadowed = not_global = 0
        collapsed: list[Network] = [*v4, *v6]
        for net in collapsed:
            if not net.is_global:
                # Documentation, private or reserved space in a published feed is the feed's mistake
                # (one geofeed lists 192.0.2.0/24): never let it label a sender's own networks.
                not_global += 1
            elif _covered(net, earlier, lengths):
                shadowed += 1
            else:
                kept.append(net)
        for net in kept:
            earlier.add((net.version, net.prefixlen, int(net.network_address) >> (net.max_prefixlen - net.prefixlen)))
            lengths[net.version].add(net.prefixlen)
        counts = {"ipv4": sum(1 for n in kept if n.version == 4), "ipv6": sum(1 for n in kept if n.version == 6),
                  "published": len(published), "shadowed": shadowed, "not_global": not_global}
        for k, v in counts.items():
            totals[k] += v
        entries.append({"vendor": spec.vendor, "product": spec.product, "category": spec.category,
                        "source": spec.source, "date": date, "counts": counts,
                        "cidrs": [str(n) for n in kept]})
    doc = {"version": SNAPSHOT_VERSION, "description": description, "date": min(dates),
           "built_from": p.name, "counts": totals, "networks": entries}
    out = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    parse_entries(orjson.loads(out), str(p))  # what we ship, the loader reads
    return out


# --- the snapshot's age ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One entry of a snapshot, as `networks status` shows it."""

    vendor: str
    product: str
    category: str
    date: str
    ipv4: int
    ipv6: int
    source: str


@dataclass(frozen=True, slots=True)
class SnapshotStatus:
    """A snapshot's date, totals and sources."""

    date: str
    built_from: str
    ipv4: int
    ipv6: int
    sources: tuple[SourceStatus, ...]

    def age_seconds(self, now: float) -> float:
        """Seconds from the snapshot's date (UTC midnight) to `now`; inf when it states no date."""
        try:
            day = dt.datetime.fromisoformat(self.date).replace(tzinfo=dt.UTC)
        except ValueError:
            return float("inf")
        return now - day.timestamp()


def snapshot_status(path: str | Path | None = None) -> SnapshotStatus:
    """The status of a snapshot file (default: the shipped one). ValueError names a bad file."""
    if path is None:
        where, data = SHIPPED_SNAPSHOT, resources.files("processors").joinpath("data/networks.json").read_bytes()
    else:
        where = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{where}: cannot be read: {exc.strerror}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: is not JSON: {exc}") from None
    entries = parse_entries(doc, where)
    sources: list[SourceStatus] = []
    for raw, entry in zip(doc["networks"], entries, strict=True):
        v4 = sum(1 for c in entry.cidrs if ":" not in c)
        sources.append(SourceStatus(entry.info.vendor, entry.info.product, entry.info.category,
                                    str(raw.get("date") or ""), v4, len(entry.cidrs) - v4, entry.info.source))
    dates = [s.date for s in sources if s.date]
    date = str(doc.get("date") or min(dates, default=""))
    return SnapshotStatus(date=date, built_from=str(doc.get("built_from") or ""),
                          ipv4=sum(s.ipv4 for s in sources), ipv6=sum(s.ipv6 for s in sources),
                          sources=tuple(sources))


def report_snapshot_age(max_age_days: float, *, now: float | None = None,
                        path: str | Path | None = None) -> float | None:
    """Sets the snapshot-age gauges and logs one warning when the snapshot is older than `max_age_days`.

    Called at processor start. Returns the age in seconds (None when it cannot be told); never raises:
    an old or unreadable snapshot is worth a warning, not a processor that will not start.
    """
    try:
        status = snapshot_status(path)
        age = status.age_seconds(time.time() if now is None else now)
    except Exception as exc:
        log.warning("network lists: cannot tell the snapshot's age: %s", exc)
        return None
    stale = age > max_age_days * 86400
    SNAPSHOT_AGE.set(age)
    SNAPSHOT_STALE.set(1 if stale else 0)
    if stale:
        log.warning("network lists of %s are %s days old (networks_max_age_days=%s): providers' ranges "
                    "move; rebuild them from fresh feeds with `pixeltrack networks build`",
                    status.date or "unknown date", "unknown" if age == float("inf") else int(age // 86400),
                    max_age_days)
    return age
