"""Consent on the sender's side: the recipients file's consent column, campaign-level URLs for recipients
tracked in aggregate (every token decoded), what is registered for them, the SDK, and the edge's redirect."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pixeltrack.sender.campaign import (
    JsonlSends,
    RecipientsError,
    decode_record,
    instrument_campaign,
    parse_recipients,
)
from pixeltrack.sender.instrument import EmailPlan
from pixeltrack.sender.sdk import ApiClient, Message, Record, Tracker, prepare
from schemas.aggregate import AggregateSends
from schemas.consents import Consent
from schemas.sends import Send
from schemas.tokens import FLAG_NO_CLICK_ID, Keyring
from tests.plugins.edge import EdgeUnderTest
from tests.plugins.http import http_server

BASE_URL = "https://t.example.net"
EMAILS = Path(__file__).resolve().parents[2] / "fixtures" / "emails"
AT = 1_796_000_000_000  # the run's sent_at, epoch ms
TOKEN_URL = re.compile(r"https://t\.example\.net/([ocu])/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


def payload_of(token: str) -> list[object]:
    """A token's payload decoded by hand from its base64url JSON: whatever it says, signed or not."""
    body = token.split(".")[1]
    fields: list[object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return fields


def tokens_in(html: str) -> list[tuple[str, list[object]]]:
    """(route, payload) of every tracking URL in an email."""
    return [(route, payload_of(token)) for route, token in TOKEN_URL.findall(html.replace("&amp;", "&"))]


def test_the_consent_column_is_read_in_any_case_and_empty_means_unknown() -> None:
    rows = parse_recipients(io.StringIO("recipient,consent,consent_version\nr1,Granted,2026-03\nr2,DENIED,\n"
                                        "r3,,\nr4,unknown,v1\n"))
    assert [(r.recipient, r.consent, r.consent_version) for r in rows] == [
        ("r1", "granted", "2026-03"), ("r2", "denied", ""), ("r3", "", ""), ("r4", "unknown", "v1")]


def test_a_consent_that_is_not_a_state_names_its_line_and_column() -> None:
    with pytest.raises(RecipientsError, match=re.escape('list.csv: line 3, column 2 ("consent"): \'yes\' is not '
                                                        "one of granted, denied, unknown (or empty)")):
        parse_recipients(io.StringIO("recipient,consent\nr1,granted\nr2,yes\n"), "list.csv")


def campaign_of(tmp_path: Path, csv: str,
                tracker: Tracker) -> tuple[list[Record], dict[str, str], list[dict[str, object]]]:
    """instrument_campaign over the newsletter fixture: (records registered, email per recipient, manifest)."""
    registered: list[Record] = []
    result = instrument_campaign(EmailPlan.parse((EMAILS / "newsletter.html").read_bytes(), tracker_base=BASE_URL),
                                 tracker, parse_recipients(io.StringIO(csv)), tmp_path, campaign="spring",
                                 honeypot=True, register=registered.extend, sent_at=AT, batch_size=4)
    manifest = [json.loads(line) for line in result.manifest.read_text().splitlines()]
    emails = {str(m["recipient"]): (tmp_path / str(m["file"])).read_text() for m in manifest}
    return registered, emails, manifest


def test_half_denied_their_emails_carry_nothing_that_names_a_message_or_recipient(tmp_path: Path,
                                                                                  keyring: Keyring) -> None:
    csv = "recipient,variant,consent\n" + "".join(
        f"cust-{i},{'AB'[i % 2]},{'denied' if i < 6 else 'granted'}\n" for i in range(12))
    registered, emails, manifest = campaign_of(tmp_path, csv, Tracker(BASE_URL, keyring))
    for i in range(12):
        recipient, variant = f"cust-{i}", "AB"[i % 2]
        found = tokens_in(emails[recipient])
        assert len(found) >= 14  # the pixel, every wrapped link and the honeypot
        for route, fields in found:
            kind, _tenant, campaign, var, message, rcpt, sent_at = fields[:7]
            assert (kind, campaign, var) == ({"o": "o", "c": "c"}[route], "spring", variant)
            if i < 6:  # denied: not a message, a recipient nor a send time in any token
                assert (message, rcpt, sent_at) == ("", "", 0)
                if kind == "c":
                    assert isinstance(fields[10], int)
                    assert fields[10] & FLAG_NO_CLICK_ID
            else:
                assert (message, rcpt, sent_at) == (f"spring-{variant}-{recipient}", recipient, AT)
        if i < 6:
            assert recipient not in emails[recipient].replace(f"cust-{i}.html", "")
    # The denied of one variant got the very same email: nothing tells them apart.
    assert emails["cust-0"] == emails["cust-2"] == emails["cust-4"]
    assert emails["cust-1"] == emails["cust-3"] == emails["cust-5"] != emails["cust-0"]
    assert [(m["message"], m.get("tracking")) for m in manifest[:2]] == [("", "aggregate"), ("", "aggregate")]
    sends = [r for r in registered if isinstance(r, Send)]
    assert {s.recipient for s in sends} == {f"cust-{i}" for i in range(6, 12)}
    assert len(sends) == 6
    counts = [r for r in registered if isinstance(r, AggregateSends)]
    # batches of 4 emails: 0-3 (2 A, 2 B), 4-7 (4, 5 denied: 1 A, 1 B); none after
    assert sorted((a.variant, a.count) for a in counts) == [("A", 1), ("A", 2), ("B", 1), ("B", 2)]
    assert {a.sent_at for a in counts} == {1_795_996_800.0}  # the run's hour (AT is 2026-11-30T00:53:20Z)
    assert len({a.key for a in counts}) == 4
    assert not any("cust" in a.key for a in counts)
    consents = [r for r in registered if isinstance(r, Consent)]
    assert [(c.recipient, c.state, c.source, c.ts) for c in consents[:2]] == [
        ("cust-0", "denied", "csv", AT / 1000), ("cust-1", "denied", "csv", AT / 1000)]
    assert len(consents) == 12


def test_unknown_follows_the_tenants_meaning_and_the_installation_mode_overrides_consent(
        tmp_path: Path, keyring: Keyring) -> None:
    csv = "recipient,consent\nr1,\nr2,granted\nr3,denied\n"
    def tracking_of(tracker: Tracker, out: Path) -> list[str]:
        _, _, manifest = campaign_of(out, csv, tracker)
        return [str(m.get("tracking", "individual")) for m in manifest]
    assert tracking_of(Tracker(BASE_URL, keyring), tmp_path / "a") == ["individual", "individual", "aggregate"]
    assert tracking_of(Tracker(BASE_URL, keyring, unknown_consent="aggregate"), tmp_path / "b") == [
        "aggregate", "individual", "aggregate"]
    assert tracking_of(Tracker(BASE_URL, keyring, tracking="aggregate"), tmp_path / "c") == ["aggregate"] * 3


def test_a_sends_file_holds_sends_aggregate_sends_and_consents(tmp_path: Path, keyring: Keyring) -> None:
    records: list[Record] = [Send("", "c", "A", "m1", "r1", 1_796_000_000.0),
                             AggregateSends("", "c", "B", 1_795_996_800.0, 7, "i-1"),
                             Consent("", "r2", "denied", 1_796_000_000.0, "csv", "v3")]
    sink = JsonlSends(tmp_path / "sends.jsonl")
    sink(records)
    sink.close()
    assert [decode_record(line) for line in (tmp_path / "sends.jsonl").read_bytes().splitlines()] == records


def test_the_sdk_prepares_an_aggregate_send_and_an_unsubscribe_url_naming_only_the_recipient(keyring: Keyring) -> None:
    tracker = Tracker(BASE_URL, keyring)
    m = Message("spring", "m-9", "r-9", variant="B", sent_at=AT, consent="denied")
    prepared = prepare(tracker, m, ["https://shop.example.com/sale"])
    assert isinstance(prepared.send, AggregateSends)
    assert (prepared.send.campaign, prepared.send.variant, prepared.send.count, prepared.send.sent_at) == (
        "spring", "B", 1, 1_795_996_800.0)
    for url in (prepared.pixel, *prepared.clicks):
        assert payload_of(urlsplit(url).path.rsplit("/", 1)[1].removesuffix(".gif"))[4:7] == ["", "", 0]
    unsubscribe = payload_of(urlsplit(tracker.unsubscribe_url(m)).path.rsplit("/", 1)[1])
    assert unsubscribe[4:7] == ["", "r-9", 0]  # whom to unsubscribe; no message, no send time
    assert isinstance(prepare(tracker, Message("spring", "m-8", "r-8", sent_at=AT, consent="granted")).send, Send)
    with pytest.raises(ValueError, match="consent 'maybe' must be one of granted, denied, unknown"):
        Message("spring", "m-7", "r-7", consent="maybe")


@pytest.fixture
def recording_api() -> Iterator[tuple[str, list[tuple[str, dict[str, list[dict[str, object]]]]]]]:
    """An API on 127.0.0.1 that answers 202 and keeps (path, body) of every POST."""
    posts: list[tuple[str, dict[str, list[dict[str, object]]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.append((self.path, body))
            out = json.dumps({"accepted": len(next(iter(body.values())))}).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            return None

    with http_server(Handler) as url:
        yield url, posts


def test_the_sdk_posts_each_record_to_its_endpoint(
        recording_api: tuple[str, list[tuple[str, dict[str, list[dict[str, object]]]]]]) -> None:
    url, posts = recording_api
    api = ApiClient(url, "k")
    records: list[Record] = [Send("", "c", "A", "m1", "r1", 1_796_000_000.0),
                             AggregateSends("", "c", "B", 1_795_996_800.0, 7, "i-1"),
                             Send("", "c", "A", "m2", "r2", 1_796_000_000.0)]
    assert api.register_sends(records) == 3
    api.record_consent("r1", "denied", text_version="2026-03", ts=1_796_000_000.0)
    assert [(path, list(body), len(next(iter(body.values())))) for path, body in posts] == [
        ("/v1/sends", ["sends"], 2), ("/v1/aggregate-sends", ["aggregate_sends"], 1), ("/v1/consents", ["consents"], 1)]
    assert posts[1][1]["aggregate_sends"][0] == {"tenant": "", "campaign": "c", "variant": "B",
                                                 "sent_at": 1_795_996_800.0, "count": 7, "key": "i-1"}
    assert posts[2][1]["consents"][0] == {"tenant": "", "recipient": "r1", "state": "denied", "ts": 1_796_000_000.0,
                                          "source": "sdk", "text_version": "2026-03"}


async def test_the_edge_redirects_an_aggregate_link_without_a_click_id(edge_app: EdgeUnderTest,
                                                                       keyring: Keyring) -> None:
    tracker = Tracker("http://127.0.0.1", keyring)
    m = Message("spring", "m-1", "r-1", variant="A", consent="denied")
    click = tracker.click_url(m, "https://shop.example.com/sale?x=1")
    resp = await edge_app.client.get(urlsplit(click).path, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "https://shop.example.com/sale?x=1")
    (record,) = await edge_app.records(1)
    assert record.key == b"spring"  # keyed by campaign: there is no message
    individual = tracker.click_url(Message("spring", "m-1", "r-1", variant="A", consent="granted"),
                                   "https://shop.example.com/sale?x=1")
    resp = await edge_app.client.get(urlsplit(individual).path, allow_redirects=False)
    assert "pt_cid=" in resp.headers["Location"]  # the edge under test appends click ids to individual links


def test_a_preferences_link_of_an_aggregate_message_names_the_recipient_only(keyring: Keyring) -> None:
    from schemas.tokens import verify_preferences

    tracker = Tracker(BASE_URL, keyring)
    url = tracker.preferences_url(Message("spring", "m-9", "r-9", sent_at=AT, consent="denied"), "2026-11")
    ref = verify_preferences(keyring, urlsplit(url).path.rsplit("/", 1)[1])
    assert (ref.recipient, ref.campaign, ref.message, ref.state, ref.text_version) == (
        "r-9", "spring", "", "denied", "2026-11")
