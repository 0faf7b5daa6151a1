"""HitProcessor, pure: one record in, rows out; every column where it belongs."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import REGISTRY

from processors.classify_file import build_classifier
from processors.pipeline import EVENT_COLUMNS, MAX_EDGE_REASONS, HitProcessor
from schemas.classified import ClassifiedEvent
from schemas.records import RawHit
from schemas.sends import Conversion, Send
from schemas.tokens import FLAG_HONEYPOT, Keyring, TokenPayload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, HTML_ACCEPT, SENT, processor_letters

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def click_record(flags: int = 0, hit_id: str = "h-1", offset: int = 41) -> Rec:
    payload = TokenPayload("click", "", "camp-7", "B", "msg-3", "rcpt-5", int(SENT * 1000), 0,
                           "https://shop.example.com/p?x=1", "L2", flags)
    raw = RawHit(hit_id, SENT + 600.5, "click", "GET", "t.example.com", "/c/x", KEYRING.mint(payload),
                 "81.2.69.142", CHROME, "edge-9", dict(HTML_ACCEPT))
    return Rec(Topics().hits_raw, 2, offset, raw.encode())


def hits_counted(kind: str, verdict: str) -> float:
    return REGISTRY.get_sample_value("pixeltrack_hits_total", {"kind": kind, "verdict": verdict}) or 0.0


@pytest.mark.parametrize("publish", [False, True])
def test_a_click_becomes_one_event_row_with_every_column_in_place(publish: bool) -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics(), publish_classified=publish)
    before = hits_counted("click", "human")
    out = processor.process([click_record()])
    assert out.dead_letters.rows == []
    assert len(out.events.rows) == 1
    row = dict(zip(EVENT_COLUMNS, out.events.rows[0], strict=True))
    assert {k: v for k, v in row.items() if k not in ("reasons", "browser", "os", "device", "mail_client",
                                                     "country", "city", "asn", "as_org")} == {
        "tenant": "", "hit_id": "h-1", "kind": "click", "ts": SENT + 600.5, "sent_at": SENT,
        "campaign": "camp-7", "variant": "B", "message_id": "msg-3", "recipient_id": "rcpt-5",
        "link_url": "https://shop.example.com/p?x=1", "link_id": "L2", "link_flags": 0, "method": "GET",
        "host": "t.example.com", "ip": "81.2.69.0", "user_agent": CHROME, "edge": "edge-9",
        "verdict": "human", "source": "direct", "revision": 0, "sign": 1,
        "src_topic": Topics().hits_raw, "src_partition": 2, "src_offset": 41, "origin": "",
        "click_hit_id": ""}
    assert (row["browser"], row["device"]) == ("Chrome", "desktop")
    # Counted whether or not verdicts are published (a batch adds its counts once).
    assert hits_counted("click", "human") == before + 1
    if publish:
        event = ClassifiedEvent.decode(out.classified[0].value)
        assert (event.hit_id, event.message, event.recipient, event.campaign, event.variant, event.link,
                event.link_id, event.verdict, event.revision) == (
            "h-1", "msg-3", "rcpt-5", "camp-7", "B", "https://shop.example.com/p?x=1", "L2", "human", 0)
        assert out.classified[0].key == b"msg-3"
    else:
        assert out.classified == []


def test_a_honeypot_flag_in_the_token_makes_a_scanners_click() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    row = dict(zip(EVENT_COLUMNS, processor.process([click_record(FLAG_HONEYPOT)]).events.rows[0], strict=True))
    assert (row["verdict"], row["source"], row["link_flags"]) == ("machine", "scanner", FLAG_HONEYPOT)
    assert "honeypot" in row["reasons"]


def test_a_record_that_is_not_a_raw_hit_is_a_dead_letter_not_a_row() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    out = processor.process([Rec(Topics().hits_raw, 0, 7, orjson.dumps({"v": 1, "id": "x"}))])
    assert out.events.rows == []
    (letter,) = processor_letters(out)  # written with its batch, at its record's position
    assert (letter["reason"], letter["id"]) == ("undecodable", f"{Topics().hits_raw}:0:7")
    assert (letter["src_topic"], letter["src_partition"], letter["src_offset"]) == (Topics().hits_raw, 0, 7)
    assert [r[5:] for r in out.dead_letter_counts.rows] == [(1, 1, Topics().hits_raw, 0, 7)]


def test_a_conversion_is_attributed_from_a_send_in_its_own_batch_or_the_previous_one() -> None:
    """ClickHouse cannot know a send that is in the same batch (Kafka's batches put conversions before
    sends) or in the batch still being inserted: the processor remembers the sends it processed."""
    from schemas.sends import Conversion, Send

    t = Topics()
    processor = HitProcessor(KEYRING, build_classifier(), t)

    def send(m: str, offset: int) -> Rec:
        return Rec(t.sends, 0, offset, Send("", "camp-1", "B", m, f"r-{m}", SENT, "example.com", 2).encode())

    def conversion(m: str, offset: int) -> Rec:
        return Rec(t.conversions, 0, offset, Conversion("", f"order-{m}", SENT + 60, 9.5, "EUR", message=m).encode())

    same = [conversion("m1", 0), send("m1", 0)]
    out = processor.process(same)
    assert out.dead_letters.rows == []
    assert [(r[3], r[4], r[6]) for r in out.conversions.rows] == [("camp-1", "B", "r-m1")]
    later = [Rec(t.conversions, 0, 1, Conversion("", "order-2", SENT + 90, 3.0, "EUR", message="m1").encode())]
    assert [(r[3], r[4], r[6]) for r in processor.process(later).conversions.rows] == [("camp-1", "B", "r-m1")]
    unknown = processor.process([conversion("m9", 2)])
    assert unknown.conversions.rows == []
    assert [d["reason"] for d in processor_letters(unknown)] == ["unattributed_conversion"]
    # Posted again with the same key once its send is registered: stored, not dropped as a repeat.
    again = processor.process([send("m9", 3), conversion("m9", 4)])
    assert [(r[1], r[3]) for r in again.conversions.rows] == [("order-m9", "camp-1")]
    assert processor.process([conversion("m9", 5)]).conversions.rows == []  # a true repeat is dropped


def test_a_revisions_cancelling_row_repeats_the_row_it_cancels() -> None:
    """Two links clicked 0.8 s apart by one client: the first click, stored as a person's (device and
    place shown), becomes a scanner's. Its -1 row must carry what its +1 row carried, or per-device
    aggregates keep +1 on the device and -1 on "unknown" for ever."""
    processor = HitProcessor(KEYRING, build_classifier(), Topics())

    def click(hit_id: str, at: float, url: str, offset: int) -> Rec:
        payload = TokenPayload("click", "", "camp-7", "A", "msg-9", "rcpt-5", int(SENT * 1000), 0, url, "", 0)
        raw = RawHit(hit_id, SENT + at, "click", "GET", "t.example.com", "/c/x", KEYRING.mint(payload),
                     "81.2.69.142", CHROME, "edge-9", dict(HTML_ACCEPT))
        return Rec(Topics().hits_raw, 0, offset, raw.encode())

    rows = [*processor.process([click("h1", 600.0, "https://shop.example.com/a", 1)]).events.rows,
            *processor.process([click("h2", 600.8, "https://shop.example.com/b", 2)]).events.rows]
    named = [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in rows]
    cancels = [r for r in named if r["sign"] == -1]
    assert [r["hit_id"] for r in cancels] == ["h1"]
    original = next(r for r in named if r["hit_id"] == "h1" and r["sign"] == 1 and r["revision"] == 0)
    assert original["device"] == "desktop"
    source = ("sign", "src_topic", "src_partition", "src_offset")
    assert {k: v for k, v in cancels[0].items() if k not in source} == {
        k: v for k, v in original.items() if k not in source}


def test_times_clickhouse_cannot_hold_are_dead_letters_not_a_failed_batch() -> None:
    """A token minted with a wild sent_at, or a send or conversion that reached Kafka some other way than
    through the API: dead letters with a reason, and the batch's other rows stay insertable."""
    from schemas.sends import Conversion, Send

    t = Topics()
    processor = HitProcessor(KEYRING, build_classifier(), t)
    wild = TokenPayload("open", "", "camp-7", "A", "msg-1", "rcpt-1", 10**18, 0)
    raw = RawHit("h-wild", SENT + 60, "open", "GET", "t.example.com", "/o/x", KEYRING.mint(wild), "81.2.69.142",
                 CHROME, "edge-9", dict(HTML_ACCEPT))
    out = processor.process([
        Rec(t.hits_raw, 0, 1, raw.encode()), click_record(offset=2),
        Rec(t.sends, 0, 3, Send("", "c", "A", "m", "r", 1e300, "x.com", 1).encode()),
        Rec(t.conversions, 0, 4, Conversion("", "k", -1e18, 1.0, "EUR", campaign="c", message="m").encode())])
    assert [d["reason"] for d in processor_letters(out)] == [
        "bad_timestamp", "undecodable_send", "undecodable_conversion"]
    assert [r[1] for r in out.events.rows] == ["h-1"]


def test_an_erased_recipients_hits_sends_and_conversions_are_dropped() -> None:
    from schemas.privacy import keyed_recipient_hash, recipient_key
    from schemas.sends import Conversion, Send

    t = Topics()
    processor = HitProcessor(KEYRING, build_classifier(), t)
    # erasures hold keyed hashes, with the installation's key (here derived from the signing key)
    processor.forget_recipients([keyed_recipient_hash(recipient_key(KEYRING), "", "rcpt-5")])
    out = processor.process([
        click_record(),  # rcpt-5's click
        Rec(t.sends, 0, 1, Send("", "c", "A", "m-5", "rcpt-5", SENT, "x.com", 1).encode()),
        Rec(t.sends, 0, 2, Send("", "c", "A", "m-6", "rcpt-6", SENT, "x.com", 1).encode()),
        Rec(t.conversions, 0, 3, Conversion("", "k5", SENT + 60, 1.0, "EUR", message="m-5").encode()),
        Rec(t.conversions, 0, 4, Conversion("", "k6", SENT + 60, 1.0, "EUR", message="m-6").encode())])
    assert out.events.rows == []
    assert [r[4] for r in out.sends.rows] == ["rcpt-6"]
    assert [r[6] for r in out.conversions.rows] == ["rcpt-6"]
    assert [r[5] for r in out.sends.rows] == [keyed_recipient_hash(recipient_key(KEYRING), "", "rcpt-6")]
    # dropped, not dead letters (they would name the recipient again)
    assert out.dead_letters.rows == out.dead_letter_counts.rows == []


def test_records_orjson_reads_but_cannot_write_and_an_address_with_a_nul_are_answered_not_raised() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    good = orjson.loads(click_record().value)
    deep = b"[" * 300 + b"]" * 300  # orjson reads 1024 levels, writes 254: the dead letter keeps a note
    records = [Rec(Topics().hits_raw, 0, 1, orjson.dumps({**good, "edge": "E"}).replace(b'"E"', deep)),
               Rec(Topics().conversions, 0, 2, b'{"tenant": "", "idempotency_key": "k", "link": ' + deep + b"}"),
               Rec(Topics().hits_raw, 0, 3, orjson.dumps({**good, "id": "h-nul", "ip": "81.2.69.142\u0000"})),
               Rec(Topics().hits_dlq, 0, 4, b'{"id": "edge:1", "received_at": 1e300, "stage": "edge", "reason": "x"}')]
    out = processor.process(records)
    assert [d["reason"] for d in processor_letters(out)] == ["undecodable", "undecodable_conversion"]
    assert "nested too deeply" in str(processor_letters(out)[0]["raw"])
    assert [row[1] for row in out.events.rows] == ["h-nul"]  # its address unknown to the lists, counted
    # 1e300 would fail the insert
    assert [row[3] for row in out.dead_letters.rows if row[13] == Topics().hits_dlq] == ["undecodable_dead_letter"]


def test_edge_dead_letter_reasons_label_a_metric_only_up_to_a_bound() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    letters = [Rec(Topics().hits_dlq, 0, i, orjson.dumps({"id": f"edge:{i}", "received_at": SENT, "stage": "edge",
                                                          "reason": f"made-up-{i}"})) for i in range(100)]
    before = REGISTRY.get_sample_value("pixeltrack_dead_letters_total", {"stage": "edge", "reason": "other"}) or 0.0
    out = processor.process(letters)
    assert len(out.dead_letters.rows) == 100  # every letter stored with its own reason
    assert REGISTRY.get_sample_value("pixeltrack_dead_letters_total", {"stage": "edge", "reason": "other"}) == \
        before + 100 - MAX_EDGE_REASONS


def test_a_kafka_conversion_beyond_the_value_bound_is_dead_lettered() -> None:
    """The conversions topic is an input like any other: a value the API would refuse (two of 1e308 made
    revenue Infinity) is a dead letter naming the bound, and the conversions within it are stored."""
    t = Topics()
    processor = HitProcessor(KEYRING, build_classifier(), t)
    out = processor.process([
        Rec(t.sends, 0, 0, Send("", "c", "A", "m-1", "rcpt-1", SENT, "x.com", 1).encode()),
        Rec(t.conversions, 0, 1, Conversion("", "k1", SENT + 60, 1e308, "EUR", message="m-1").encode()),
        Rec(t.conversions, 0, 2, Conversion("", "k2", SENT + 60, 1e12 + 1, "EUR", message="m-1").encode()),
        Rec(t.conversions, 0, 3, Conversion("", "k3", SENT + 60, 1e12, "EUR", message="m-1").encode())])
    letters = processor_letters(out)
    assert [d["reason"] for d in letters] == ["undecodable_conversion"] * 2
    assert all("from 0 to 1e+12" in str(d["detail"]) for d in letters), letters
    assert [r[1] for r in out.conversions.rows] == ["k3"]
