"""RFC 8058 one-click unsubscribes on the unsubscribe links `instrument` writes into the HTML (`/c/` links
flagged unsubscribe): a mail client that POSTs to one unsubscribes the recipient, as a POST to `/u/` does,
on both front ends; a POST to any other `/c/` link stays 405 and records nothing."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from pixeltrack.sender.instrument import EmailPlan, InstrumentedEmail, instrument
from pixeltrack.sender.sdk import Message, Tracker
from schemas.records import DeadLetter, RawHit
from schemas.sends import Unsubscribe
from schemas.tokens import FLAG_NO_CLICK_ID, FLAG_UNSUBSCRIBE, Keyring, TokenPayload
from tests.plugins.edge import EdgeUnderTest
from tests.unit.ingest import test_fastpath
from tests.unit.ingest.test_fastpath import CLICK, KEYRING, OPEN, Served, exchange, get

BASE = "http://t.example.com"
NOW = int(time.time() * 1000)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
HTML = ('<html><body><a href="https://shop.example/sale">Sale</a>'
        '<a href="https://shop.example/unsubscribe">Unsubscribe</a></body></html>')


def email_to(keyring: Keyring, consent: str = "") -> InstrumentedEmail:
    """The email as `instrument` writes it: a sale link and the email's own unsubscribe link, both /c/."""
    plan = EmailPlan.parse(HTML, tracker_base=BASE)
    assert [link.kind for link in plan.links] == ["click", "unsubscribe"]
    return instrument(plan, Tracker(BASE, keyring), Message("spring", "m-1", "r-1", sent_at=NOW, consent=consent))


async def test_a_one_click_post_to_the_emails_unsubscribe_link_unsubscribes_as_u_does(
        edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    email = email_to(keyring)
    sale, unsubscribe = (urlsplit(url).path for url in email.clicks)
    assert unsubscribe.startswith("/c/")
    done = await edge_app.client.post(unsubscribe, data=ONE_CLICK)
    (record,) = await edge_app.records(1)
    u_path = urlsplit(Tracker(BASE, keyring).unsubscribe_url(email.message)).path
    via_u = await edge_app.client.post(u_path, data=ONE_CLICK)
    (via_u_record,) = await edge_app.records(1)
    assert (done.status, await done.text(), done.headers["Cache-Control"]) == (
        via_u.status, await via_u.text(), via_u.headers["Cache-Control"])
    assert done.status == 200
    assert "unsubscribed" in await done.text()
    assert record.topic == via_u_record.topic == "unsubscribes"
    got, want = Unsubscribe.decode(record.value), Unsubscribe.decode(via_u_record.value)
    assert (got.tenant, got.recipient_hash, got.campaign, got.message, got.recipient) == (
        want.tenant, want.recipient_hash, want.campaign, want.message, want.recipient) == (
        "", want.recipient_hash, "spring", "m-1", "r-1")

    # A GET of it is still the click to the sender's own page, and unsubscribes nobody.
    page = await edge_app.client.get(unsubscribe, allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (302, "https://shop.example/unsubscribe")
    (hit,) = await edge_app.records(1)
    assert (hit.topic, RawHit.decode(hit.value).kind) == ("hits.raw", "click")

    # Any other link takes no POST: 405 as before, and nothing recorded.
    forged = unsubscribe[:-3] + ("AAA" if not unsubscribe.endswith("AAA") else "BBB")
    for path in (sale, forged, f"{unsubscribe}/extra"):
        other = await edge_app.client.post(path, data=ONE_CLICK)
        assert other.status == 405, path
        assert set(other.headers["Allow"].split(",")) == {"GET", "HEAD"}
    await asyncio.sleep(0.2)
    assert edge_app.bus.empty()


async def test_an_unsubscribe_link_naming_nobody_unsubscribes_nobody(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    """A message tracked in aggregate: its links name no recipient, so a POST cannot say whom to
    unsubscribe. Not a 200 for an unsubscribe of nobody, on /c/ or on /u/: a 404 and a dead letter."""
    email = email_to(keyring, consent="denied")
    assert email.aggregate
    token = urlsplit(email.clicks[1]).path.removeprefix("/c/")
    for path in (f"/c/{token}", f"/u/{token}"):
        resp = await edge_app.client.post(path, data=ONE_CLICK)
        assert resp.status == 404, path
        (record,) = await edge_app.records(1)
        assert (record.topic, DeadLetter.decode(record.value).reason) == ("hits.dlq", "no_recipient")


async def test_an_expired_unsubscribe_link_answers_a_post_as_u_does(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    token = keyring.mint(TokenPayload("click", "", "spring", "", "m-1", "r-1", NOW - 10, NOW - 1,
                                      "https://shop.example/unsubscribe", flags=FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID))
    answers = []
    for path in (f"/c/{token}", f"/u/{token}"):
        resp = await edge_app.client.post(path, data=ONE_CLICK)
        (record,) = await edge_app.records(1)
        answers.append((resp.status, await resp.text(), DeadLetter.decode(record.value).reason))
    assert answers[0] == answers[1]
    assert answers[0][::2] == (404, "expired")


# --------------------------------------------------------------------------- on a real socket


fast = test_fastpath.fast  # the edge on a real socket, with its fast path and as a plain aiohttp site
plain = test_fastpath.plain


def post(path: str, body: bytes = b"List-Unsubscribe=One-Click") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_the_fast_path_and_aiohttp_answer_a_post_to_a_c_link_alike(fast: Served, plain: Served) -> None:
    """The fast path takes only GET and HEAD: a POST on a connection it holds goes to aiohttp, which
    answers it as on a plain site (after a pixel the fast path answered on the same connection)."""
    unsubscribe = KEYRING.mint(TokenPayload("click", "", "c", "A", "m-3", "r-3", NOW, url="https://shop.example/u",
                                            flags=FLAG_UNSUBSCRIBE | FLAG_NO_CLICK_ID))
    raw = get(f"/o/{OPEN}.gif") + post(f"/c/{unsubscribe}") + post(f"/c/{CLICK}") + get(f"/c/{unsubscribe}")
    seen = {}
    for name, served in (("fast", fast), ("plain", plain)):
        answers = await exchange(served.port, raw, 4)
        assert [a[0] for a in answers] == [200, 200, 405, 302], name
        assert b"unsubscribed" in answers[1][2]
        assert set(answers[2][1]["allow"].split(",")) == {"GET", "HEAD"}
        (record,) = await served.records(1, "unsubscribes")
        u = Unsubscribe.decode(record.value)
        hits = [RawHit.decode(r.value).kind for r in await served.records(2)]
        seen[name] = ([(a[0], a[2]) for a in answers], (u.campaign, u.message, u.recipient), hits)
    assert seen["fast"] == seen["plain"]
    assert seen["fast"][1:] == (("c", "m-3", "r-3"), ["open", "click"])
