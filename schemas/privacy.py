"""Recipient privacy helpers shared by the edge and the processors: IP truncation, recipient hashes."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from pathlib import Path


def truncate_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48 (the last octets zeroed). Anything else → ""."""
    if ip.count(".") == 3 and ":" not in ip:
        head, _, _ = ip.rpartition(".")
        return f"{head}.0"
    return _truncate_parsed(ip)


@functools.lru_cache(maxsize=16384)
def _truncate_parsed(ip: str) -> str:
    """truncate_ip through the ipaddress module (IPv6 and odd spellings): microseconds a call, so the
    addresses seen lately are remembered (proxies and scanners come back many times)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return truncate_ip(str(addr.ipv4_mapped))
    net = ipaddress.ip_network(f"{addr}/{48 if addr.version == 6 else 24}", strict=False)
    return str(net.network_address)


def recipient_hash(tenant: str, recipient: str) -> str:
    """How a recipient is named where its id must not be kept: SHA-256 of "tenant:recipient", hex."""
    return hashlib.sha256(f"{tenant}:{recipient}".encode()).hexdigest()


def load_do_not_track(path: Path | None) -> frozenset[str]:
    """Recipient hashes (one per line, `#` comments) whose hits are answered and never stored."""
    if path is None or not path.exists():
        return frozenset()
    out = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if len(line) != 64 or any(c not in "0123456789abcdef" for c in line):
            raise ValueError(f"{path}:{n}: not a SHA-256 hex recipient hash (see `pixeltrack dnt-hash`)")
        out.add(line)
    return frozenset(out)
