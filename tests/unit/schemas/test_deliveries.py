"""Delivery events as the API and Kafka take them."""

from __future__ import annotations

import re

import pytest

from schemas.deliveries import Delivery

NOW = 1_790_000_000.0


def test_a_bounce_without_a_class_takes_it_from_its_smtp_code() -> None:
    hard = Delivery.from_api({"message": "m1", "type": "bounced", "smtp_code": 550}, "events[0]", NOW, "t")
    soft = Delivery.from_api({"message": "m1", "type": "bounced", "smtp_code": "421"}, "events[1]", NOW, "t")
    assert (hard.bounce, hard.final_bounce, hard.tenant) == ("hard", True, "t")
    assert (soft.bounce, soft.final_bounce, soft.smtp_code) == ("soft", False, 421)


def test_an_event_without_an_id_is_named_by_its_type_and_time() -> None:
    a = Delivery.from_api({"message": "m1", "type": "delivered", "ts": NOW}, "events[0]", 0.0)
    b = Delivery.from_api({"message": "m1", "type": "delivered", "ts": NOW}, "events[0]", 0.0)
    assert a.id == b.id == "delivered@2026-09-21T14:13:20.000Z"
    # without a time either: retried a second later (the API's clock), still the same event
    c = Delivery.from_api({"message": "m1", "type": "bounced"}, "events[0]", NOW)
    d = Delivery.from_api({"message": "m1", "type": "bounced"}, "events[0]", NOW + 1)
    assert c.id == d.id == "bounced"


def test_the_record_survives_kafka() -> None:
    d = Delivery.from_api({"message": "m1", "type": "complained", "id": "fbl-7", "campaign": "c"}, "events[0]", NOW,
                          platform="sendgrid")
    assert Delivery.decode(d.encode()) == d


@pytest.mark.parametrize(("item", "says"), [
    ({"message": "m1", "type": "opened"}, "events[0].type: 'opened' is not one of delivered"),
    ({"type": "delivered"}, "events[0].message: is required"),
    ({"message": "m1", "type": "delivered", "bounce": "hard"}, "only a bounced event has a bounce class"),
    ({"message": "m1", "type": "bounced", "bounce": "medium"}, "events[0].bounce: 'medium'"),
    ({"message": "m1", "type": "bounced", "smtp_code": 9999}, "events[0].smtp_code: 9999 is not an SMTP code"),
    ({"message": "m1", "type": "bounced", "smtp_code": True}, "events[0].smtp_code: must be a whole number"),
    ({"message": "m1", "type": "delivered", "ts": "yesterday"}, "events[0].ts: not an ISO-8601 time"),
])
def test_bad_items_are_refused_naming_the_field(item: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Delivery.from_api(item, "events[0]", NOW)


def test_a_kafka_value_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"delivery\.smtp_code: must be a whole number"):
        Delivery.decode(b'{"tenant":"","message":"m","type":"bounced","id":"x","ts":1790000000,"smtp_code":"5"}')
    with pytest.raises(ValueError, match="is not a time between 2000 and 2200"):
        Delivery.decode(b'{"tenant":"","message":"m","type":"delivered","id":"x","ts":1}')
