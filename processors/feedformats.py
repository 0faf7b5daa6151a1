"""One provider's published address feed read into networks: AWS, Google, Azure, Microsoft 365 and Oracle JSON,
RFC 8805 geofeeds, plain CIDR lists (processors/netfeeds.py builds the shipped snapshot from them)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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


def feed_day(value: object) -> str:
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
            date = feed_day(doc.get("createDate") or doc.get("creationTime") or doc.get("last_updated_timestamp"))
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
