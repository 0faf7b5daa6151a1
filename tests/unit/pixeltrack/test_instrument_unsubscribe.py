"""`instrument`'s one-click unsubscribe: each manifest row holds the RFC 8058 headers (List-Unsubscribe is the
SDK's /u/ URL), and both that URL and the email's own unsubscribe link take a mail client's POST at the edge."""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from pixeltrack.sender.campaign import instrument_campaign, parse_recipients
from pixeltrack.sender.instrument import EmailPlan
from pixeltrack.sender.sdk import Message, Tracker
from schemas.sends import Unsubscribe
from schemas.tokens import FLAG_NO_CLICK_ID, FLAG_UNSUBSCRIBE, Keyring
from tests.plugins.edge import EdgeUnderTest

BASE_URL = "http://t.example.com"
NOW = int(time.time() * 1000)  # the edge checks the tokens' expiry
HTML = ('<html><body><a href="https://shop.example/sale">Sale</a>'
        '<a href="https://shop.example/unsubscribe">Unsubscribe</a></body></html>')


def test_the_sdk_gives_the_one_click_headers(keyring: Keyring) -> None:
    tracker = Tracker(BASE_URL, keyring)
    m = Message("spring", "m-1", "r-1", sent_at=NOW)
    headers = tracker.unsubscribe_headers(m)
    assert headers == {"List-Unsubscribe": f"<{tracker.unsubscribe_url(m)}>",
                       "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def manifest_of(tmp_path: Path, tracker: Tracker, csv: str) -> list[dict[str, object]]:
    result = instrument_campaign(EmailPlan.parse(HTML, tracker_base=BASE_URL), tracker,
                                 parse_recipients(io.StringIO(csv)), tmp_path, campaign="spring", sent_at=NOW)
    return [orjson.loads(line) for line in result.manifest.read_bytes().splitlines()]


def unsubscribe_token(row: dict[str, object]) -> str:
    headers = row["headers"]
    assert isinstance(headers, dict)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith(f"<{BASE_URL}/u/")
    assert value.endswith(">")
    return str(value[1:-1].rsplit("/", 1)[1])


def test_every_manifest_row_holds_its_list_unsubscribe_headers(tmp_path: Path, keyring: Keyring) -> None:
    manifest = manifest_of(tmp_path, Tracker(BASE_URL, keyring), "recipient,consent\nr-1,granted\nr-2,denied\n")
    individual, aggregate = (keyring.verify(unsubscribe_token(row), "click") for row in manifest)
    assert (individual.recipient, individual.message, individual.campaign) == ("r-1", "spring-r-1", "spring")
    assert individual.flags == FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID
    # tracked in aggregate: whom to unsubscribe, and no message (as the SDK's unsubscribe_url)
    assert (aggregate.recipient, aggregate.message, aggregate.sent_at) == ("r-2", "", 0)


async def test_a_mail_client_unsubscribes_through_either_link_of_an_instrumented_email(
        tmp_path: Path, keyring: Keyring, edge_app: EdgeUnderTest) -> None:
    (row,) = manifest_of(tmp_path, Tracker(BASE_URL, keyring), "recipient\nr-1\n")
    body = (tmp_path / str(row["file"])).read_text()
    in_body = body.split('href="')[2].split('"')[0]  # the email's own unsubscribe link, wrapped
    assert in_body.startswith(f"{BASE_URL}/c/")
    for path in (f"/u/{unsubscribe_token(row)}", urlsplit(in_body).path):
        resp = await edge_app.client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert resp.status == 200, path
        assert "unsubscribed" in await resp.text()
        (record,) = await edge_app.records(1)
        u = Unsubscribe.decode(record.value)
        assert (record.topic, u.campaign, u.message, u.recipient) == ("unsubscribes", "spring", "spring-r-1", "r-1")
