"""The processors and consent: campaign-level hits, consent records, aggregate sends, and the anonymous mode
(PIXELTRACK_TRACKING=aggregate) in which no row keeps a message or recipient id."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from processors.anonymous import AGGREGATE_SEND_COLUMNS, CONSENT_COLUMNS
from processors.classify_file import build_classifier
from processors.pipeline import CONVERSION_COLUMNS, DEAD_LETTER_COLUMNS, EVENT_COLUMNS, HitProcessor
from schemas.aggregate import AggregateSends
from schemas.consents import Consent
from schemas.records import DeadLetter, RawHit
from schemas.sends import Conversion, Send, Unsubscribe
from schemas.tokens import Keyring, TokenPayload, aggregate_payload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, HOME_IP, IMG_ACCEPT, SENT

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")
T = Topics()


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def hit(payload: TokenPayload, hit_id: str, at: float, offset: int, ip: str = HOME_IP) -> Rec:
    raw = RawHit(hit_id, SENT + at, payload.kind, "GET", "t.example.com", f"/{payload.kind[0]}/x",
                 KEYRING.mint(payload), ip, CHROME, "edge-1", dict(IMG_ACCEPT))
    return Rec(T.hits_raw, 0, offset, raw.encode())


def rows(table_rows: list[object], columns: tuple[str, ...]) -> list[dict[str, object]]:
    return [dict(zip(columns, r, strict=True)) for r in table_rows]  # type: ignore[call-overload]


def test_campaign_level_hits_are_rows_without_ids_and_never_duplicates_of_one_another() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics(), publish_classified=True)
    pixel = aggregate_payload("open", "", "spring", "B", 0)
    # Two recipients behind one address and browser a second apart: one message's repeat would be a duplicate.
    out = processor.process([hit(pixel, "h1", 3600.0, 1), hit(pixel, "h2", 3601.0, 2)])
    events = rows(out.events.rows, EVENT_COLUMNS)
    assert [(e["hit_id"], e["message_id"], e["recipient_id"], e["sent_at"], e["campaign"], e["variant"],
             e["verdict"]) for e in events] == [("h1", "", "", 0.0, "spring", "B", "human"),
                                                ("h2", "", "", 0.0, "spring", "B", "human")]
    assert out.dead_letters.rows == []
    assert out.classified == []


def test_consents_and_aggregate_sends_become_rows() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    consent = Consent("acme", "r-1", "denied", SENT, "api", "2026-03")
    counted = AggregateSends("acme", "spring", "B", SENT - SENT % 3600, 40, "run-1/0")
    out = processor.process([Rec(T.consents, 3, 7, consent.encode()), Rec(T.aggregate_sends, 1, 9, counted.encode()),
                             Rec(T.consents, 3, 8, b'{"recipient": "r-2", "state": "maybe"}')])
    assert rows(out.consents.rows, CONSENT_COLUMNS) == [{
        "tenant": "acme", "recipient_id": "r-1", "state": "denied", "ts": SENT, "source": "api",
        "text_version": "2026-03", "src_topic": T.consents, "src_partition": 3, "src_offset": 7}]
    assert rows(out.aggregate_sends.rows, AGGREGATE_SEND_COLUMNS) == [{
        "tenant": "acme", "campaign": "spring", "variant": "B", "sent_at": SENT - SENT % 3600, "sends": 40,
        "key": "run-1/0", "src_topic": T.aggregate_sends, "src_partition": 1, "src_offset": 9}]
    (letter,) = rows(out.dead_letters.rows, DEAD_LETTER_COLUMNS)
    assert (letter["reason"], letter["src_offset"]) == ("undecodable_consent", 8)


def test_an_erased_recipients_consent_is_not_stored_again() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics())
    processor.forget_recipients([processor.recipient_hash("", "r-1")])
    out = processor.process([Rec(T.consents, 0, 1, Consent("", "r-1", "granted", SENT, "api").encode())])
    assert out.consents.rows == []


def test_the_anonymous_mode_keeps_no_message_or_recipient_id_anywhere() -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics(), tracking="aggregate", publish_classified=True)
    send = Send("", "spring", "A", "spring-A-r1", "r1", SENT, "gmail.com", 3)
    individual = TokenPayload("click", "", "spring", "A", "spring-A-r1", "r1", int(SENT * 1000), 0,
                              "https://shop.example.com/sale", "sale")
    forged = KEYRING.mint(individual)[:-4] + "AAAA"
    edge_letter = DeadLetter("e-1", SENT + 60, "edge", "bad_signature", "a token of 'spring-A-r1'", "click", "GET",
                             "t.example.com", f"/c/{forged}", HOME_IP, CHROME, "edge-1")
    records = [
        Rec(T.sends, 0, 1, send.encode()),
        Rec(T.sends, 0, 2, send.encode()),  # an API retry: counted once
        hit(individual, "h1", 7200.0, 3),
        Rec(T.conversions, 0, 4, Conversion("", "o-1", SENT + 8000, 30.0, "EUR", message="spring-A-r1").encode()),
        Rec(T.unsubscribes, 0, 5, Unsubscribe("", "hash-of-r1", "spring", "spring-A-r1", SENT + 9000).encode()),
        Rec(T.sends, 0, 6, b'{"campaign": "spring", "message": "spring-A-r2", "recipient": "r2", "sent_at": "no"}'),
        Rec(T.hits_dlq, 0, 7, edge_letter.encode()),
    ]
    out = processor.process(records)
    assert out.sends.rows == []
    assert rows(out.aggregate_sends.rows, AGGREGATE_SEND_COLUMNS) == [{
        "tenant": "", "campaign": "spring", "variant": "A", "sent_at": SENT - SENT % 3600, "sends": 1,
        "key": f"{T.sends}:0:1", "src_topic": T.sends, "src_partition": 0, "src_offset": 1}]
    (event,) = rows(out.events.rows, EVENT_COLUMNS)
    assert (event["message_id"], event["recipient_id"], event["sent_at"], event["variant"], event["verdict"]) == (
        "", "", SENT - SENT % 3600, "A", "human")
    (conversion,) = rows(out.conversions.rows, CONVERSION_COLUMNS)
    assert (conversion["campaign"], conversion["variant"], conversion["message_id"], conversion["recipient_id"],
            conversion["click_id"]) == ("spring", "A", "", "", "")  # attributed from the send, then anonymous
    assert [r[3] for r in out.unsubscribes.rows] == [""]
    assert out.classified == []
    letters = rows(out.dead_letters.rows, DEAD_LETTER_COLUMNS)
    assert sorted(str(d["reason"]) for d in letters) == ["bad_signature", "undecodable_send"]
    text = orjson.dumps(letters).decode()
    for identity in ("spring-A-r1", "spring-A-r2", '"r2"', forged.split(".")[1]):
        assert identity not in text
    edge = next(d for d in letters if d["reason"] == "bad_signature")
    assert (edge["path"], edge["detail"]) == ("/c/[redacted]", "a token of '…'")


def test_a_withdrawn_consent_makes_the_recipients_later_hits_anonymous_until_granted_again() -> None:
    from schemas.tenants import Tenant, TenantRegistry

    eu = Tenant("eu-shop", ("t.eu.example",), "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", region="eu")
    processor = HitProcessor(TenantRegistry({"eu-shop": eu}, KEYRING), build_classifier(), Topics())
    token = TokenPayload("open", "", "spring", "A", "spring-A-r1", "r1", int(SENT * 1000))
    send = Send("", "spring", "A", "spring-A-r1", "r1", SENT)

    def ids_of(hit_id: str, offset: int) -> tuple[object, object]:
        (event,) = rows(processor.process([hit(token, hit_id, 3600.0 + offset, offset)]).events.rows, EVENT_COLUMNS)
        return event["message_id"], event["recipient_id"]

    assert ids_of("h1", 1) == ("spring-A-r1", "r1")
    processor.consents_changed([("", "r1", "denied"), ("", "r2", "unknown"), ("eu-shop", "r3", "unknown")])
    assert ids_of("h2", 2) == ("", "")
    out = processor.process([Rec(T.sends, 0, 3, send.encode())])
    assert (out.sends.rows, len(out.aggregate_sends.rows)) == ([], 1)  # its send counts without an id
    assert processor._anonymous_for("", "r2") is False  # unknown means individual here...
    assert processor._anonymous_for("eu-shop", "r3") is True  # ...and aggregate for a tenant in the EU
    processor.consents_changed([("", "r1", "granted")])
    assert ids_of("h3", 4) == ("spring-A-r1", "r1")
