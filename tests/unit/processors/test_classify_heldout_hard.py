"""The harder held-out set (tests/fixtures/heldout-hard.jsonl, made by make_heldout_hard.py): verdicts and counts."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from processors.behaviour import Classifier
from processors.classify import COUNTED, ClassifierConfig
from processors.classify_file import classify_lines
from processors.enrich import Enricher
from processors.networks import NetworkLists

from .builders import FIXTURES


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_heldout_hard", FIXTURES / "make_heldout_hard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _maker()


@pytest.fixture
def hard_classifier(tmp_path: Path, networks: NetworkLists) -> Iterator[Classifier]:
    """A classifier with an ASN database for the set's hosting networks and their ASes as the hosting list."""
    asn = tmp_path / "asn.mmdb"
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    for prefix, number in MAKER.HOSTING:
        w.insert_network(IPSet([f"{prefix}.0.0/16"]), {"autonomous_system_number": number,
                                                       "autonomous_system_organization": f"AS{number}"})
    w.to_db_file(str(asn))
    with Enricher(None, asn, networks) as enricher:
        yield Classifier(ClassifierConfig(), networks, enricher, hosting_asns={n for _, n in MAKER.HOSTING})


def test_the_fixture_is_what_the_script_makes() -> None:
    assert (FIXTURES / "heldout-hard.jsonl").read_bytes() == MAKER.render(MAKER.make())


def test_the_fixture_covers_every_behaviour_with_fresh_addresses() -> None:
    records = [orjson.loads(line) for line in (FIXTURES / "heldout-hard.jsonl").read_bytes().splitlines()]
    assert len({r["message"] for r in records}) >= 300
    labels = {(r["kind"], r["label"]["verdict"], r["label"]["source"]) for r in records}
    assert {("open", "proxy", "webmail_proxy"), ("click", "human", "isolation"), ("open", "machine", "apple_mpp"),
            ("open", "duplicate", "gmail_proxy"), ("click", "machine", "scanner"), ("open", "human", "direct"),
            ("click", "human", "direct")} <= labels
    assert any(r["method"] == "HEAD" for r in records)
    assert any(r.get("link_flags") for r in records if r["label"]["verdict"] == "machine")
    known = {orjson.loads(line)["ip"] for name in ("labelled-hits.jsonl", "heldout-hits.jsonl")
             for line in (FIXTURES / name).read_bytes().splitlines()}
    assert not known & {r["ip"] for r in records}


def test_harder_held_out_verdicts_and_counts(hard_classifier: Classifier) -> None:
    """≥ 98% of verdicts right; counted opens and clicks (human + proxy) within 2% of the truth."""
    lines = (FIXTURES / "heldout-hard.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    out = list(classify_lines(lines, hard_classifier))
    assert [o["id"] for o in out] == [r["id"] for r in records]
    wrong = [(r["message"], r["kind"], r["ip"], r["label"], o["verdict"], o["reasons"])
             for r, o in zip(records, out, strict=True) if o["verdict"] != r["label"]["verdict"]]
    assert 1 - len(wrong) / len(records) >= 0.98, wrong[:20]
    for kind in ("open", "click"):
        truth = sum(1 for r in records if r["kind"] == kind and r["label"]["verdict"] in COUNTED)
        ours = sum(1 for r, o in zip(records, out, strict=True) if r["kind"] == kind and o["verdict"] in COUNTED)
        assert abs(ours - truth) <= 0.02 * truth, (kind, truth, ours)


def test_the_fixture_addresses_mean_in_the_shipped_asn_data_what_the_script_says() -> None:
    """Its hosting networks are hosting ASes and its residential ones are not, in the geo/ASN data the project
    ships too (classified with it, the set's counts stay as labelled)."""
    import maxminddb

    from processors.geodata import DEFAULT_ASN_DB, HOSTING_ASNS

    records = [orjson.loads(line) for line in (FIXTURES / "heldout-hard.jsonl").read_bytes().splitlines()]
    hosting = tuple(f"{prefix}." for prefix, _ in MAKER.HOSTING)
    residential = tuple(f"{prefix}." for prefix in MAKER.RESIDENTIAL)
    with maxminddb.open_database(str(DEFAULT_ASN_DB)) as db:
        def asn(ip: str) -> int:
            found = db.get(ip)
            return int(found["autonomous_system_number"]) if isinstance(found, dict) else 0

        on_hosting = [asn(r["ip"]) for r in records if r["ip"].startswith(hosting)]
        on_homes = [asn(r["ip"]) for r in records if r["ip"].startswith(residential)]
    assert len(on_hosting) > 10
    assert len(on_homes) > 500
    assert [a for a in on_hosting if a not in HOSTING_ASNS] == []
    assert [a for a in on_homes if a in HOSTING_ASNS] == []
