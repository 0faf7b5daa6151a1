"""The client's address: X-Forwarded-For is believed only when it comes from a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientIpResolver:
    """Walks X-Forwarded-For from the right, past trusted proxies, to the first untrusted address.

    With no trusted proxies the peer address is the answer and the header is ignored, so a client
    cannot choose its own address by sending the header.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in trusted)

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or ""
        if not self._trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",")[-16:]]
        for hop in reversed(hops):
            if not hop:
                continue
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # a garbled hop: fall back to the address we know
        return peer
