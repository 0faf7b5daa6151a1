"""A hit an email platform reported (ingest/esp): classified like any other, its origin and the
platform's own machine flag kept on the row and in the classified event."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from processors.classify_file import build_classifier
from processors.pipeline import EVENT_COLUMNS, HitProcessor
from schemas.classified import ClassifiedEvent
from schemas.records import RawHit
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics
from tests.unit.processors.builders import CHROME, SENT

KEYRING = Keyring({"k1": b"unit-test-secret-0123456789"}, "k1")


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def record(ua: str, origin: str, machine: bool, hit_id: str) -> Rec:
    payload = TokenPayload("open", "", "spring", "A", "m-1", "r-1", int(SENT * 1000))
    raw = RawHit(hit_id, SENT + 3600, "open", "GET", "", "/v1/esp/sendgrid", KEYRING.mint(payload), "81.2.69.142",
                 ua, "esp", {}, origin=origin, origin_machine=machine)
    return Rec(Topics().hits_raw, 0, 7, raw.encode())


@pytest.mark.parametrize(("ua", "machine", "expected"), [
    # Apple's privacy prefetch (bare "Mozilla/5.0"), flagged by the platform too.
    ("Mozilla/5.0", True, ("machine", "apple_mpp", ["ua_bare_mozilla", "platform_machine_flag"])),
    # The platform's flag does not decide: a person's client stays a person's, the flag kept beside.
    (CHROME, True, ("human", "direct", ["no_machine_signal", "platform_machine_flag"])),
    (CHROME, False, ("human", "direct", ["no_machine_signal"])),
])
def test_the_platforms_flag_is_a_reason_beside_pixeltracks_verdict(ua: str, machine: bool,
                                                                   expected: tuple[str, str, list[str]]) -> None:
    processor = HitProcessor(KEYRING, build_classifier(), Topics(), publish_classified=True)
    out = processor.process([record(ua, "sendgrid", machine, f"sendgrid:{ua}:{machine}")])
    assert out.dead_letters.rows == []
    row = dict(zip(EVENT_COLUMNS, out.events.rows[0], strict=True))
    assert (row["verdict"], row["source"], row["reasons"]) == expected
    assert (row["origin"], row["edge"], row["host"]) == ("sendgrid", "esp", "")
    event = ClassifiedEvent.decode(out.classified[0].value)
    assert list(event.reasons) == expected[2]


def test_the_edges_hits_keep_their_bytes_and_an_empty_origin() -> None:
    raw = RawHit("h", 1.0, "open", "GET", "h", "/o/x", "t", "1.2.3.4", "ua", "e", {})
    assert b"origin" not in raw.encode()
    assert RawHit.decode(raw.encode()).origin == ""
    esp = RawHit("h", 1.0, "open", "GET", "h", "/o/x", "t", "1.2.3.4", "ua", "e", {}, origin="mailgun",
                 origin_machine=True)
    assert RawHit.decode(esp.encode()) == esp
    with pytest.raises(ValueError, match="origin"):
        RawHit.decode(esp.encode().replace(b"true", b'"yes"'))
