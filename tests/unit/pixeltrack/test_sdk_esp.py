"""pixeltrack.sender.esp: what a sender attaches per platform is what the receivers read back."""

from __future__ import annotations

import copy

import orjson
import pytest

from ingest.esp import mailgun, postmark, sendgrid, ses
from ingest.esp.common import Batch, Request
from pixeltrack.sender.esp import (
    identifiers,
    mailgun_variables,
    mailgun_variables_header,
    postmark_metadata,
    sendgrid_custom_args,
    ses_tags,
)
from pixeltrack.sender.sdk import Message, Tracker, prepare
from schemas.records import RawHit
from schemas.sends import Send
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.esp import fixture

SEND = Send(tenant="", campaign="spring", variant="B", message="m-42", recipient="r/42 ü", sent_at=1_795_990_000.25,
            mailbox_domain="", links=1)


def test_identifiers_are_the_sends() -> None:
    assert identifiers(SEND) == {"pt_m": "m-42", "pt_c": "spring", "pt_v": "B", "pt_r": "r/42 ü",
                                 "pt_s": "1795990000250"}
    assert mailgun_variables(SEND)["v:pt_m"] == "m-42"
    assert orjson.loads(mailgun_variables_header(SEND)) == identifiers(SEND)
    assert {t["Name"]: t["Value"] for t in ses_tags(SEND)}["pt_r"].startswith("pt64_")  # "/", " " and "ü"
    assert {t["Name"]: t["Value"] for t in ses_tags(SEND)}["pt_m"] == "m-42"
    with pytest.raises(ValueError, match="Postmark takes at most 80"):
        postmark_metadata(Send("", "c", "", "m" * 81, "r", 1.0, "", 0))


def test_the_send_of_prepare_gives_the_same_ids_as_its_urls(keyring: Keyring) -> None:
    tracker = Tracker("https://t.example.com", keyring, hash_recipients=True)
    prepared = prepare(tracker, Message("spring", "m-1", "alice@example.com", sent_at=1_795_990_000_000))
    ids = identifiers(prepared.send)
    assert ids["pt_r"] == tracker.recipient_id("alice@example.com") != "alice@example.com"
    assert ids["pt_s"] == "1795990000000"


def _read_back(platform: str, keyring: Keyring) -> tuple[str, str, str, str, int]:
    b = Batch(Request(platform, "", "", keyring, 1_796_000_000.0), Topics())
    if platform == "sendgrid":
        sendgrid.one({**fixture("sendgrid")["events"]["open"], **sendgrid_custom_args(SEND)}, b)
    elif platform == "mailgun":
        event = copy.deepcopy(fixture("mailgun")["events"]["opened"])
        event["user-variables"] = {k.removeprefix("v:"): v for k, v in mailgun_variables(SEND).items()}
        mailgun.one(event, b)
    elif platform == "postmark":
        postmark.one({**fixture("postmark")["records"]["Open"], "Metadata": postmark_metadata(SEND)}, b)
    else:
        event = copy.deepcopy(fixture("ses")["events"]["Open"])
        event["mail"]["tags"].update({t["Name"]: [t["Value"]] for t in ses_tags(SEND)})
        ses.one(event, b)
    p = keyring.verify(RawHit.decode(b.records[0].value).token, "open")
    return p.message, p.campaign, p.variant, p.recipient, p.sent_at


@pytest.mark.parametrize("platform", ["sendgrid", "mailgun", "postmark", "ses"])
def test_each_platforms_receiver_reads_back_what_the_helper_attached(platform: str, keyring: Keyring) -> None:
    assert _read_back(platform, keyring) == ("m-42", "spring", "B", "r/42 ü", 1_795_990_000_250)
