"""`pixeltrack classify`: JSON lines in, final verdicts out in input order; bad lines reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from processors.behaviour import Classifier
from processors.classify_file import build_classifier, classify_lines
from schemas.hit import Hit

from .builders import CHROME, LINKS, UNLISTED_CLOUD, make_hit


def line(h: Hit, **extra: object) -> bytes:
    return orjson.dumps({**h.to_v1(), **extra})


def test_final_verdicts_in_input_order(classifier: Classifier) -> None:
    first = make_hit(300, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[0], hit_id="first")
    second = make_hit(300.3, "click", ip=UNLISTED_CLOUD, ua=CHROME, link=LINKS[1], hit_id="second")
    person = make_hit(4000, hit_id="person")
    out = list(classify_lines([line(first), line(second), line(person)], classifier))
    assert out == [
        {"id": "first", "verdict": "machine", "source": "scanner", "reasons": ["link_burst"]},
        {"id": "second", "verdict": "machine", "source": "scanner", "reasons": ["link_burst"]},
        {"id": "person", "verdict": "human", "source": "direct", "reasons": ["no_machine_signal"]},
    ]


def test_bad_lines_are_reported_with_their_number(classifier: Classifier) -> None:
    good = make_hit(4000, hit_id="good")
    lines: list[bytes | str] = [
        b"{not json",
        line(good),
        "",
        orjson.dumps([1, 2]),
        orjson.dumps({"id": "x", "kind": "view", "ts": 1, "sent_at": 0, "message": "m"}),
        orjson.dumps({"id": "y", "kind": "open", "ts": 1, "sent_at": 0}),
        line(good, id="good-too").decode(),
    ]
    out = list(classify_lines(lines, classifier))
    assert [o.get("line") for o in out] == [1, None, 4, 5, 6, None]
    assert out[1]["id"] == "good"
    assert out[5]["id"] == "good-too"
    assert "not JSON" in str(out[0]["error"])
    assert "kind" in str(out[3]["error"])
    assert "message" in str(out[4]["error"])


def test_label_field_is_ignored(classifier: Classifier) -> None:
    h = make_hit(4000, hit_id="a")
    out = list(classify_lines([line(h, label={"verdict": "machine", "source": "scanner"})], classifier))
    assert out == [{"id": "a", "verdict": "human", "source": "direct", "reasons": ["no_machine_signal"]}]


def test_build_classifier_with_settings_values(tmp_path: Path) -> None:
    extra = tmp_path / "networks.json"
    extra.write_bytes(orjson.dumps({"networks": [{"vendor": "Acme Gateway", "category": "mail_security",
                                                  "cidrs": ["198.51.100.0/24"], "source": "acme docs"}]}))
    city = tmp_path / "city.mmdb"
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    w.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}, "city": {"names": {"en": "London"}}})
    w.to_db_file(str(city))
    c = build_classifier(geoip_city_db=city, geoip_asn_db=None, networks_file=extra,
                         internal_networks=["192.0.2.0/24"])
    # A mail-security network's fetch at delivery time (its scan window); later ones may be isolation.
    scan = c.feed(make_hit(200, "click", ip="198.51.100.9", ua=CHROME, link=LINKS[0]))[0]
    own = c.feed(make_hit(7200, ip="192.0.2.7", message="m-2"))[0]
    person = c.feed(make_hit(7200, ip="81.2.69.142", message="m-3"))[0]
    assert (scan.verdict.verdict, scan.verdict.reasons) == ("machine", ("net_mail_security",))
    assert (own.verdict.verdict, own.verdict.source) == ("machine", "internal")
    assert (person.verdict.verdict, person.enrichment.country, person.enrichment.city) == ("human", "GB", "London")


def test_build_classifier_defaults_need_no_geoip() -> None:
    c = build_classifier()
    d = c.feed(make_hit(7200))[0]
    assert (d.verdict.verdict, d.enrichment.country, d.enrichment.asn) == ("human", "", 0)


def test_build_classifier_rejects_a_bad_networks_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(ValueError, match="networks"):
        build_classifier(networks_file=bad)


def test_link_flags_of_a_v1_line_reach_the_classifier(classifier: Classifier) -> None:
    """Hit v1 lines may carry the token's link flags (an unsubscribe link: FLAG_UNSUBSCRIBE = 2)."""
    unsub = make_hit(20, "click", ip="198.51.100.70", ua=CHROME, link="https://x.example/unsubscribe", hit_id="u")
    unsub.link_flags = 2
    assert orjson.loads(line(unsub))["link_flags"] == 2  # to_v1 writes them when set
    bad = [line(unsub, id="neg", link_flags=-1), line(unsub, id="text", link_flags="2")]
    out = list(classify_lines([line(unsub), *bad], classifier))
    assert out[0] == {"id": "u", "verdict": "machine", "source": "scanner",
                      "reasons": ["unsubscribe_fast", "fast_after_send"]}
    assert [o["line"] for o in out[1:]] == [2, 3]
    assert all("link_flags" in str(o["error"]) for o in out[1:])
