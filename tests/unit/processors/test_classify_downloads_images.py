"""Downloads (/d/) judged as clicks are, and opens through the email's own images (/i/) deduplicated per
reading, with image proxies and Apple's MPP judged as for the pixel."""

from __future__ import annotations

import dataclasses

from processors.behaviour import Classifier
from processors.classify import Verdict
from schemas.hit import Hit
from schemas.tokens import FLAG_IMAGE

from .builders import APPLE_MAIL, CHROME, GMAIL_PROXY, HOME_IP, HTML_ACCEPT, IMG_ACCEPT, LINKS, feed_all, make_hit

DAY = 86400.0
DOCS = ("https://files.example.com/price-list.pdf", "https://files.example.com/whitepaper.pdf")
IMAGES = ("https://img.example.com/hero.jpg", "https://img.example.com/logo.png", "https://img.example.com/p1.jpg")
SCANNER_IP = "81.2.69.200"  # a residential-looking address: only behaviour gives the scanner away


def image_open(at: float, src: str, *, ip: str = HOME_IP, ua: str = CHROME, message: str = "m-1",
               hit_id: str = "") -> Hit:
    """An open through one of the email's images, as the pipeline makes it of an /i/ hit."""
    hit = make_hit(at, "open", ip=ip, ua=ua, link=src, message=message, headers=dict(IMG_ACCEPT),
                   hit_id=hit_id or f"{message}-img-{src}-{at}")
    return dataclasses.replace(hit, link_flags=FLAG_IMAGE)


def _final(classifier: Classifier, hits: list[Hit]) -> dict[str, Verdict]:
    return {i: d.verdict for i, d in feed_all(classifier, hits).items()}


def _verdicts(final: dict[str, Verdict], hits: list[Hit]) -> list[tuple[str, str]]:
    return [(final[h.id].verdict, final[h.id].source) for h in hits]


def test_a_scanner_fetching_every_link_and_document_right_after_delivery_is_a_machine(
        classifier: Classifier) -> None:
    """Scanners follow every link of a message on delivery, documents included (a sandbox detonates
    attachments and linked files alike): two links and two documents within a second, 40 s after send,
    from one client with a browser's UA are a link burst, every one of them the scanner's."""
    hits = [make_hit(40.0 + 0.2 * i, "click", ip=SCANNER_IP, ua=CHROME, link=url, hit_id=f"s{i}")
            for i, url in enumerate((LINKS[0], DOCS[0], LINKS[1], DOCS[1]))]
    hits = [dataclasses.replace(h, kind="download") if h.link in DOCS else h for h in hits]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("machine", "scanner")] * 4
    assert all("link_burst" in final[h.id].reasons for h in hits)


def test_a_scanner_fetching_only_the_documents_is_a_machine_too(classifier: Classifier) -> None:
    hits = [dataclasses.replace(make_hit(30.0 + 0.3 * i, "click", ip=SCANNER_IP, ua=CHROME, link=url,
                                         hit_id=f"d{i}"), kind="download") for i, url in enumerate(DOCS)]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("machine", "scanner"), ("machine", "scanner")]


def test_a_persons_download_a_day_later_is_human(classifier: Classifier) -> None:
    hits = [make_hit(DAY + 5.0, "open", ua=CHROME, hit_id="open"),
            dataclasses.replace(make_hit(DAY + 20.0, "click", ua=CHROME, link=DOCS[0], hit_id="dl",
                                         headers=dict(HTML_ACCEPT)), kind="download")]
    final = _final(classifier, hits)
    assert (final["dl"].verdict, final["dl"].source, final["dl"].reasons) == ("human", "direct",
                                                                             ("no_machine_signal",))


def test_a_download_by_an_http_library_is_a_bot(classifier: Classifier) -> None:
    hit = dataclasses.replace(make_hit(DAY, "click", ua="python-requests/2.32.3", link=DOCS[0], hit_id="x"),
                              kind="download")
    assert _final(classifier, [hit])["x"].verdict == "machine"


def test_one_reading_of_pixel_and_images_is_one_human_open(classifier: Classifier) -> None:
    """A reader's client loads the pixel and every image at once: the first fetch is the open, the others
    repeat it (duplicate), whatever each fetched."""
    hits = [image_open(600.0, IMAGES[0]), make_hit(600.05, ua=CHROME, hit_id="pixel"),
            image_open(600.1, IMAGES[1]), image_open(600.2, IMAGES[2])]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("human", "direct")] + [("duplicate", "direct")] * 3


def test_images_without_the_pixel_still_count_one_open(classifier: Classifier) -> None:
    hits = [image_open(600.0 + 0.1 * i, src) for i, src in enumerate(IMAGES)]
    final = _final(classifier, hits)
    assert [v for v, _ in _verdicts(final, hits)] == ["human", "duplicate", "duplicate"]


def test_a_second_reading_an_hour_later_is_a_second_open(classifier: Classifier) -> None:
    first = [image_open(600.0, IMAGES[0]), image_open(600.1, IMAGES[1])]
    again = [image_open(4200.0, IMAGES[0]), image_open(4200.1, IMAGES[1])]
    final = _final(classifier, first + again)
    assert [v for v, _ in _verdicts(final, first + again)] == ["human", "duplicate", "human", "duplicate"]


def test_images_arriving_out_of_order_keep_the_earlier_fetch_as_the_open(classifier: Classifier) -> None:
    later, earlier = image_open(600.3, IMAGES[1], hit_id="later"), image_open(600.0, IMAGES[0], hit_id="earlier")
    final = _final(classifier, [later, earlier])
    assert (final["earlier"].verdict, final["later"].verdict) == ("human", "duplicate")


def test_gmails_proxy_fetching_the_images_is_one_proxy_open(classifier: Classifier) -> None:
    """Gmail's image proxy fetches every image of a message the reader opens, from several nodes: one
    proxied open, the other fetches its duplicates (as for the pixel)."""
    hits = [image_open(900.0 + 0.2 * i, src, ip=f"66.249.84.{10 + i}", ua=GMAIL_PROXY)
            for i, src in enumerate(IMAGES)]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("proxy", "gmail_proxy")] + [("duplicate", "gmail_proxy")] * 2


def test_apple_mpp_loading_pixel_and_images_is_one_machine_open(classifier: Classifier) -> None:
    """MPP prefetches the whole message, images and pixel alike, with its bare WebKit UA: a machine, as
    for the pixel, and one reading of it is one machine open (the rest duplicates), so images do not
    inflate the machine share."""
    mpp = "Mozilla/5.0"
    hits = [make_hit(30.0, ua=mpp, ip="17.58.0.10", hit_id="pixel")]
    hits += [image_open(30.1 + 0.1 * i, src, ua=mpp, ip="17.58.0.10") for i, src in enumerate(IMAGES)]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("machine", "apple_mpp")] + [("duplicate", "apple_mpp")] * 3


def test_a_pixel_fetched_twice_by_mpp_stays_two_machine_opens(classifier: Classifier) -> None:
    """Without images nothing changes: the pixel's machine repeats are each a machine open, as before."""
    hits = [make_hit(30.0, ua="Mozilla/5.0", ip="17.58.0.10", hit_id="a"),
            make_hit(31.0, ua="Mozilla/5.0", ip="17.58.0.10", hit_id="b")]
    final = _final(classifier, hits)
    assert _verdicts(final, hits) == [("machine", "apple_mpp"), ("machine", "apple_mpp")]


def test_a_scanner_rendering_images_then_bursting_links_has_every_fetch_revised(classifier: Classifier) -> None:
    """The scanner's rendering (its pixel and images, ambiguous alone) before its link burst is the
    scanner's too: the open and its duplicates become the machine's."""
    ua = APPLE_MAIL
    hits = [image_open(20.0, IMAGES[0], ip=SCANNER_IP, ua=ua, hit_id="i0"),
            image_open(20.1, IMAGES[1], ip=SCANNER_IP, ua=ua, hit_id="i1")]
    hits += [make_hit(25.0 + 0.2 * i, "click", ip=SCANNER_IP, ua=ua, link=url, hit_id=f"c{i}")
             for i, url in enumerate(LINKS[:3])]
    final = _final(classifier, hits)
    assert {final[h].verdict for h in ("i0", "i1", "c0", "c1", "c2")} == {"machine"}
