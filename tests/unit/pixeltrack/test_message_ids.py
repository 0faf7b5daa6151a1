"""Message ids holding email addresses: every URL and row carries the message id, and hash_recipients does not
touch it, so the SDK warns (once, naming no address) as it does for recipient ids."""

from __future__ import annotations

import pytest

from pixeltrack.sender.recipient_ids import holds_email
from pixeltrack.sender.sdk import Message, Tracker, prepare
from schemas.tokens import Keyring

BASE_URL = "https://t.example.net"
KEYRING = Keyring({"k1": b"0123456789abcdef0123456789abcdef"}, "k1")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "message ids hold email addresses" in r.getMessage()]


@pytest.mark.parametrize("hash_recipients", [False, True])
def test_a_message_id_holding_an_address_is_warned_about_once(caplog: pytest.LogCaptureFixture,
                                                              hash_recipients: bool) -> None:
    tracker = Tracker(BASE_URL, KEYRING, hash_recipients=hash_recipients)
    for i in range(3):
        prepare(tracker, Message("spring", f"spring-2026-ana{i}@example.org", f"r-{i}"), ["https://shop.example/"])
    (warning,) = warnings_of(caplog)
    assert "ana" not in warning
    assert "…@example.org" in warning
    assert "recipient_id" in warning  # what to build them from instead


def test_ordinary_message_ids_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(BASE_URL, KEYRING)
    for message in ("m-1", "spring-2026-p-0123456789abcdef0123456789abcdef", "a@b", "2026@spring"):
        prepare(tracker, Message("spring", message, "r-1"), ["https://shop.example/"])
    # tracked in aggregate: its URLs carry no message id, so there is nothing to warn about
    prepare(tracker, Message("spring", "ana@example.org", "r-2", consent="denied"), ["https://shop.example/"])
    tracker.unsubscribe_url(Message("spring", "bo@example.org", "r-3", consent="denied"))
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(("text", "holds"), [
    ("ana@example.org", True), ("spring-ana@example.org", True), ("x/ana.b@mail.example.co.uk-2026", True),
    ("m-1", False), ("a@b", False), ("@example.org", False), ("ana@", False), ("", False),
])
def test_holds_email(text: str, holds: bool) -> None:
    assert holds_email(text) is holds
