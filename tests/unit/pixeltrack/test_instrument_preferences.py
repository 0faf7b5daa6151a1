"""The preferences placeholder: `instrument` puts each recipient's own /p/ link where the email asks."""

from __future__ import annotations

import html

from pixeltrack.sender.instrument import PREFERENCES_PLACEHOLDER, EmailPlan, instrument
from pixeltrack.sender.sdk import Message, Tracker
from schemas.tokens import Keyring, verify_preferences

BASE = "https://t.example.net"
EMAIL = ("<html><body><p>Hi</p><a href=\"https://shop.example.com/sale\">Sale</a>"
         f"<p><a href=\"{PREFERENCES_PLACEHOLDER}\">Tracking preferences</a> · {PREFERENCES_PLACEHOLDER}</p>"
         "</body></html>")


def test_each_recipient_gets_their_own_link_where_the_placeholder_was(keyring: Keyring) -> None:
    plan = EmailPlan.parse(EMAIL, tracker_base=BASE)
    assert [link.destination for link in plan.links] == ["https://shop.example.com/sale"]  # placeholder left alone
    tracker = Tracker(BASE, keyring)
    a = instrument(plan, tracker, Message("spring", "m-1", "r-1", sent_at=1_796_000_000_000),
                   preferences_text_version="v2026-03")
    b = instrument(plan, tracker, Message("spring", "m-2", "r-2", sent_at=1_796_000_000_000))
    assert PREFERENCES_PLACEHOLDER not in a.html
    assert a.html.count(html.escape(a.preferences)) == 2
    assert a.preferences != b.preferences
    ref = verify_preferences(keyring, a.preferences.removeprefix(f"{BASE}/p/"))
    assert (ref.recipient, ref.message, ref.campaign, ref.text_version) == ("r-1", "m-1", "spring", "v2026-03")
    # Everything else is as before: the email without the placeholder instruments the same.
    plain = EmailPlan.parse(EMAIL.replace(PREFERENCES_PLACEHOLDER, "X"), tracker_base=BASE)
    c = instrument(plain, tracker, Message("spring", "m-1", "r-1", sent_at=1_796_000_000_000))
    assert a.html.replace(html.escape(a.preferences), "X") == c.html
    assert c.preferences == ""


def test_a_preferences_link_already_in_an_email_is_not_wrapped(keyring: Keyring) -> None:
    done = instrument(EmailPlan.parse(EMAIL, tracker_base=BASE), Tracker(BASE, keyring),
                      Message("spring", "m-1", "r-1")).html
    again = EmailPlan.parse(done, tracker_base=BASE)
    assert [s.reason for s in again.skipped if "/p/" in s.href] == ["tracked"]
