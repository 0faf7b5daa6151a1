"""Delivery events through HitProcessor: attributed from sends, each event once, the unknown dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from processors.batch import BatchContext
from processors.classify_file import build_classifier
from processors.deliveries import DELIVERY_COLUMNS, ONE_CLICK, redact_addresses
from processors.pipeline import HitProcessor
from schemas.deliveries import Delivery
from schemas.privacy import recipient_hash
from schemas.sends import Send, Unsubscribe
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.unit.processors.builders import SENT, processor_letters

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")
T = Topics()


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def send(m: str, offset: int, variant: str = "B") -> Rec:
    return Rec(T.sends, 0, offset, Send("", "camp-1", variant, m, f"r-{m}", SENT, "example.com", 2).encode())


def event(m: str, offset: int, type_: str = "bounced", id_: str = "", **fields: object) -> Rec:
    d = Delivery("", m, type_, id_ or f"{type_}-{m}", SENT + 30, **fields)  # type: ignore[arg-type]
    return Rec(T.deliveries, 1, offset, d.encode())


def rows(out: object) -> list[dict[str, object]]:
    return [dict(zip(DELIVERY_COLUMNS, r, strict=True)) for r in out.deliveries.rows]  # type: ignore[attr-defined]


def test_an_event_before_its_send_in_one_batch_is_attributed_with_every_column_in_place() -> None:
    """Kafka's batches come topic by topic (deliveries before sends): events are taken after the sends."""
    processor = HitProcessor(KEYRING, build_classifier(), T)
    out = processor.process([event("m1", 5, bounce="hard", smtp_code=550, diagnostic="5.1.1 <jo@example.com> unknown",
                                   platform="sendgrid"), send("m1", 9)])
    assert out.dead_letters.rows == []
    assert rows(out) == [{
        "tenant": "", "message_id": "m1", "type": "bounced", "event_id": "bounced-m1", "ts": SENT + 30,
        "campaign": "camp-1", "variant": "B", "recipient_id": "r-m1", "bounce": "hard", "smtp_code": 550,
        "diagnostic": "5.1.1 <address> unknown", "platform": "sendgrid",
        "src_topic": T.deliveries, "src_partition": 1, "src_offset": 5}]


def test_an_event_is_attributed_from_clickhouses_answer_and_keeps_what_it_says_itself() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), T)
    records = [event("m2", 0, "complained"), event("m3", 1, "replied", campaign="own", variant="Z", recipient="r9")]
    want = processor.lookups(records)
    assert want.messages == [("", "m2")]  # m3 says all three itself: nothing to ask
    assert want.delivery_keys == [("", "m2", "complained", "complained-m2"), ("", "m3", "replied", "replied-m3")]
    out = processor.process(records, BatchContext(messages={("", "m2"): ("camp-0", "A", "r-2")}))
    assert [(r["message_id"], r["campaign"], r["variant"], r["recipient_id"]) for r in rows(out)] == [
        ("m2", "camp-0", "A", "r-2"), ("m3", "own", "Z", "r9")]


def test_the_same_event_twice_counts_once_in_one_batch_a_later_one_or_when_clickhouse_holds_it() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), T)
    first = processor.process([send("m1", 0), event("m1", 1, id_="evt-1"), event("m1", 2, id_="evt-1")])
    assert len(first.deliveries.rows) == 1
    assert processor.process([event("m1", 3, id_="evt-1")]).deliveries.rows == []  # remembered
    # Another type with the same id is another event.
    assert len(processor.process([event("m1", 4, "deferred", id_="evt-1")]).deliveries.rows) == 1
    fresh = HitProcessor(KEYRING, build_classifier(), T)  # after a restart: ClickHouse says it is stored
    stored = BatchContext(messages={("", "m1"): ("camp-1", "B", "r-m1")},
                          stored_delivery_keys=frozenset({("", "m1", "bounced", "evt-1")}))
    assert fresh.process([event("m1", 5, id_="evt-1")], stored).deliveries.rows == []


def test_an_event_of_an_unknown_message_is_a_dead_letter_and_counts_once_posted_again_after_its_send() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), T)
    unknown = processor.process([event("m9", 0, id_="evt-9")])
    assert unknown.deliveries.rows == []
    (letter,) = processor_letters(unknown)
    assert (letter["reason"], letter["src_topic"], letter["src_offset"]) == ("unattributed_delivery", T.deliveries, 0)
    again = processor.process([send("m9", 1), event("m9", 2, id_="evt-9")])
    assert [(r["message_id"], r["campaign"]) for r in rows(again)] == [("m9", "camp-1")]


def test_a_record_that_is_not_a_delivery_is_a_dead_letter() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), T)
    out = processor.process([Rec(T.deliveries, 0, 3, b'{"tenant": "", "message": "m", "type": "opened", "id": "x", '
                                                     b'"ts": 1790000000}')])
    assert out.deliveries.rows == []
    assert [d["reason"] for d in processor_letters(out)] == ["undecodable_delivery"]


def test_a_do_not_track_recipients_events_are_dropped() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), T, do_not_track=frozenset({recipient_hash("", "r-m1")}))
    out = processor.process([send("m1", 0), event("m1", 1)])
    assert (out.sends.rows, out.deliveries.rows, out.dead_letters.rows) == ([], [], [])


def test_addresses_in_a_servers_answer_are_redacted() -> None:
    assert redact_addresses("550 5.1.1 <jane.doe+x@mail.example.com>: Recipient address rejected") == \
        "550 5.1.1 <address>: Recipient address rejected"
    assert redact_addresses("mailbox full (user@example.org)") == "mailbox full (<address>)"
    assert redact_addresses("421 try again later") == "421 try again later"


def test_a_one_click_unsubscribe_is_also_its_messages_unsubscribed_event_of_our_own_platform() -> None:
    """The edge's /u POSTs are counted per message beside the platforms' list-unsubscribes: an event of
    platform "pixeltrack", attributed from the send like any other (here a send later in the batch)."""
    processor = HitProcessor(KEYRING, build_classifier(), T)
    u = Unsubscribe("", "hash-1", "camp-1", "m1", SENT + 600)
    out = processor.process([Rec(T.unsubscribes, 2, 7, u.encode()), send("m1", 0),
                             Rec(T.unsubscribes, 2, 8, Unsubscribe("", "hash-2", "camp-1", "", SENT).encode())])
    assert len(out.unsubscribes.rows) == 2
    assert rows(out) == [{
        "tenant": "", "message_id": "m1", "type": "unsubscribed", "event_id": "one-click@2026-11-30T01:03:20.000Z",
        "ts": SENT + 600, "campaign": "camp-1", "variant": "B", "recipient_id": "r-m1", "bounce": "", "smtp_code": 0,
        "diagnostic": "", "platform": ONE_CLICK, "src_topic": T.unsubscribes, "src_partition": 2, "src_offset": 7}]
    assert processor.process([Rec(T.unsubscribes, 2, 9, u.encode())]).deliveries.rows == []  # the same POST again
    ddl = (Path(__file__).resolve().parents[3] / "schemas" / "clickhouse" / "008_deliveries.sql").read_text()
    assert ddl.count(f"platform = '{ONE_CLICK}'") == 1
    assert ddl.count(f"platform != '{ONE_CLICK}'") == 1
