"""Providers' published address feeds in, the shipped network snapshot (networks.json) out.

The manifest of feeds, the snapshot built from it and its age; reading one feed file in its provider's format
is processors/feedformats.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Gauge

from processors.feedformats import FORMATS, Network, feed_day, read_feed
from processors.networks import CATEGORIES, parse_entries

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 2
SHIPPED_SNAPSHOT = "processors/data/networks.json"
DEFAULT_MANIFEST = "deploy/networks/feeds.toml"

SNAPSHOT_AGE = Gauge("pixeltrack_networks_snapshot_age_seconds",
                     "Age of the shipped network lists' data: seconds since the date of their oldest feed.")
SNAPSHOT_STALE = Gauge("pixeltrack_networks_snapshot_stale",
                       "1 when the shipped network lists are older than networks_max_age_days, else 0.")

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
        if date and feed_day(date) != date:
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
