"""X-Forwarded-For is believed only from trusted proxies."""

from ingest.client_ip import ClientIpResolver


def test_untrusted_peer_header_is_ignored() -> None:
    r = ClientIpResolver([])
    assert r.resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"
    r = ClientIpResolver(["10.0.0.0/8"])
    assert r.resolve("203.0.113.9", "1.2.3.4") == "203.0.113.9"


def test_walks_past_trusted_hops_to_the_client() -> None:
    r = ClientIpResolver(["10.0.0.0/8", "192.0.2.0/24"])
    assert r.resolve("10.1.1.1", "198.51.100.7") == "198.51.100.7"
    # a client-supplied spoof sits left of the real client and is never reached
    assert r.resolve("10.1.1.1", "6.6.6.6, 198.51.100.7, 192.0.2.5") == "198.51.100.7"
    assert r.resolve("10.1.1.1", "2001:db8::1") == "2001:db8::1"


def test_garbage_and_all_trusted_fall_back_to_peer() -> None:
    r = ClientIpResolver(["10.0.0.0/8"])
    assert r.resolve("10.1.1.1", "not-an-ip") == "10.1.1.1"
    assert r.resolve("10.1.1.1", "10.2.2.2, 10.3.3.3") == "10.1.1.1"
    assert r.resolve(None, None) == ""
