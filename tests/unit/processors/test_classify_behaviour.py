"""Behaviour the classifier must get right, one test each, with the public report each case comes from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from processors.behaviour import Classifier
from processors.classify import ClassifierConfig, Verdict
from processors.enrich import UNKNOWN, Enricher
from processors.networks import NetworkLists
from schemas.hit import Hit
from schemas.tokens import FLAG_UNSUBSCRIBE

from .builders import APPLE_MAIL, CHROME, GMAIL_PROXY, HOME_IP, HTML_ACCEPT, LINKS, feed_all, make_hit

OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
IPHONE_MAIL = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Mobile/15E148")
IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/18.1 Mobile/15E148 Safari/604.1")
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
HEY_PROXY = ("hey.com/imageproxy Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/134.0.0.0 Safari/537.36")
FASTMAIL_PROXY = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.117 "
                  "Safari/537.36 FastmailUA/1.0")
STAR = {"accept": "*/*"}
CORPORATE_NAT = "62.252.14.37"   # one address a whole office shares
HOSTING_NET = "203.0.113.0/24"  # stands for a hosting provider no network list names; its AS is in the list
HOSTING_ASN = 64500            # a documentation AS number, standing for a hosting provider's
DAY = 86400.0


def _final(classifier: Classifier, hits: list[Hit]) -> dict[str, Verdict]:
    return {i: d.verdict for i, d in feed_all(classifier, hits).items()}


@pytest.fixture
def hosting_classifier(tmp_path: Path, networks: NetworkLists) -> Iterator[Classifier]:
    """A classifier whose enricher has an ASN database and which knows HOSTING_ASN as a hosting provider's."""
    asn = tmp_path / "asn.mmdb"
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    w.insert_network(IPSet([HOSTING_NET]), {"autonomous_system_number": HOSTING_ASN,
                                            "autonomous_system_organization": "Example Hosting"})
    w.to_db_file(str(asn))
    with Enricher(None, asn, networks) as enricher:
        yield Classifier(ClassifierConfig(), networks, enricher, hosting_asns={HOSTING_ASN})


# 1 -------------------------------------------------------------------------------------------------
def test_many_people_behind_one_corporate_address_are_people(classifier: Classifier) -> None:
    """"Real humans click one, maybe two. Bots click all."
    (https://check.live-direct-marketing.online/blog/bot-clicks-security-scanners-detect). Thirty colleagues
    behind one NAT address read the same campaign within minutes, each clicking one or two links of their
    own message: bursts and scanner evidence are per message, so none of them is a machine."""
    hits: list[Hit] = []
    for i in range(30):
        m = f"m-nat-{i}"
        t0 = 60 + 9 * i
        hits.append(make_hit(t0, ip=CORPORATE_NAT, ua=OUTLOOK_DESKTOP, headers={}, message=m, hit_id=f"{m}-o"))
        hits.append(make_hit(t0 + 25, "click", ip=CORPORATE_NAT, ua=CHROME, link=LINKS[i % 5], message=m,
                             hit_id=f"{m}-c1"))
        if i % 3 == 0:
            hits.append(make_hit(t0 + 70, "click", ip=CORPORATE_NAT, ua=CHROME, link=LINKS[(i + 1) % 5],
                                 message=m, hit_id=f"{m}-c2"))
    hits.sort(key=lambda h: h.ts)  # the office's hits interleave across messages
    final = _final(classifier, hits)
    assert {v.verdict for v in final.values()} == {"human"}
    assert sum(1 for i in final if i.endswith("-o")) == 30
    assert sum(1 for i in final if "-c" in i) == 40


# 2 -------------------------------------------------------------------------------------------------
def test_a_click_through_browser_isolation_after_the_vendors_scan(classifier: Classifier) -> None:
    """Click-time isolation renders a person's click on the vendor's platform "at each click for the lifetime
    of a URL" (https://knowledge.broadcom.com/external/article/170869/email-threat-isolation-for-email-securit.html):
    the delivery-time scan is the machine, the click from the same vendor's network two days later a person's,
    with device and place withheld (they are the vendor's)."""
    scan = [make_hit(20 + 0.2 * k, "click", ip="148.163.150.77", ua=CHROME, link=LINKS[k], hit_id=f"scan{k}")
            for k in range(3)]
    later_open = make_hit(3 * 3600, ip="148.163.150.90", ua=CHROME, headers=STAR, hit_id="open")
    click = make_hit(2 * DAY, "click", ip="148.163.150.90", ua=CHROME, link=LINKS[1], hit_id="click")
    decisions = feed_all(classifier, [*scan, later_open, click])
    assert {decisions[f"scan{k}"].verdict.verdict for k in range(3)} == {"machine"}
    assert decisions["open"].verdict == Verdict("proxy", "isolation", ("via_isolation", "net_mail_security"))
    assert decisions["click"].verdict == Verdict("human", "isolation", ("via_isolation", "net_mail_security"))
    assert (decisions["click"].enrichment.device, decisions["click"].enrichment.country) == (UNKNOWN, "")


# 3 -------------------------------------------------------------------------------------------------
def test_a_sandbox_fetching_one_link_from_an_unlisted_hosting_network(hosting_classifier: Classifier,
                                                                      classifier: Classifier) -> None:
    """"click event with no open event" and "click sourced from a known datacenter IP"
    (https://www.autoemails.com/help/agent/mark-bot-unsubscribe): a sandbox fetches one link 3–40 minutes
    after delivery from a hosting AS no list names, with a browser's UA. A reader on a VPN in the same
    hosting network who opened the message from it first stays a person."""
    sandbox = make_hit(17 * 60, "click", ip="203.0.113.77", ua=CHROME, link=LINKS[2])
    v = hosting_classifier.feed(sandbox)[0].verdict
    assert v == Verdict("machine", "scanner", ("cloud_click_without_open", "net_hosting"))
    # Without the hosting AS list nothing says hosting: the same hit is a person's (the ASN is the evidence).
    assert classifier.feed(sandbox)[0].verdict.verdict == "human"
    vpn = [make_hit(3600, ip="203.0.113.80", ua=CHROME, message="m-vpn", hit_id="o"),
           make_hit(3650, "click", ip="203.0.113.80", ua=CHROME, link=LINKS[0], message="m-vpn", hit_id="c")]
    assert _final(hosting_classifier, vpn) == {"o": Verdict("human", "direct", ("net_hosting",)),
                                               "c": Verdict("human", "direct", ("net_hosting",))}


# 4 -------------------------------------------------------------------------------------------------
def test_a_person_reading_from_a_push_notification(classifier: Classifier) -> None:
    """Phones alert people to new mail, so "more recipients will open the email within minutes of receiving
    it" (https://getintheinbox.com/2013/12/06/best-open-times-ruined-by-mobile/): an open 10 s after delivery
    and a click 30 s later are a person's, both."""
    hits = [make_hit(10, ip="92.40.200.17", ua=IPHONE_MAIL, hit_id="o"),
            make_hit(40, "click", ip="92.40.200.17", ua=IPHONE_SAFARI, link=LINKS[0], hit_id="c")]
    assert _final(classifier, hits) == {"o": Verdict("human", "direct", ("fast_after_send",)),
                                        "c": Verdict("human", "direct", ("fast_after_send",))}


# 5 -------------------------------------------------------------------------------------------------
def test_apple_mpp_refetching_hours_and_days_later(classifier: Classifier) -> None:
    """"Apple is pre-fetching images in an email, even for emails that have not been opened"
    (https://www.bird.com/guides/apple-mail-privacy-protection-s-impact-on-email): its relay fetches again
    hours and days later; each fetch is Apple's, never an open, never a person."""
    hits = [make_hit(at, ip=ip, ua="Mozilla/5.0", headers=STAR, hit_id=f"h{n}")
            for n, (at, ip) in enumerate([(30, "172.226.40.9"), (5 * 3600, "146.75.190.3"),
                                          (5 * 3600 + 40, "172.226.40.12"), (2 * DAY, "104.28.40.1")])]
    assert {(v.verdict, v.source) for v in _final(classifier, hits).values()} == {("machine", "apple_mpp")}


# 6 -------------------------------------------------------------------------------------------------
def test_gmail_proxy_from_unlisted_nodes_refetching_one_pixel(classifier: Classifier,
                                                              networks: NetworkLists) -> None:
    """Gmail's proxy "can be re-fetched as the user scrolls, generating duplicate open events"; trackers
    "apply a 3-minute dedup window on Gmail-proxy traffic" (https://outsolvi.com/glossary/gmail-image-proxy).
    The UA says GoogleImageProxy whatever the address; a re-fetch of the same pixel from another node a
    minute later is the same open, a re-open two hours later another."""
    assert networks.lookup("192.0.2.55") is None
    assert networks.lookup("198.51.100.140") is None
    hits = [make_hit(3600, ip="192.0.2.55", ua=GMAIL_PROXY, headers=STAR, hit_id="a"),
            make_hit(3660, ip="198.51.100.140", ua=GMAIL_PROXY, headers=STAR, hit_id="b"),
            make_hit(3600 + 7200, ip="198.51.100.141", ua=GMAIL_PROXY, headers=STAR, hit_id="c")]
    assert _final(classifier, hits) == {"a": Verdict("proxy", "gmail_proxy", ("ua_gmail_proxy",)),
                                        "b": Verdict("duplicate", "gmail_proxy", ("repeat_within_window",)),
                                        "c": Verdict("proxy", "gmail_proxy", ("ua_gmail_proxy",))}


# 7 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ua", [
    CHROME,
    OUTLOOK_DESKTOP,
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36",
])
def test_mail_clients_asking_for_any_type_right_after_delivery(classifier: Classifier, ua: str) -> None:
    """Fetchers that stand for a reader send `Accept: */*` (HEY's image proxy does,
    https://www.hey.com/image-proxy), and so do mail clients with their own HTTP stacks; "silently
    downgrading a real [reader] ... is worse than the inflated metric it fixes"
    (https://github.com/warmbly/warmbly/pull/412). Fast plus no image/* in Accept, on an address no list
    names, is a person's open; when the UA is a browser's the reasons say it was ambiguous."""
    v = classifier.feed(make_hit(45, ip=HOME_IP, ua=ua, headers=STAR))[0].verdict
    assert (v.verdict, v.source) == ("human", "direct")
    if ua == CHROME:
        assert v.reasons == ("fast_after_send", "accept_not_image", "ambiguous_accept_not_image")


# 8 -------------------------------------------------------------------------------------------------
def test_link_checker_head_then_get_from_another_address(classifier: Classifier) -> None:
    """Link checkers "perform a HEAD request to the URL. If this fails, an actual GET request will be sent"
    (https://github.com/beyondcode/helo-community/issues/34); the GET may leave from another address of
    the checker's pool. Both are machines."""
    hits = [make_hit(4000, "click", method="HEAD", ip="198.51.100.40", ua=CHROME, link=LINKS[3], hit_id="head"),
            make_hit(4000.8, "click", ip="192.0.2.90", ua=CHROME, link=LINKS[3], hit_id="get")]
    assert _final(classifier, hits) == {"head": Verdict("machine", "scanner", ("head_request",)),
                                        "get": Verdict("machine", "scanner", ("head_then_get",))}


# 9 -------------------------------------------------------------------------------------------------
def test_scanner_on_rotating_residential_addresses(classifier: Classifier) -> None:
    """Gateways follow all the links, and their "Traffic comes from different IPs, with different headers
    including User Agent" (https://github.com/mautic/mautic/issues/9798); "≥3 unique links clicked in <2s"
    (https://www.autoemails.com/help/agent/mark-bot-unsubscribe). Every link within 1.5 s, each from
    another /24: machine, all. The reader's own click of that message minutes later stays a person's,
    and two readers of a forwarded message clicking two links within a second are people."""
    ips = ["86.12.40.7", "92.233.8.150", "176.24.77.3", "81.98.140.22", "2.25.160.9"]
    uas = [CHROME, FIREFOX, CHROME, IPHONE_SAFARI, CHROME]
    burst = [make_hit(3 * 3600 + 0.3 * k, "click", ip=ips[k], ua=uas[k], link=LINKS[k], hit_id=f"b{k}")
             for k in range(5)]
    person = make_hit(3 * 3600 + 400, "click", ip=HOME_IP, ua=CHROME, link=LINKS[1], hit_id="person")
    final = _final(classifier, [*burst, person])
    assert {final[f"b{k}"] for k in range(5)} == {Verdict("machine", "scanner", ("message_link_burst",))}
    assert final["person"].verdict == "human"
    forwarded = [make_hit(5000, "click", ip=HOME_IP, ua=CHROME, link=LINKS[0], message="m-fw", hit_id="x"),
                 make_hit(5000.7, "click", ip="92.40.9.9", ua=IPHONE_SAFARI, link=LINKS[2], message="m-fw",
                          hit_id="y")]
    assert {v.verdict for v in _final(classifier, forwarded).values()} == {"human"}


# 10 ------------------------------------------------------------------------------------------------
def test_sandbox_fetching_one_link_with_two_user_agents(classifier: Classifier) -> None:
    """VIPRE's link isolation "simulates a session using the same browser and client type as the requestor"
    (https://vipre.helpjuice.com/en_US/email-cloud-addon-link-isolation/link-isolation-overview); sandboxes
    that try more than one engine fetch one link twice, milliseconds apart, with two UAs. No person's click
    does that: both are machines (where a person's repeat with one UA is a duplicate)."""
    hits = [make_hit(900, "click", ip="198.51.100.60", ua=CHROME, link=LINKS[0], hit_id="a"),
            make_hit(900.03, "click", ip="198.51.100.60", ua=FIREFOX, link=LINKS[0], hit_id="b")]
    final = _final(classifier, hits)
    assert final == {"a": Verdict("machine", "scanner", ("ua_switch_same_link",)),
                     "b": Verdict("machine", "scanner", ("ua_switch_same_link",))}


# 11 ------------------------------------------------------------------------------------------------
def test_scanners_fetching_the_unsubscribe_link(classifier: Classifier) -> None:
    """Scanners "follow the unsubscribe link" (https://github.com/mautic/mautic/issues/9798; also
    https://help.pushwoosh.com/hc/en-us/articles/30493475150493): a GET never unsubscribes (the edge's rule),
    and a GET of the unsubscribe link fast after delivery or inside a burst is a machine's, not a person's
    click. A person opening the unsubscribe page hours later is a person."""
    unsub = "https://shop.example.com/unsubscribe"

    def u(at: float, ip: str, hit_id: str, message: str = "m-1") -> Hit:
        h = make_hit(at, "click", ip=ip, ua=CHROME, link=unsub, hit_id=hit_id, message=message)
        h.link_flags = FLAG_UNSUBSCRIBE
        return h

    fast = u(25, "198.51.100.70", "fast")
    burst = [make_hit(7200, "click", ip="198.51.100.71", ua=CHROME, link=LINKS[0], message="m-2", hit_id="l0"),
             u(7200.4, "198.51.100.71", "burst", message="m-2")]
    person = u(5 * 3600, HOME_IP, "person", message="m-3")
    final = _final(classifier, [fast, *burst, person])
    assert final["fast"] == Verdict("machine", "scanner", ("unsubscribe_fast", "fast_after_send"))
    assert (final["burst"].verdict, final["burst"].reasons[0]) == ("machine", "link_burst")
    assert final["person"].verdict == "human"


# 12 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scan_ip", ["40.94.87.12", "198.51.100.88"])
@pytest.mark.parametrize("order", ["in_order", "rescan_first"])
def test_vendor_rescan_just_after_a_persons_click(classifier: Classifier, scan_ip: str, order: str) -> None:
    """Vendors re-scan "at the time the user clicks on it, even if it happens days or months after"
    (https://vipre.helpjuice.com/en_US/email-cloud-addon-link-isolation/link-isolation-overview); one such
    scan landed 12 s after a person's click, from another network (https://github.com/resend/resend-node/issues/901).
    The person (who opened the message before) stays a person; the re-scan a second later, from Microsoft's
    network or from an address with no trail in the message, is the machine — in either arrival order."""
    reader_open = make_hit(3600, ip=HOME_IP, hit_id="open")
    click = make_hit(3700, "click", ip=HOME_IP, ua=CHROME, link=LINKS[1], hit_id="click")
    rescan = make_hit(3701, "click", ip=scan_ip, ua=CHROME, link=LINKS[1], hit_id="rescan", headers=HTML_ACCEPT)
    hits = [reader_open, click, rescan] if order == "in_order" else [reader_open, rescan, click]
    final = _final(classifier, hits)
    assert final["open"].verdict == final["click"].verdict == "human"
    assert (final["rescan"].verdict, final["rescan"].source, final["rescan"].reasons[0]) == (
        "machine", "scanner", "rescan_after_click")


def test_rescan_twelve_seconds_later_from_another_address(classifier: Classifier) -> None:
    """The resend-node report's case (https://github.com/resend/resend-node/issues/901): +12 s, another network."""
    hits = [make_hit(3600, ip="2a02:c7f:7e21:9a00::3", hit_id="open"),
            make_hit(3700, "click", ip="2a02:c7f:7e21:9a00::3", ua=CHROME, link=LINKS[1], hit_id="click"),
            make_hit(3712, "click", ip="198.51.100.89", ua=CHROME, link=LINKS[1], hit_id="rescan")]
    final = _final(classifier, hits)
    assert (final["click"].verdict, final["rescan"].reasons[0]) == ("human", "rescan_after_click")


# 13 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ua", [HEY_PROXY, FASTMAIL_PROXY])
def test_other_webmails_image_proxies(classifier: Classifier, ua: str) -> None:
    """HEY: "The User-Agent always begins with the identifier hey.com/imageproxy" and the proxy "Does not
    crawl: Never follows links" (https://www.hey.com/image-proxy). Fastmail: "we load and proxy those images
    via our servers on the user's behalf", UA ending "FastmailUA/1.0" (https://fastmail.com/policies/bots).
    An open through them is a proxied open (device and place withheld); a re-fetch minutes later from
    another node is the same open; a click with such a UA is no person's."""
    hits = [make_hit(2000, ip="198.51.100.150", ua=ua, headers=STAR, hit_id="open"),
            make_hit(2090, ip="192.0.2.150", ua=ua, headers=STAR, hit_id="again"),
            make_hit(2100, "click", ip="198.51.100.150", ua=ua, link=LINKS[0], hit_id="click")]
    decisions = feed_all(classifier, hits)
    assert decisions["open"].verdict == Verdict("proxy", "webmail_proxy", ("ua_webmail_proxy",))
    assert (decisions["open"].enrichment.device, decisions["open"].enrichment.country,
            decisions["open"].enrichment.mail_client) == (UNKNOWN, "", "webmail_proxy")
    assert decisions["again"].verdict == Verdict("duplicate", "webmail_proxy", ("repeat_within_window",))
    assert decisions["click"].verdict.verdict == "machine"


def test_apple_mail_ua_is_unaffected_by_the_accept_rule(classifier: Classifier) -> None:
    """The stripped WebKit UA of Apple Mail is a mail app's, not a browser's: no Accept rule applies."""
    assert classifier.feed(make_hit(20, ua=APPLE_MAIL, headers=STAR))[0].verdict == Verdict(
        "human", "direct", ("fast_after_send",))


def test_a_person_on_a_hosting_vpn_clicking_hours_later_without_an_open_stays_a_person(
        hosting_classifier: Classifier) -> None:
    # Images off (no open), a VPN exit on a hosting network, a click three hours after delivery: no sandbox
    # waits that long (they detonate 3–40 minutes after delivery; see the sandbox test above).
    [d] = hosting_classifier.feed(make_hit(3 * 3600.0, "click", ip="203.0.113.77", ua=CHROME, link=LINKS[2],
                                           message="m-late"))
    assert d.verdict.verdict == "human"
    assert "net_hosting" in d.verdict.reasons
