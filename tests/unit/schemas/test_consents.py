"""Consent records as the API, a CSV and Kafka take them."""

from __future__ import annotations

import re

import pytest

from schemas.consents import Consent, tracks_individually

NOW = 1_790_000_000.0


def test_an_item_becomes_a_record_that_survives_kafka() -> None:
    c = Consent.from_api({"recipient": "r1", "state": "Granted", "text_version": "2026-03"}, "consents[0]", NOW,
                         tenant="acme")
    assert (c.tenant, c.state, c.ts, c.source) == ("acme", "granted", NOW, "api")
    assert Consent.decode(c.encode()) == c


@pytest.mark.parametrize(("item", "says"), [
    ({"recipient": "r1", "state": "maybe"}, "consents[0].state: 'maybe' is not one of granted, denied, unknown"),
    ({"state": "denied"}, "consents[0].recipient: is required"),
    ({"recipient": "r1", "state": "denied", "text_version": "v" * 65}, "consents[0].text_version: longer than 64"),
])
def test_bad_items_are_refused_naming_the_field(item: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        Consent.from_api(item, "consents[0]", NOW)


@pytest.mark.parametrize(("state", "unknown_means", "individual"), [
    ("granted", "aggregate", True), ("denied", "individual", False),
    ("unknown", "aggregate", False), ("unknown", "individual", True),
])
def test_what_each_state_gets(state: str, unknown_means: str, individual: bool) -> None:
    assert tracks_individually(state, unknown_means) is individual
