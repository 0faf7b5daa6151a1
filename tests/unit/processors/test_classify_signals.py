"""One test per classification signal: static signals, behaviour across a message, duplicates, revisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processors.behaviour import Classifier
from processors.classify import ClassifierConfig, Verdict
from processors.enrich import UNKNOWN, Enricher
from processors.networks import NetworkLists
from schemas.hit import Hit

from .builders import (
    APPLE_MAIL,
    CHROME,
    GMAIL_PROXY,
    HOME_IP,
    LINKS,
    UNLISTED_CLOUD,
    YAHOO_PROXY,
    feed_all,
    make_hit,
)

ROOT = Path(__file__).resolve().parents[3]
GMAIL_PREFETCH_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0")


def only(classifier: Classifier, at: float = 3600.0, kind: str = "open", **kw: Any) -> Verdict:
    """The verdict of a single hit, `at` seconds after send, with no other hits of its message."""
    decisions = classifier.feed(make_hit(at, kind, **kw))
    assert len(decisions) == 1
    assert decisions[0].revision == 0
    assert decisions[0].previous is None
    return decisions[0].verdict


# --- static signals -----------------------------------------------------------------------------

def test_gmail_proxy_is_a_proxied_open_without_device_or_place(classifier: Classifier) -> None:
    [d] = classifier.feed(make_hit(900, ua=GMAIL_PROXY, ip="66.249.84.216", headers={"accept": "*/*"}))
    assert d.verdict == Verdict("proxy", "gmail_proxy", ("ua_gmail_proxy",))
    assert (d.enrichment.device, d.enrichment.country, d.enrichment.mail_client) == (UNKNOWN, "", "gmail_proxy")


def test_yahoo_proxy_is_a_proxied_open(classifier: Classifier) -> None:
    assert only(classifier, ua=YAHOO_PROXY, ip="98.137.27.103") == Verdict("proxy", "yahoo_proxy",
                                                                           ("ua_yahoo_proxy",))


def test_image_proxy_ua_on_a_click_is_not_a_person(classifier: Classifier) -> None:
    v = only(classifier, kind="click", ua=GMAIL_PROXY, ip="66.249.84.216", link=LINKS[0])
    assert (v.verdict, v.reasons) == ("machine", ("ua_gmail_proxy", "click_by_image_proxy"))


def test_apple_mpp_from_the_relay(classifier: Classifier) -> None:
    v = only(classifier, at=40, ua="Mozilla/5.0", ip="172.224.226.9", headers={"accept": "*/*"})
    assert v == Verdict("machine", "apple_mpp", ("ua_bare_mozilla", "net_privacy_relay"))


def test_apple_mpp_from_a_relay_address_no_list_has(classifier: Classifier) -> None:
    assert only(classifier, ua="Mozilla/5.0", ip="203.0.113.9") == Verdict("machine", "apple_mpp",
                                                                           ("ua_bare_mozilla",))


def test_bare_mozilla_click_is_a_bot(classifier: Classifier) -> None:
    v = only(classifier, kind="click", ua="Mozilla/5.0", link=LINKS[0])
    assert (v.verdict, v.source) == ("machine", "bot")


def test_stripped_webkit_ua_alone_is_not_mpp(classifier: Classifier) -> None:
    # Real Apple Mail and Outlook for Mac send this UA too (docs/signals.md).
    assert only(classifier, ua=APPLE_MAIL).verdict == "human"


def test_gmail_prefetch_ua(classifier: Classifier) -> None:
    v = only(classifier, at=6, ua=GMAIL_PREFETCH_UA, ip="66.249.91.7", headers={})
    assert v == Verdict("machine", "gmail_prefetch", ("ua_gmail_prefetch",))


def test_google_address_with_a_browser_ua_right_after_send_is_googles_prefetch(classifier: Classifier) -> None:
    v = only(classifier, at=5, ua=CHROME, ip="66.249.90.3", headers={})
    assert v == Verdict("machine", "gmail_prefetch", ("fast_after_send", "net_provider"))


@pytest.mark.parametrize(("ua", "reason"), [
    ("python-requests/2.32.3", "lib_ua"), ("curl/8.11.0", "lib_ua"), ("Go-http-client/2.0", "lib_ua"),
    ("okhttp/4.12.0", "lib_ua"), ("", "empty_ua"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot_ua"),
])
def test_tools_and_bots(classifier: Classifier, ua: str, reason: str) -> None:
    assert only(classifier, ua=ua, headers={}) == Verdict("machine", "bot", (reason,))


def test_head_request_is_a_checker(classifier: Classifier) -> None:
    v = only(classifier, kind="click", method="HEAD", ua=CHROME, link=LINKS[0])
    assert v == Verdict("machine", "scanner", ("head_request",))


@pytest.mark.parametrize("header", [{"sec-purpose": "prefetch;prerender"}, {"purpose": "prefetch"}])
def test_prefetch_header(classifier: Classifier, header: dict[str, str]) -> None:
    v = only(classifier, kind="click", ua=CHROME, link=LINKS[0], headers={"accept": "text/html", **header})
    assert v == Verdict("machine", "prefetch", ("prefetch_header",))


def test_mail_security_network_at_delivery_is_its_scan(classifier: Classifier) -> None:
    v = only(classifier, at=200, kind="click", ua=CHROME, ip="40.107.90.3", link=LINKS[1])
    assert v == Verdict("machine", "scanner", ("net_mail_security",))


def test_mail_security_network_hours_after_send_is_a_person_through_isolation(classifier: Classifier) -> None:
    # Alone, hours later: a click rendered by the vendor's isolation browser (test_classify_behaviour.py).
    v = only(classifier, at=7200, kind="click", ua=CHROME, ip="40.107.90.3", link=LINKS[1])
    assert v == Verdict("human", "isolation", ("via_isolation", "net_mail_security"))


def test_internal_network_is_not_a_recipients_open(make_classifier: Callable[..., Classifier]) -> None:
    lists = NetworkLists.load(internal=["192.0.2.0/24"])
    c = Classifier(ClassifierConfig(), lists, Enricher(networks=lists))
    assert only(c, ip="192.0.2.10") == Verdict("machine", "internal", ("net_internal",))
    assert only(make_classifier(), ip="192.0.2.10").verdict == "human"


def test_person_reading_at_once_stays_human(classifier: Classifier) -> None:
    open_ = classifier.feed(make_hit(25, ip=HOME_IP))[0].verdict
    click = classifier.feed(make_hit(30, "click", ip=HOME_IP, ua=CHROME, link=LINKS[0]))[0].verdict
    assert open_ == click == Verdict("human", "direct", ("fast_after_send",))


def test_cloud_address_alone_is_not_a_machine(classifier: Classifier) -> None:
    # A reader on a cloud VPN: the open, and a click after it from the same address.
    assert only(classifier, at=5000, ua=CHROME, ip="54.80.3.3") == Verdict("human", "direct", ("net_cloud",))
    v = classifier.feed(make_hit(5030, "click", ua=CHROME, ip="54.80.3.3", link=LINKS[0]))[0].verdict
    assert v == Verdict("human", "direct", ("net_cloud",))


def test_cloud_address_right_after_send_is_a_scanner(classifier: Classifier) -> None:
    v = only(classifier, at=20, kind="click", ua=CHROME, ip="54.80.3.3", link=LINKS[0])
    assert v == Verdict("machine", "scanner", ("fast_after_send", "net_cloud"))


def test_browser_ua_asking_for_no_image_right_after_send(classifier: Classifier) -> None:
    # Ambiguous alone (some mail clients send */*): counted, and said so; a cloud network would decide it.
    v = only(classifier, at=9, ua=CHROME, ip=UNLISTED_CLOUD, headers={"accept": "*/*"})
    assert v == Verdict("human", "direct", ("fast_after_send", "accept_not_image", "ambiguous_accept_not_image"))
    v = only(classifier, at=9, ua=CHROME, ip="54.80.3.3", headers={"accept": "*/*"}, message="m-3")
    assert v == Verdict("machine", "scanner", ("fast_after_send", "net_cloud", "accept_not_image"))
    # Without an Accept header there is no such evidence.
    assert only(classifier, at=9, ua=CHROME, ip=HOME_IP, headers={}, message="m-2").verdict == "human"


def test_honeypot_link_and_the_same_clients_other_hits(classifier: Classifier) -> None:
    pixel = make_hit(8, ip="198.51.100.20", ua=CHROME)
    trap = make_hit(45, "click", ip="198.51.100.21", ua=CHROME, link="https://x.example/__hp", honeypot=True)
    person = make_hit(46, ip=HOME_IP)
    assert classifier.feed(pixel)[0].verdict.verdict == "human"  # provisional
    decisions = classifier.feed(trap)
    assert decisions[0].verdict == Verdict("machine", "scanner", ("honeypot",))
    assert [(d.hit.id, d.verdict.reasons[0], d.revision, d.previous) for d in decisions[1:]] == [
        (pixel.id, "pixel_then_burst", 1, Verdict("human", "direct", ("fast_after_send",)))]
    assert classifier.feed(person)[0].verdict.verdict == "human"


# --- behaviour across a message ----------------------------------------------------------------

def scanner_visit(ip: str, pixel_at: float, burst_at: float, links: tuple[str, ...] = LINKS,
                  gap: float = 0.2, message: str = "m-1") -> list[Hit]:
    hits = [make_hit(pixel_at, ip=ip, ua=CHROME, message=message, headers={"accept": "image/webp,*/*"})]
    hits += [make_hit(burst_at + gap * i, "click", ip=ip, ua=CHROME, link=link, message=message)
             for i, link in enumerate(links)]
    return hits


def test_link_burst_from_an_unlisted_network_revises_the_first_click(classifier: Classifier) -> None:
    first = make_hit(300, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[0])
    second = make_hit(300.3, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[1])
    [d1] = classifier.feed(first)
    assert d1.verdict.verdict == "human"  # provisional: nothing shows yet
    d2, revision = classifier.feed(second)
    assert d2.hit is second
    assert d2.verdict == Verdict("machine", "scanner", ("link_burst",))
    assert revision.hit is first
    assert (revision.verdict, revision.revision, revision.previous) == (
        Verdict("machine", "scanner", ("link_burst",)), 1, d1.verdict)
    assert revision.enrichment.device == UNKNOWN
    assert d1.enrichment.device == "desktop"


def test_slower_burst_of_three_links(classifier: Classifier) -> None:
    hits = [make_hit(400 + 3 * i, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[i]) for i in range(3)]
    final = feed_all(classifier, hits)
    assert {d.verdict.verdict for d in final.values()} == {"machine"}


def test_person_clicking_two_links_a_little_apart_stays_human(classifier: Classifier) -> None:
    hits = [make_hit(900, "click", ua=CHROME, link=LINKS[0]), make_hit(906, "click", ua=CHROME, link=LINKS[1])]
    final = feed_all(classifier, hits)
    assert {d.verdict.verdict for d in final.values()} == {"human"}


def test_pixel_then_burst_on_a_network_no_list_names(classifier: Classifier) -> None:
    hits = scanner_visit("203.0.113.200", pixel_at=9, burst_at=41)
    final = feed_all(classifier, hits)
    assert final[hits[0].id].verdict.reasons[0] == "pixel_then_burst"
    assert final[hits[0].id].revision == 1
    assert all(final[h.id].verdict.verdict == "machine" for h in hits)


def test_burst_spread_over_neighbouring_addresses(classifier: Classifier) -> None:
    hits = [make_hit(50 + 0.3 * i, "click", ip=f"203.0.113.{10 + i}", ua=CHROME, link=LINKS[i]) for i in range(4)]
    final = feed_all(classifier, hits)
    assert {d.verdict.verdict for d in final.values()} == {"machine"}


def test_scanner_pixel_after_its_burst(classifier: Classifier) -> None:
    hits = scanner_visit("203.0.113.200", pixel_at=9, burst_at=41)
    late_pixel = make_hit(44, ip="203.0.113.200", ua=CHROME)
    final = feed_all(classifier, [*hits[1:], late_pixel])
    assert final[late_pixel.id].verdict.reasons == ("scanner_client", "fast_after_send")


def test_scanner_burst_does_not_touch_the_persons_own_hits(classifier: Classifier) -> None:
    person_open = make_hit(30, ip=HOME_IP)
    person_click = make_hit(36, "click", ip=HOME_IP, ua=CHROME, link=LINKS[0])
    hits = [person_open, *scanner_visit("203.0.113.200", pixel_at=31, burst_at=40), person_click]
    hits.sort(key=lambda h: h.ts)
    final = feed_all(classifier, hits)
    assert final[person_open.id].verdict.verdict == "human"
    assert final[person_click.id].verdict.verdict == "human"


def test_safe_links_time_of_click_check_then_the_persons_click(classifier: Classifier) -> None:
    check = make_hit(5000, "click", ip="40.94.87.12", ua=CHROME, link=LINKS[2])
    person = make_hit(5000.35, "click", ip=HOME_IP, ua=CHROME, link=LINKS[2])
    final = feed_all(classifier, [check, person])
    assert final[check.id].verdict == Verdict("machine", "scanner", ("time_of_click_check",))
    assert final[person.id].verdict.verdict == "human"


def test_time_of_click_check_from_an_unlisted_address(classifier: Classifier) -> None:
    check = make_hit(7300, "click", ip="198.51.100.99", ua=CHROME, link=LINKS[1])
    person = make_hit(7300.5, "click", ip="2a02:c7f:7e21:9a00::3", ua=CHROME, link=LINKS[1])
    [d1] = classifier.feed(check)
    assert d1.verdict.verdict == "human"
    d2, revision = classifier.feed(person)
    assert d2.verdict.verdict == "human"
    # Neither address is a listed network nor had shown the message before: the earlier is taken as the
    # check, and the reasons say that this was a guess.
    assert (revision.hit, revision.verdict.reasons) == (check, ("time_of_click_check", "ambiguous_click_order"))


def test_time_of_click_check_arriving_after_the_click(classifier: Classifier) -> None:
    check = make_hit(7300, "click", ip="198.51.100.99", ua=CHROME, link=LINKS[1])
    person = make_hit(7300.5, "click", ip=HOME_IP, ua=CHROME, link=LINKS[1])
    final = feed_all(classifier, [person, check])
    assert final[check.id].verdict.reasons == ("time_of_click_check", "ambiguous_click_order")
    assert final[person.id].verdict.verdict == "human"


# --- duplicates ---------------------------------------------------------------------------------

def test_repeat_within_the_window_is_a_duplicate_with_the_originals_source(classifier: Classifier) -> None:
    a = make_hit(2500, ua=GMAIL_PROXY, ip="66.102.8.19", headers={"accept": "*/*"}, hit_id="a")
    b = make_hit(2500.6, ua=GMAIL_PROXY, ip="66.102.8.19", headers={"accept": "*/*"}, hit_id="b")
    final = feed_all(classifier, [a, b])
    assert final["a"].verdict.verdict == "proxy"
    assert final["b"].verdict == Verdict("duplicate", "gmail_proxy", ("repeat_within_window",))
    assert final["b"].enrichment.country == ""


def test_reopen_hours_later_is_not_a_duplicate(classifier: Classifier) -> None:
    hits = [make_hit(3600, hit_id="a"), make_hit(3601.2, hit_id="b"), make_hit(14400, hit_id="c")]
    final = feed_all(classifier, hits)
    assert [final[i].verdict.verdict for i in "abc"] == ["human", "duplicate", "human"]


def test_same_pixel_from_another_client_is_not_a_duplicate(classifier: Classifier) -> None:
    hits = [make_hit(3600, hit_id="a"), make_hit(3600.5, ua=CHROME, ip="92.40.1.1", hit_id="b")]
    assert [d.verdict.verdict for d in feed_all(classifier, hits).values()] == ["human", "human"]


def test_machine_repeats_are_machines_not_duplicates(classifier: Classifier) -> None:
    hits = [make_hit(30, ua="Mozilla/5.0", ip="104.28.40.1", hit_id="a"),
            make_hit(30.4, ua="Mozilla/5.0", ip="104.28.40.1", hit_id="b")]
    final = feed_all(classifier, hits)
    assert [final[i].verdict.source for i in "ab"] == ["apple_mpp", "apple_mpp"]
    assert {final[i].verdict.verdict for i in "ab"} == {"machine"}


def test_duplicate_follows_its_original_when_the_original_is_revised(classifier: Classifier) -> None:
    ip = UNLISTED_CLOUD
    first = make_hit(300, "click", ip=ip, ua=CHROME, link=LINKS[0], hit_id="first")
    retry = make_hit(300.2, "click", ip=ip, ua=CHROME, link=LINKS[0], hit_id="retry")
    other = make_hit(300.5, "click", ip=ip, ua=CHROME, link=LINKS[1], hit_id="other")
    assert classifier.feed(first)[0].verdict.verdict == "human"
    assert classifier.feed(retry)[0].verdict.verdict == "duplicate"
    decisions = classifier.feed(other)
    assert [(d.hit.id, d.verdict.verdict) for d in decisions] == [
        ("other", "machine"), ("first", "machine"), ("retry", "machine")]
    assert decisions[2].previous == Verdict("duplicate", "direct", ("repeat_within_window",))


def test_repeat_arriving_before_its_original_swaps_roles(classifier: Classifier) -> None:
    early = make_hit(3600.0, hit_id="early")
    late = make_hit(3600.4, hit_id="late")
    final = feed_all(classifier, [late, early])
    assert (final["early"].verdict.verdict, final["late"].verdict.verdict) == ("human", "duplicate")


# --- settle window and determinism ----------------------------------------------------------------

def test_revisions_only_within_the_settle_window(make_classifier: Callable[..., Classifier]) -> None:
    c = make_classifier(settle_window=1.0)
    first = make_hit(300, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[0])
    second = make_hit(301.5, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[1])
    c.feed(first)
    assert [d.hit for d in c.feed(second)] == [second]  # the first click was already final


def replay_decisions(classifier: Classifier | None = None) -> list[list[Any]]:
    """[hit id, verdict, source, reasons, revision] of every decision over a fixed mix of hits."""
    if classifier is None:
        networks = NetworkLists.load()
        classifier = Classifier(ClassifierConfig(), networks, Enricher(networks=networks))
    hits = [*scanner_visit("203.0.113.200", 9, 41), make_hit(60, ip=HOME_IP),
            make_hit(61, ip=HOME_IP), make_hit(7000, "click", ua=CHROME, link=LINKS[0])]
    return [[d.hit.id, d.verdict.verdict, d.verdict.source, list(d.verdict.reasons), d.revision]
            for h in hits for d in classifier.feed(h)]


def test_replay_gives_identical_decisions(make_classifier: Callable[..., Classifier]) -> None:
    here = replay_decisions(make_classifier())
    assert {d[1] for d in here} >= {"machine", "human", "duplicate"}  # decisions worth comparing
    assert any(d[4] > 0 for d in here)  # revisions too
    # Another process with another hash seed: nothing may depend on the order of a set of strings.
    script = ("import json\nfrom tests.unit.processors.test_classify_signals import replay_decisions\n"
              "print(json.dumps(replay_decisions()))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}, cwd=ROOT).stdout
    assert json.loads(out) == here


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="dedupe_window"):
        ClassifierConfig(dedupe_window=0)
    with pytest.raises(ValueError, match="burst_min_links"):
        ClassifierConfig(burst_min_links=1)


# --- networks that are machines by themselves (the shipped snapshot, deploy/networks/feeds) -------------


@pytest.mark.parametrize(("ip", "reason"), [
    ("66.249.66.10", "net_crawler"),      # Googlebot's published googlebot.json ranges
    ("23.22.2.46", "net_monitor"),        # a Pingdom probe (Pingdom's published probe list)
    ("31.13.64.7", "net_link_preview"),   # Meta's published ranges (facebookexternalhit fetches from them)
])
def test_published_crawler_monitor_and_preview_ranges_are_machines_whatever_the_ua(
        classifier: Classifier, ip: str, reason: str) -> None:
    v = only(classifier, at=86_400.0, kind="click", ip=ip, ua=CHROME, link=LINKS[0])
    assert (v.verdict, v.source, v.reasons) == ("machine", "bot", (reason,))


def test_a_vpn_exit_is_no_machine_signal(classifier: Classifier) -> None:
    # A ProtonVPN exit (its published list): people browse through these.
    v = only(classifier, at=86_400.0, kind="click", ip="5.157.13.2", ua=CHROME, link=LINKS[0])
    assert v.verdict == "human"


def test_gmail_proxy_inside_googles_crawler_space_is_still_a_proxy_open(classifier: Classifier) -> None:
    v = only(classifier, at=86_400.0, ip="66.249.66.10", ua=GMAIL_PROXY)
    assert (v.verdict, v.source) == ("proxy", "gmail_proxy")
