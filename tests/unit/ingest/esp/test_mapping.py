"""Each platform's documented example events (tests/fixtures/esp) map to the records pinned here."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from ingest.esp import mailgun, postmark, sendgrid, ses
from ingest.esp.common import Batch, Request, epoch, identity, smtp_code
from schemas.deliveries import Delivery
from schemas.esp import ses_tag_value
from schemas.records import REPLAY_HEADER, DeadLetter, RawHit
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.plugins.esp import fixture

IDS = {"pt_m": "m-42", "pt_c": "spring", "pt_v": "B", "pt_r": "r-42", "pt_s": "1500000000000"}
NOW = 1_796_000_000.0


def batch_for(platform: str, keyring: Keyring) -> Batch:
    return Batch(Request(platform, "", "", keyring, NOW, f"/v1/esp/{platform}"), Topics())


def outcome(b: Batch, keyring: Keyring) -> tuple[Any, ...]:
    """What one event became: ("delivery", type, id, ts, bounce, smtp, diagnostic), ("hit", ...), ..."""
    if not b.records:
        (kind,) = b.counts
        return (kind,)
    (record,) = b.records
    if record.topic == "deliveries":
        d = Delivery.decode(record.value)
        assert (d.tenant, d.message, d.campaign, d.variant, d.recipient) == ("", "m-42", "spring", "B", "r-42")
        assert record.key == b"m-42"
        return ("delivery", d.type, d.id, d.ts, d.bounce, d.smtp_code, d.diagnostic, d.platform)
    if record.topic == "hits.raw":
        h = RawHit.decode(record.value)
        payload = keyring.verify(h.token, h.kind)  # type: ignore[arg-type]
        assert (payload.tenant, payload.message, payload.campaign, payload.variant, payload.recipient,
                payload.sent_at) == ("", "m-42", "spring", "B", "r-42", 1_500_000_000_000)
        assert record.headers == ((REPLAY_HEADER, b"1"),)
        assert (h.method, h.host, h.edge) == ("GET", "", "esp")
        return ("hit", h.kind, h.id, h.received_at, h.ip, h.ua, payload.url, h.origin, h.origin_machine)
    letter = DeadLetter.decode(record.value)
    assert "@" not in letter.raw  # addresses are not kept
    return ("letter", letter.stage, letter.reason)


SG_UA = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)"
SG_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko) "
             "Version/7.0 Mobile/11D257 Safari/9537.53")
SENDGRID = {
    "processed": ("ignored",),
    "dropped": ("delivery", "bounced", "sendgrid:zmzJhfJgAfUSOW80yEbPyw==", 1513299569.0, "hard", 0,
                "dropped by SendGrid: Bounced Address", "sendgrid"),
    "delivered": ("delivery", "delivered", "sendgrid:rWVYmVk90MjZJ9iohOBa3w==", 1513299569.0, "", 250, "250 OK",
                  "sendgrid"),
    "deferred": ("delivery", "deferred", "sendgrid:t7LEShmowp86DTdUW8M-GQ==", 1513299569.0, "", 400,
                 "400 try again later", "sendgrid"),
    "bounce": ("delivery", "bounced", "sendgrid:6g4ZI7SA-xmRDv57GoPIPw==", 1513299569.0, "hard", 500,
               "500 unknown recipient", "sendgrid"),
    "blocked": ("delivery", "bounced", "sendgrid:6g4ZI7SA-xmRDv57GoPIPw==", 1513299569.0, "soft", 500,
                "500 unknown recipient", "sendgrid"),
    "open": ("hit", "open", "sendgrid:FOTFFO0ecsBE-zxFXfs6WA==", 1513299569.0, "255.255.255.255", SG_UA, "",
             "sendgrid", False),
    "click": ("hit", "click", "sendgrid:sendgrid_internal_event_id", 1249948800.0, "255.255.255.255", SG_IPHONE,
              "http://example.com/blog/news.html", "sendgrid", False),
    "spamreport": ("delivery", "complained", "sendgrid:37nvH5QBz858KGVYCM4uOA==", 1513299569.0, "", 0, "", "sendgrid"),
    "unsubscribe": ("delivery", "unsubscribed", "sendgrid:zz_BjPgU_5pS-J8vlfB1sg==", 1513299569.0, "", 0, "",
                    "sendgrid"),
    "group_unsubscribe": ("delivery", "unsubscribed", "sendgrid:ahSCB7xYcXFb-hEaawsPRw==", 1513299569.0, "", 0, "",
                          "sendgrid"),
    "group_resubscribe": ("ignored",),
    "account_status_change": ("ignored",),
}


@pytest.mark.parametrize("name", sorted(SENDGRID))
def test_sendgrid_documented_events(name: str, keyring: Keyring) -> None:
    event = {**fixture("sendgrid")["events"][name], **IDS}
    b = batch_for("sendgrid", keyring)
    sendgrid.one(event, b)
    assert outcome(b, keyring) == SENDGRID[name]


def test_sendgrid_machine_open_flag_and_the_edges_of_the_format(keyring: Keyring) -> None:
    event = {**fixture("sendgrid")["events"]["open"], **IDS, "sg_machine_open": True}
    b = batch_for("sendgrid", keyring)
    sendgrid.one(event, b)
    assert outcome(b, keyring)[-1] is True
    for odd, expected in [({**event, "event": "engagement_v9"}, ("letter", "esp", "esp_unknown_event")),
                          ({k: v for k, v in event.items() if not k.startswith("pt_")}, ("not_ours",)),
                          ({**event, "timestamp": "yesterday"}, ("letter", "esp", "esp_malformed_event")),
                          ({**event, "pt_s": "soon"}, ("letter", "esp", "esp_malformed_event")),
                          ({**event, "pt_c": ""}, ("letter", "esp", "esp_unattributed")),
                          ({**event, "pt_s": ""}, ("letter", "esp", "esp_unattributed")),
                          ({**fixture("sendgrid")["events"]["click"], **IDS, "url": "javascript:alert(1)"},
                           ("letter", "esp", "esp_bad_link")),
                          ("a string", ("letter", "esp", "esp_malformed_event"))]:
        b = batch_for("sendgrid", keyring)
        sendgrid.one(odd, b)
        assert outcome(b, keyring) == expected, odd


MG_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.31 (KHTML, like Gecko) Chrome/26.0.1410.43 Safari/537.31"
MAILGUN = {
    "accepted": ("ignored",),
    "delivered": ("delivery", "delivered", "mailgun:CPgfbmQMTCKtHW6uIWtuVe", 1521472262.908181, "", 250, "OK",
                  "mailgun"),
    "failed_permanent": ("delivery", "bounced", "mailgun:G9Bn5sl1TC6nu79C8C0bwg", 1521233195.375624, "hard", 0,
                         "Not delivering to previously bounced address", "mailgun"),
    "failed_temporary": ("delivery", "deferred", "mailgun:Fs7-5t81S2ONTDjCqB6LnQ", 1521472262.908181, "", 452,
                         "4.2.2 The email account that you tried to reach is over quota.", "mailgun"),
    "opened": ("hit", "open", "mailgun:Ase7i2zsRYeDXztHGENqRA", 1521243339.873676, "50.56.129.169", MG_UA, "",
               "mailgun", False),
    "opened_apple_bot": ("hit", "open", "mailgun:Ase7i2zsRYeDXztHGENqRB", 1652883435.279025, "17.58.0.1",
                         "Mozilla/5.0", "", "mailgun", True),
    "clicked": ("hit", "click", "mailgun:Ase7i2zsRYeDXztHGENqRA", 1521243339.873676, "50.56.129.169", MG_UA,
                "https://example.com/welcome", "mailgun", False),
    "unsubscribed": ("delivery", "unsubscribed", "mailgun:Ase7i2zsRYeDXztHGENqRC", 1521243339.873676, "", 0, "",
                     "mailgun"),
    "complained": ("delivery", "complained", "mailgun:-Agny091SquKnsrW2NEKUA", 1521233123.501324, "", 0, "",
                   "mailgun"),
}


@pytest.mark.parametrize("name", sorted(MAILGUN))
def test_mailgun_documented_events(name: str, keyring: Keyring) -> None:
    event = copy.deepcopy(fixture("mailgun")["events"][name])
    event["user-variables"] = {**event.get("user-variables", {}), **IDS}
    b = batch_for("mailgun", keyring)
    mailgun.one(event, b)
    assert outcome(b, keyring) == MAILGUN[name]


PM_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/35.0.1916.153 Safari/537.36")
PM_TS = 1572971634.907025  # 2019-11-05T16:33:54.9070259Z: Postmark's seven decimals, read to the microsecond
POSTMARK = {
    "Delivery": ("delivery", "delivered", None, PM_TS, "", 0,
                 "Test delivery webhook details", "postmark"),
    "Bounce": ("delivery", "bounced", "postmark:4323372036854775807", PM_TS, "hard", 0,
               "HardBounce: Test bounce details", "postmark"),
    "SpamComplaint": ("delivery", "complained", "postmark:42", PM_TS, "", 0, "", "postmark"),
    "Open": ("hit", "open", None, PM_TS, "188.2.95.4", PM_UA, "", "postmark", False),
    "Click": ("hit", "click", None, PM_TS, "8.8.8.8", PM_UA, "https://example.com", "postmark", False),
    "SubscriptionChange": ("delivery", "unsubscribed", None, 1580554414.416071, "", 0, "", "postmark"),
}


@pytest.mark.parametrize("name", sorted(POSTMARK))
def test_postmark_documented_records(name: str, keyring: Keyring) -> None:
    record = {**fixture("postmark")["records"][name], "Metadata": IDS}
    b = batch_for("postmark", keyring)
    postmark.one(record, b)
    got, expected = outcome(b, keyring), POSTMARK[name]
    if expected[2] is None:  # no id of Postmark's: a stable hash of the record's facts
        assert got[2].startswith("postmark:")
        assert len(got[2]) == len("postmark:") + 32
        b2 = batch_for("postmark", keyring)
        postmark.one(record, b2)
        assert outcome(b2, keyring)[2] == got[2]  # the same record posted again is the same event
        got, expected = got[:2] + got[3:], expected[:2] + expected[3:]
    assert got == expected


def test_postmark_bounce_types(keyring: Keyring) -> None:
    bounce = {**fixture("postmark")["records"]["Bounce"], "Metadata": IDS}
    for type_, expected in [("SoftBounce", ("bounced", "soft")), ("Transient", ("bounced", "soft")),
                            ("DMARCPolicy", ("bounced", "hard")), ("Unsubscribe", ("unsubscribed", "")),
                            ("AutoResponder", ("ignored",)), ("SomethingNew", ("esp", "esp_unknown_event"))]:
        b = batch_for("postmark", keyring)
        postmark.one({**bounce, "Type": type_}, b)
        got = outcome(b, keyring)
        assert (got[1], got[4]) == expected if got[0] == "delivery" else got[-len(expected):] == expected, type_
    b = batch_for("postmark", keyring)
    postmark.one({**fixture("postmark")["records"]["SubscriptionChange"], "Metadata": IDS, "SuppressSending": False}, b)
    assert outcome(b, keyring) == ("ignored",)


SES_OPEN_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) AppleWebKit/603.3.8 (KHTML, like Gecko) "
               "Mobile/14G60")
SES_CLICK_UA = ("Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 "
                "Safari/537.36")
SES = {
    "Delivery": ("delivery", "delivered", 1476919264.133, "", 250, "250 2.6.0 Message received", "ses"),
    "Bounce": ("delivery", "bounced", 1501893662.669, "hard", 550, "smtp; 550 5.1.1 user unknown", "ses"),
    "Complaint": ("delivery", "complained", 1501893662.669, "", 0, "", "ses"),
    "DeliveryDelay": ("delivery", "deferred", 1592267140.095, "", 421,
                      "smtp; 421 4.4.1 Unable to connect to remote host", "ses"),
    "Send": ("ignored",),
    "Open": ("hit", "open", 1502316019.652, "192.0.2.1", SES_OPEN_UA, "", "ses", False),
    "Click": ("hit", "click", 1502322685.57, "192.0.2.1", SES_CLICK_UA,
              "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html", "ses", False),
}


def ses_event(name: str, ids: dict[str, str] = IDS) -> dict[str, Any]:
    event = copy.deepcopy(fixture("ses")["events"][name])
    event["mail"]["tags"].update({k: [ses_tag_value(v)] for k, v in ids.items()})
    return event


@pytest.mark.parametrize("name", sorted(SES))
def test_ses_documented_events(name: str, keyring: Keyring) -> None:
    b = batch_for("ses", keyring)
    ses.one(ses_event(name), b)
    got = outcome(b, keyring)
    if got[0] != "ignored":
        assert got[2].startswith("ses:")
        got = got[:2] + got[3:]
    assert got == SES[name]


def test_ses_takes_the_send_time_from_the_event_when_none_was_attached(keyring: Keyring) -> None:
    b = batch_for("ses", keyring)
    ses.one(ses_event("Open", {k: v for k, v in IDS.items() if k != "pt_s"}), b)
    hit = RawHit.decode(b.records[0].value)
    assert keyring.verify(hit.token, "open").sent_at == 1502315989927  # mail.timestamp 2017-08-09T21:59:49.927Z


def test_ses_tag_values_that_ses_refuses_are_encoded_and_read_back(keyring: Keyring) -> None:
    ids = {**IDS, "pt_r": "ünïcode/recipient@x", "pt_m": "pt64_looks-encoded"}
    assert ses_tag_value(ids["pt_r"]).startswith("pt64_")
    b = batch_for("ses", keyring)
    ses.one(ses_event("Click", ids), b)
    payload = keyring.verify(RawHit.decode(b.records[0].value).token, "click")
    assert (payload.recipient, payload.message) == ("ünïcode/recipient@x", "pt64_looks-encoded")


def test_helpers() -> None:
    assert epoch("2019-11-05T16:33:54.9070259Z") == PM_TS
    assert epoch("2014-08-01T13:28:10.2735393-04:00") == 1406914090.273539
    assert epoch("1521243339.873676") == 1521243339.873676
    for bad in ("soon", True, None, 1e12, "1890-01-01T00:00:00Z"):
        with pytest.raises(ValueError, match=r"not a time|between 2000 and 2200"):
            epoch(bad)
    assert [smtp_code(t) for t in ("550 5.1.1 user unknown", "smtp; 421 4.4.1 x", "OK", 605, 250, "5.0.0")] == [
        550, 421, 0, 0, 250, 0]
    assert identity({"other": "x"}) is None
    assert identity({"pt_m": 5}) is None  # not text: absent
    assert identity({"pt_m": "m"}) is not None


def test_a_dead_letter_keeps_the_event_without_addresses(keyring: Keyring) -> None:
    b = batch_for("sendgrid", keyring)
    sendgrid.one({**fixture("sendgrid")["events"]["open"], "event": "brand_new"}, b)
    letter = DeadLetter.decode(b.records[0].value)
    assert (letter.stage, letter.reason, letter.edge) == ("esp", "esp_unknown_event", "esp")
    assert letter.detail == "sendgrid: event type 'brand_new' is not one pixeltrack knows"
    assert orjson.loads(letter.raw)["email"] == "<address>"
