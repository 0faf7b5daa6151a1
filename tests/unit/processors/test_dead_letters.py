"""Dead letters in the processor: every letter counted, a few bodies kept; a suppressed recipient's never."""

from __future__ import annotations

import orjson
from prometheus_client import REGISTRY

from processors.classify_file import build_classifier
from processors.pipeline import DEAD_LETTER_COUNT_COLUMNS, HitProcessor
from schemas.privacy import keyed_recipient_hash, recipient_hash, recipient_key
from schemas.records import DeadLetter, RawHit
from schemas.sends import Send
from schemas.tokens import TokenPayload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, HTML_ACCEPT, SENT, as_hits_dlq_values, processor_letters
from tests.unit.processors.test_pipeline import KEYRING, Rec

T = Topics()
MINUTE = 1_796_000_080.0  # 20 s before a minute ends (1_796_000_100 is a multiple of 60)


def letter(i: int, reason: str = "bad_signature", edge: str = "edge-1", at: float = MINUTE, path: str = "/o/x.y.z",
           kind: str = "open") -> Rec:
    d = DeadLetter(id=f"e-{i}", received_at=at, stage="edge", reason=reason, kind=kind, method="GET",
                   host="t.example.com", path=path, ip="81.2.69.142", ua="curl/8", edge=edge)
    return Rec(T.hits_dlq, 3, 100 + i, d.encode())  # at offset 100 + i


def counts(out_rows: list[tuple[object, ...]]) -> dict[tuple[object, ...], tuple[object, ...]]:
    """(minute, stage, reason, edge, kind) → (letters, stored, src_topic, src_partition, src_offset)."""
    return {tuple(r[:5]): tuple(r[5:]) for r in out_rows}


def dead_letters_counted(reason: str) -> float:
    return REGISTRY.get_sample_value("pixeltrack_dead_letters_total", {"stage": "edge", "reason": reason}) or 0.0


def test_a_flood_of_letters_stores_a_few_bodies_and_counts_every_one() -> None:
    assert DEAD_LETTER_COUNT_COLUMNS[5:7] == ("letters", "stored")
    processor = HitProcessor(KEYRING, build_classifier(), T, dead_letter_samples=3)
    before = dead_letters_counted("flood_reason")
    records = [letter(i, "flood_reason") for i in range(500)]
    records += [letter(1000 + i, "flood_reason", at=MINUTE + 30) for i in range(5)]  # the next minute
    records += [letter(2000 + i, "flood_reason", edge="edge-2") for i in range(2)]  # another edge
    records += [letter(3000, "other_reason")]
    out = processor.process(records)
    assert [r[0] for r in out.dead_letters.rows] == ["e-0", "e-1", "e-2", "e-1000", "e-1001", "e-1002", "e-2000",
                                                     "e-2001", "e-3000"]
    assert counts(out.dead_letter_counts.rows) == {
        (1_796_000_040, "edge", "flood_reason", "edge-1", "open"): (500, 3, T.hits_dlq, 3, 599),
        (1_796_000_100, "edge", "flood_reason", "edge-1", "open"): (5, 3, T.hits_dlq, 3, 1104),
        (1_796_000_040, "edge", "flood_reason", "edge-2", "open"): (2, 2, T.hits_dlq, 3, 2101),
        (1_796_000_040, "edge", "other_reason", "edge-1", "open"): (1, 1, T.hits_dlq, 3, 3100),
    }
    # the metric counts every letter, stored or not
    assert dead_letters_counted("flood_reason") - before == 507
    # the next batch: that minute's samples are taken; counted only
    out = processor.process([letter(4000 + i, "flood_reason") for i in range(10)])
    assert out.dead_letters.rows == []
    assert counts(out.dead_letter_counts.rows) == {
        (1_796_000_040, "edge", "flood_reason", "edge-1", "open"): (10, 0, T.hits_dlq, 3, 4109)}


def test_junk_trickling_all_day_keeps_an_hour_s_budget_of_bodies() -> None:
    """A few letters every minute fill no minute's samples: without the hour's budget a day of them would
    be stored whole. 100,000 over 24 hours keep 60 bodies an hour (6 minutes' worth of 10), all counted."""
    processor = HitProcessor(KEYRING, build_classifier(), T, dead_letter_samples=10)
    day = 24 * 3600
    start = MINUTE - MINUTE % 3600
    stored = counted = 0
    for batch in range(100):
        records = [letter(batch * 1000 + i, "trickle", at=start + (batch * 1000 + i) * day / 100_000)
                   for i in range(1000)]
        out = processor.process(records)
        stored += len(out.dead_letters.rows)
        counted += sum(int(r[5]) for r in out.dead_letter_counts.rows)  # type: ignore[call-overload]
    assert counted == 100_000
    assert stored == 24 * 60


def test_zero_samples_keeps_counts_only() -> None:
    out = HitProcessor(KEYRING, build_classifier(), T, dead_letter_samples=0).process([letter(1), letter(2)])
    assert out.dead_letters.rows == []
    assert [r[5:7] for r in out.dead_letter_counts.rows] == [(2, 0)]


def token_of(recipient: str, kind: str = "open", expires_at: int = 0, sent_at: int = int(SENT * 1000)) -> str:
    url = "https://shop.example.com/p" if kind == "click" else ""
    return KEYRING.mint(TokenPayload(kind, "", "c", "A", f"m-{recipient}", recipient,  # type: ignore[arg-type]
                                     sent_at, expires_at, url))


def test_an_erased_or_do_not_track_recipients_letters_are_never_stored() -> None:
    """Expired and wrong-kind fetches of their tokens (the edge's letters, the path percent-encoded or
    not), their hit with an impossible time, their send that does not decode: none is stored or
    forwarded, not even as a letter or a count. Everyone else's letters are."""
    key = recipient_key(KEYRING)
    processor = HitProcessor(KEYRING, build_classifier(), T, do_not_track=frozenset({recipient_hash("", "quiet")}))
    processor.forget_recipients([keyed_recipient_hash(key, "", "gone")])
    records: list[Rec] = []
    for who in ("gone", "quiet", "loud"):
        token = token_of(who, expires_at=1)
        records.append(letter(len(records), "expired", path=f"/o/{token}.gif"))
        encoded = token_of(who, "click").replace(".", "%2E").replace("A", "%41")
        records.append(letter(len(records), "wrong_kind", path=f"/o/{encoded}"))
        records.append(letter(len(records), "wrong_kind", path=f"/o/{token.replace('.', '%252E')}"))  # twice
        # sent in the year 318,000: a bad_timestamp letter for anyone else
        raw = RawHit(f"h-{who}", SENT + 60, "open", "GET", "t.example.com", "/o/x", token_of(who, sent_at=10**16),
                     "81.2.69.142", CHROME, "edge-1", dict(HTML_ACCEPT))
        records.append(Rec(T.hits_raw, 0, len(records), raw.encode()))
        send = orjson.loads(Send("", "c", "A", f"m-{who}", who, SENT, "x.com", 1).encode())
        send["sent_at"] = "not a time"
        records.append(Rec(T.sends, 0, len(records), orjson.dumps(send)))
    out = processor.process(records)
    # loud's hit and send become processor letters, stored with the batch; gone's and quiet's do not
    mine = processor_letters(out)
    assert sorted(str(d["reason"]) for d in mine) == ["bad_timestamp", "undecodable_send"]
    assert all("loud" in str(d["raw"]) for d in mine)
    # the edge's letters: loud's three stored, nobody else's; counted with the processor's two
    assert len([r for r in out.dead_letters.rows if r[2] == "edge"]) == 3
    assert sum(int(r[5]) for r in out.dead_letter_counts.rows) == 5
    # letters of gone's and quiet's made before the erasure by another processor (an older one sent its
    # letters through hits.dlq: a backlog there) are dropped when read
    older = HitProcessor(KEYRING, build_classifier(), T)
    raws = []
    for who in ("gone", "quiet"):
        send = orjson.loads(Send("", "c", "A", f"m-{who}", who, SENT, "x.com", 1).encode())
        send["links"] = "many"
        raws.append(Rec(T.sends, 0, len(raws), orjson.dumps(send)))
    made = as_hits_dlq_values(older.process(raws))
    assert len(made) == 2
    assert processor.process([Rec(T.hits_dlq, 2, i, value) for i, value in enumerate(made)]).dead_letters.rows == []
