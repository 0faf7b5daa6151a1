"""Address data shipped with pixeltrack: open country and ASN databases, and the hosting/cloud ASNs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb import InvalidDatabaseError as InvalidDatabaseError  # what readers raise on a damaged file

from processors.networks import CLOUD, NetworkInfo

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / "data"
# MaxMind-format files built by processors/geodata_build.py; docs/data.md says where they come from.
DEFAULT_COUNTRY_DB = DATA / "geo-country.mmdb"  # records {"country_code": "US"}
DEFAULT_ASN_DB = DATA / "geo-asn.mmdb"          # GeoLite2-ASN record shape
HOSTING_ASNS_FILE = DATA / "hosting_asns.json"


def open_reader(path: str | Path, what: str) -> Any:
    """A MaxMind-format reader over `path` (memory-mapped with the C extension when it is there).
    Raises ValueError naming the file when it is missing or not a MaxMind database."""
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"GeoIP {what} database {str(path)!r} cannot be opened: {exc}") from None


def open_default(path: Path, what: str) -> Any:
    """The shipped database's reader, or None (logged once) when the file is missing or damaged:
    a broken install then gives unknown place and ASN, never a failure at every hit."""
    try:
        return open_reader(path, what)
    except ValueError as exc:
        setting = "geoip_asn_db" if what == "asn" else "geoip_city_db"
        log.warning("%s; %s fields stay unknown (set %s to a MaxMind file, or geoip_default=false "
                    "to go without)", exc, what, setting)
        return None


_damaged_logged: list[bool] = [False]


def lookup_failed(exc: Exception) -> None:
    """Logs (once per process) a database whose search tree or data turned out damaged during a lookup;
    such lookups give unknown place and network, never an exception per hit."""
    if not _damaged_logged[0]:
        _damaged_logged[0] = True
        log.error("GeoIP database damaged, lookups give unknown place and network: %s", exc)


def load_hosting_asns(path: str | Path = HOSTING_ASNS_FILE) -> dict[int, NetworkInfo]:
    """ASN → what it is (category cloud), from a hosting-ASN file of the shipped shape.
    Raises ValueError naming the file and the bad entry."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"hosting ASN file {str(path)!r} cannot be read: {exc}") from None
    sources = doc.get("sources") if isinstance(doc, dict) else None
    entries = doc.get("asns") if isinstance(doc, dict) else None
    if not isinstance(sources, dict) or not isinstance(entries, list):
        raise ValueError(f"hosting ASN file {str(path)!r} needs a `sources` object and an `asns` list")
    out: dict[int, NetworkInfo] = {}
    for i, e in enumerate(entries):
        asn = e.get("asn") if isinstance(e, dict) else None
        refs = e.get("sources") if isinstance(e, dict) else None
        if not isinstance(asn, int) or isinstance(asn, bool) or not 0 < asn < 2**32:
            raise ValueError(f"hosting ASN file {str(path)!r}: asns[{i}].asn must be an AS number, got {asn!r}")
        if not isinstance(refs, list) or not refs or any(r not in sources for r in refs):
            raise ValueError(f"hosting ASN file {str(path)!r}: asns[{i}].sources must name keys of `sources`, "
                             f"got {refs!r}")
        out[asn] = NetworkInfo(vendor=str(e.get("operator") or f"AS{asn}"), category=CLOUD,
                               product=str(e.get("network") or ""),
                               source="; ".join(str(sources[r]) for r in refs))
    return out


_HOSTING: dict[int, NetworkInfo] = load_hosting_asns()
# Autonomous systems of hosting and cloud operators (never residential, mobile or VPN/relay egress).
HOSTING_ASNS: frozenset[int] = frozenset(_HOSTING)


def hosting_network(asn: int) -> NetworkInfo | None:
    """A cloud NetworkInfo for a hosting ASN (vendor = operator, source = the lists naming it), else None.
    For a hit whose address no network list names: `net or hosting_network(enrichment.asn)`."""
    return _HOSTING.get(asn)
