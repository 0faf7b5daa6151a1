"""Prints, as JSON, every row and record a HitProcessor makes of a fixed mix of records: the labelled
sample's patterns as a simulated campaign (hits with revisions, sends, conversions), plus records that
must become dead letters. Run once compiled and once as plain Python (PIXELTRACK_NATIVE=0) by
tests/unit/test_native.py, which compares the two.

    python -m tests.plugins.native_rows
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from schemas import native

native.activate()  # first, before the hot modules load: compiled or plain Python, as PIXELTRACK_NATIVE says

from processors.classify_file import build_classifier  # noqa: E402
from processors.local_runner import LocalRecord  # noqa: E402
from processors.pipeline import HitProcessor  # noqa: E402
from schemas.records import REPLAY_HEADER, DeadLetter, RawHit  # noqa: E402
from schemas.tokens import Keyring  # noqa: E402
from schemas.topics import Topics  # noqa: E402
from tests.plugins.simulate import load_patterns, simulate  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "labelled-hits.jsonl"


def odd_records(topics: Topics, keyring: Keyring, good: RawHit) -> list[bytes]:
    """hits.raw values that must not be counted, each in its own way."""
    def raw(**change: object) -> bytes:
        obj = orjson.loads(good.encode())
        obj.update(change)
        return orjson.dumps(obj)
    return [b"{not json", b"[1, 2]", b'{"v": 1}', raw(v=2), raw(id=7), raw(received_at="soon"), raw(headers=[]),
            raw(token="k1.abc.def"), raw(token=good.token[:-2] + "AA"), raw(host="elsewhere.example"),
            raw(kind="click"), raw(received_at=1e300), raw(ua=None), raw(id="dup"),
            raw(headers={"accept": 5}), raw(headers={"purpose": None}), raw(headers={"accept": ["image/*"]}),
            raw(ip="81.2.69.142\u0000"), raw(id="deep", edge="e").replace(b'"e"', DEEP), DEEP]


DEEP = b"[" * 300 + b"]" * 300  # orjson reads 1024 levels and writes 254


def odd_others(topics: Topics) -> list[tuple[str, bytes]]:
    """Conversions and unsubscribes with fields of the wrong type (Kafka is an input like any other)."""
    conversion = {"tenant": "", "idempotency_key": "odd-1", "ts": 1_790_000_000, "value": 5, "currency": "EUR",
                  "message": "native-m0000001"}
    unsubscribe = {"tenant": "", "recipient_hash": "ab" * 32, "campaign": "native", "message": "native-m0000002",
                   "ts": 1_790_000_000}
    out = [(topics.conversions, orjson.dumps({**conversion, **change})) for change in (
        {"tenant": 5}, {"message": None}, {"idempotency_key": ["k"]}, {"value": True}, {"campaign": 7},
        {"idempotency_key": "odd-2"}, {"idempotency_key": None}, {"click_id": None, "idempotency_key": "odd-3"},
        {"idempotency_key": "odd-4", "campaign": "native", "link": [[[[]]]] * 2})]
    out += [(topics.unsubscribes, orjson.dumps({**unsubscribe, **change})) for change in (
        {"recipient_hash": None}, {"tenant": 5}, {"ts": "soon"}, {})]
    return out


def main() -> None:
    topics = Topics()
    keyring = Keyring({"k1": b"native-rows-secret-0123456789"}, "k1")
    sim = simulate(load_patterns(FIXTURE), "native", n_sends=1500, engaged_share=0.8, seed=5)
    values = [(r.topic, r.value) for r in sim.records(keyring, topics)]
    good = next(RawHit.decode(v) for t, v in values if t == topics.hits_raw)
    values += [(topics.hits_raw, v) for v in odd_records(topics, keyring, good)]
    values += [(topics.hits_raw, v) for t, v in values[-3:] if t == topics.hits_raw]  # repeats
    values += odd_others(topics)
    letter = DeadLetter("edge:1", 1_790_000_000.5, "edge", "bad_signature", "x", "open", "GET", "t.example.com",
                        "/o/abc", "81.2.69.142", "curl/8", "edge-1", "{}")
    far = orjson.dumps({**orjson.loads(letter.encode()), "received_at": 1e300})
    values += [(topics.hits_dlq, letter.encode()), (topics.hits_dlq, b'{"id": 3}'), (topics.hits_dlq, b"[]"),
               (topics.hits_dlq, far)]
    records = [LocalRecord(t, 0, i, v) for i, (t, v) in enumerate(values)]
    # Re-sent hits carry the replay header; Kafka allows a header without a value.
    records += [LocalRecord(topics.hits_raw, 1, i, v, (("trace", None), (REPLAY_HEADER, b"1")))  # type: ignore[arg-type]
                for i, v in enumerate([v for t, v in values if t == topics.hits_raw][:40])]
    processor = HitProcessor(keyring, build_classifier(), topics, publish_classified=True, batch_max_records=500)
    out: list[object] = [[native.STATE, native.running()]]
    for i in range(0, len(records), 500):
        want = processor.lookups(records[i:i + 500])
        batch = processor.process(records[i:i + 500])
        # Dead letters made here carry the time they were made (and are counted in its minute): left out,
        # everything else compared.
        tables = {t.table: t.rows for t in batch.tables()}
        tables["dead_letters"] = [(*r[:1], None, *r[2:]) if r[3] == "undecodable_dead_letter" or r[2] == "processor"
                                  else r for r in tables["dead_letters"]]
        made: dict[tuple[object, ...], list[int]] = {}
        for r in tables["dead_letter_counts"]:
            if r[1] == "processor":
                n = made.setdefault((*r[1:5], *r[7:9]), [0, 0, -1])
                n[0], n[1], n[2] = n[0] + int(r[5]), n[1] + int(r[6]), max(n[2], int(r[9]))
        tables["dead_letter_counts"] = [r for r in tables["dead_letter_counts"] if r[1] != "processor"]
        out.append({"lookups": [want.hit_ids, want.conversion_keys, want.messages], "tables": tables,
                    "made": sorted([*k, *n] for k, n in made.items()),
                    "classified": [r.value.decode() for r in batch.classified],
                    "partitions": batch.classified_partitions})
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
