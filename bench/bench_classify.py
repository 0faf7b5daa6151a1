"""Throughput of enrich + classify on one core, against a baseline that only decodes the JSON lines.

Replays the labelled sample (tests/fixtures/labelled-hits.jsonl) enough times to run at least
--seconds, each repeat re-based to distinct message and hit ids and later timestamps, through an
Enricher (with small GeoLite2-shaped City and ASN databases written by mmdb_writer, or real ones
given with --city/--asn) and a Classifier. Accuracy and count errors are measured on the labelled
sample itself. The last line is machine-readable:

    accuracy=… open_count_err=… click_count_err=… hits_per_s=… baseline_hits_per_s=…

Run: .venv/bin/python bench/bench_classify.py
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas import native  # noqa: E402

native.activate()  # first, before the hot modules load: compiled when a current build is there (make native)

from processors.behaviour import Classifier  # noqa: E402
from processors.classify import COUNTED, ClassifierConfig  # noqa: E402
from processors.classify_file import classify_lines  # noqa: E402
from processors.enrich import Enricher  # noqa: E402
from processors.networks import NetworkLists  # noqa: E402
from schemas.hit import Hit, loads_v1  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "labelled-hits.jsonl"


def write_small_geoip(folder: Path) -> tuple[Path, Path] | None:
    """Tiny City and ASN databases covering the sample's networks, so lookups run for real."""
    try:
        from mmdb_writer import MMDBWriter
        from netaddr import IPSet
    except ImportError:
        return None
    city, asn = folder / "city.mmdb", folder / "asn.mmdb"
    wc = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    wa = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    rows = [
        ("81.2.0.0/16", "GB", "London", 20712, "Andrews & Arnold"),
        ("86.0.0.0/8", "GB", "Manchester", 5089, "Virgin Media"),
        ("92.40.0.0/16", "GB", "Leeds", 12576, "EE"),
        ("24.48.0.0/16", "CA", "Montreal", 5769, "Videotron"),
        ("73.0.0.0/8", "US", "Chicago", 7922, "Comcast"),
        ("2a02:c7f::/32", "GB", "Bristol", 5607, "Sky"),
        ("66.0.0.0/8", "US", "Mountain View", 15169, "GOOGLE"),
        ("148.163.128.0/19", "US", "Sunnyvale", 22843, "PROOFPOINT"),
        ("172.224.0.0/12", "US", "Ashburn", 36183, "Akamai"),
        ("54.80.0.0/12", "US", "Ashburn", 14618, "AMAZON-AES"),
    ]
    for cidr, cc, name, number, org in rows:
        wc.insert_network(IPSet([cidr]), {"country": {"iso_code": cc}, "city": {"names": {"en": name}}})
        wa.insert_network(IPSet([cidr]), {"autonomous_system_number": number,
                                          "autonomous_system_organization": org})
    wc.to_db_file(str(city))
    wa.to_db_file(str(asn))
    return city, asn


def quality(lines: list[bytes], networks: NetworkLists, enricher: Enricher) -> tuple[float, float, float]:
    """Accuracy (verdict exact match) and relative errors of counted opens and clicks on the sample."""
    records = [orjson.loads(line) for line in lines]
    out = list(classify_lines(lines, Classifier(ClassifierConfig(), networks, enricher)))
    right = sum(o["verdict"] == r["label"]["verdict"] for r, o in zip(records, out, strict=True))
    errors = []
    for kind in ("open", "click"):
        truth = sum(1 for r in records if r["kind"] == kind and r["label"]["verdict"] in COUNTED)
        ours = sum(1 for r, o in zip(records, out, strict=True) if r["kind"] == kind and o["verdict"] in COUNTED)
        errors.append((ours - truth) / truth)
    return right / len(records), errors[0], errors[1]


def replay(base: list[Hit], repeats: int) -> list[Hit]:
    """`repeats` copies of the sample as distinct messages, each later in time than the one before."""
    span = max(h.ts for h in base) - min(h.ts for h in base) + 3600.0
    out = []
    for r in range(repeats):
        shift = r * span
        for h in base:
            out.append(dataclasses.replace(h, id=f"{h.id}.{r}", message=f"{h.message}.{r}",
                                           recipient=f"{h.recipient}.{r}", ts=h.ts + shift,
                                           sent_at=h.sent_at + shift, headers=dict(h.headers)))
    return out


def time_classify(hits: list[Hit], networks: NetworkLists, enricher: Enricher) -> float:
    classifier = Classifier(ClassifierConfig(), networks, enricher)
    feed = classifier.feed
    gc.collect()
    started = time.perf_counter()
    for h in hits:
        feed(h)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timed run of enrich + classify")
    p.add_argument("--city", type=Path, help="a MaxMind City database (default: a tiny generated one)")
    p.add_argument("--asn", type=Path, help="a MaxMind ASN database (default: a tiny generated one)")
    args = p.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    lines = SAMPLE.read_bytes().splitlines()
    base = [loads_v1(line) for line in lines]

    with tempfile.TemporaryDirectory() as tmp:
        city, asn = args.city, args.asn
        if city is None and asn is None:
            generated = write_small_geoip(Path(tmp))
            city, asn = generated if generated else (None, None)
        networks = NetworkLists.load()
        with Enricher(city, asn, networks) as enricher:
            accuracy, open_err, click_err = quality(lines, networks, enricher)

            # Calibrate on one pass (caches warm), then replay enough repeats for the minimum time.
            one = time_classify(replay(base, 2), networks, enricher) / 2
            repeats = max(4, int(args.seconds * 1.2 / max(one, 1e-6)) + 1)
            hits = replay(base, repeats)
            elapsed = time_classify(hits, networks, enricher)
            while elapsed < args.seconds:
                repeats *= 2
                hits = replay(base, repeats)
                elapsed = time_classify(hits, networks, enricher)
            hits_per_s = len(hits) / elapsed

            # End to end as `pixeltrack classify` does it: decode each line, then enrich + classify.
            raw = [orjson.dumps(h.to_v1()) for h in hits[: len(base) * min(repeats, 20)]]
            classifier = Classifier(ClassifierConfig(), networks, enricher)
            started = time.perf_counter()
            for line in raw:
                classifier.feed(loads_v1(line))
            e2e_per_s = len(raw) / (time.perf_counter() - started)

        # Baseline: only decode the same number of JSON lines.
        baseline_lines = lines * repeats
        gc.collect()
        started = time.perf_counter()
        for line in baseline_lines:
            orjson.loads(line)
        baseline_per_s = len(baseline_lines) / (time.perf_counter() - started)

    print(f"sample: {len(lines)} labelled hits; geoip: {'on' if city or asn else 'off'}; "
          f"networks: {len(networks)} intervals")
    print(f"enrich + classify: {len(hits)} hits ({repeats} repeats) in {elapsed:.2f} s on one core "
          f"= {hits_per_s:,.0f} hits/s")
    print(f"decode (hit v1) + enrich + classify: {e2e_per_s:,.0f} hits/s")
    print(f"baseline orjson.loads only: {baseline_per_s:,.0f} lines/s "
          f"(enrich + classify costs {baseline_per_s / hits_per_s:.1f}× a JSON decode)")
    print(f"accuracy={accuracy:.4f} open_count_err={open_err:.4f} click_count_err={click_err:.4f} "
          f"hits_per_s={hits_per_s:.0f} baseline_hits_per_s={baseline_per_s:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
