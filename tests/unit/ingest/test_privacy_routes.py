"""The edge's privacy and tenant answers: unsubscribe GET vs POST, do-not-track, tenants' domains, XFF."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from pixeltrack.sender.sdk import Message, Tracker
from schemas.privacy import keyed_recipient_hash, recipient_hash, recipient_key
from schemas.records import DeadLetter, RawHit, Record
from schemas.sends import Unsubscribe
from schemas.settings import Settings
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, TokenPayload
from tests.plugins.edge import EdgeUnderTest

NOW = int(time.time() * 1000)


async def test_unsubscribe_get_changes_nothing_post_records(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    url = Tracker("http://t.example.com", keyring).unsubscribe_url(Message("spring", "m-1", "r-1"))
    path = url.removeprefix("http://t.example.com")
    page = await edge_app.client.get(path)  # a scanner (or a person) following the link
    assert page.status == 200
    assert 'method="post"' in await page.text()
    assert edge_app.bus.empty()  # nothing recorded by a GET
    done = await edge_app.client.post(path, data={"List-Unsubscribe": "One-Click"})  # RFC 8058
    assert done.status == 200
    assert "unsubscribed" in await done.text()
    (record,) = await edge_app.records(1)
    assert record.topic == "unsubscribes"
    u = Unsubscribe.decode(record.value)
    # under the keyed hash, as erasures are: no plain hash of the id is kept
    assert (u.campaign, u.message, u.recipient_hash) == ("spring", "m-1",
                                                         keyed_recipient_hash(recipient_key(keyring), "", "r-1"))
    assert u.recipient == "r-1"  # for the sender's webhook (never stored in ClickHouse)


async def test_unsubscribe_needs_an_unsubscribe_token(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    ordinary = keyring.mint(TokenPayload("click", "", "c", "", "m", "r", NOW, url="https://example.com/"))
    resp = await edge_app.client.post(f"/u/{ordinary}")
    assert resp.status == 404
    (record,) = await edge_app.records(1)
    assert DeadLetter.decode(record.value).reason == "not_unsubscribe"


async def test_do_not_track_is_answered_and_not_kept(settings: Settings, keyring: Keyring, tmp_path: Path) -> None:
    dnt = tmp_path / "dnt.txt"
    dnt.write_text(recipient_hash("", "r-quiet") + "\n")
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings.model_copy(update={"do_not_track_file": dnt}), publisher=QueuePublisher(bus),
                     keyring=keyring)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        quiet = Tracker("http://x", keyring).pixel_url(Message("c", "m-1", "r-quiet")).removeprefix("http://x")
        loud = Tracker("http://x", keyring).pixel_url(Message("c", "m-2", "r-loud")).removeprefix("http://x")
        assert (await client.get(quiet)).status == 200
        assert (await client.get(loud)).status == 200
        record = await asyncio.wait_for(bus.get(), 5)
        await asyncio.sleep(0.2)
    assert record.key == b"m-2"
    assert bus.empty()


async def test_tenant_token_on_another_tenants_domain_never_redirects(settings: Settings) -> None:
    reg = TenantRegistry({
        "acme": Tenant("acme", ("t.acme.example",), "a1:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFB"),
        "globex": Tenant("globex", ("t.globex.example",), "g1:" + "R0dHR0dHR0dHR0dHR0dHR0dHR0dH"),
    })
    acme = reg.for_tenant("acme")
    assert acme is not None
    token = acme.mint(TokenPayload("click", "acme", "c", "", "m", "r", NOW, url="https://acme.example/"))
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus), tenants=reg)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        own = await client.get(f"/c/{token}", headers={"Host": "t.acme.example"}, allow_redirects=False)
        other = await client.get(f"/c/{token}", headers={"Host": "t.globex.example"}, allow_redirects=False)
        first, second = await asyncio.wait_for(bus.get(), 5), await asyncio.wait_for(bus.get(), 5)
    assert own.status == 302
    assert other.status == 404
    assert "Location" not in other.headers
    assert RawHit.decode(first.value).host == "t.acme.example"
    assert DeadLetter.decode(second.value).reason == "unknown_key"


async def test_forwarded_for_lines_are_folded(keyring: Keyring, settings: Settings) -> None:
    """A client's own X-Forwarded-For line must not win over what the trusted proxy appended."""
    bus: asyncio.Queue[Record] = asyncio.Queue()
    s = settings.model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})
    app = create_app(s, publisher=QueuePublisher(bus), keyring=keyring)
    pixel = Tracker("http://x", keyring).pixel_url(Message("c", "m", "r")).removeprefix("http://x")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await client.get(pixel, headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")])
        record = await asyncio.wait_for(bus.get(), 5)
    assert RawHit.decode(record.value).ip == "198.51.100.7"


async def test_an_unsubscribe_that_cannot_be_kept_is_not_confirmed(settings: Settings, keyring: Keyring,
                                                                   tmp_path: Path) -> None:
    """The spool at its bound: the POST must not say "You are unsubscribed" for what was not kept."""
    url = Tracker("http://t.example.com", keyring).unsubscribe_url(Message("spring", "m-1", "r-1"))
    bus: asyncio.Queue[Record] = asyncio.Queue()
    full = settings.model_copy(update={"spool_dir": tmp_path / "spool", "spool_max_bytes": 1})
    app = create_app(full, publisher=QueuePublisher(bus), keyring=keyring)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post(url.removeprefix("http://t.example.com"), data={"List-Unsubscribe": "One-Click"})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "60"
        assert "unsubscribed" not in await resp.text()
    assert bus.empty()


async def test_do_not_track_fetches_that_fail_leave_no_letter(settings: Settings, keyring: Keyring,
                                                              tmp_path: Path) -> None:
    """A do-not-track recipient's expired, wrong-kind, percent-encoded or other-tenant fetches are
    answered as anyone's (a pixel, a 404) and leave nothing, not even a dead letter; the same fetches of
    anyone else's tokens are dead letters."""
    dnt = tmp_path / "dnt.txt"
    dnt.write_text(recipient_hash("", "r-quiet") + "\n")
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings.model_copy(update={"do_not_track_file": dnt}), publisher=QueuePublisher(bus),
                     keyring=keyring)

    def fetches(recipient: str) -> list[tuple[str, int]]:
        expired = keyring.mint(TokenPayload("open", "", "c", "", "m", recipient, NOW, expires_at=NOW - 1))
        click = keyring.mint(TokenPayload("click", "", "c", "", "m", recipient, NOW, url="https://example.com/"))
        opened = keyring.mint(TokenPayload("open", "", "c", "", "m", recipient, NOW))
        return [(f"/o/{expired}.gif", 200), (f"/o/{click}.gif", 200), (f"/c/{opened}", 404),
                (f"/c/{opened.replace('.', '%2E')}", 404), (f"/u/{click}", 404), (f"/o/{opened}/extra", 200)]

    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path, status in fetches("r-quiet"):
            assert (await client.get(path, allow_redirects=False)).status == status, path
        await asyncio.sleep(0.3)
        assert bus.empty()
        for path, status in fetches("r-loud"):
            assert (await client.get(path, allow_redirects=False)).status == status, path
        letters = [DeadLetter.decode((await asyncio.wait_for(bus.get(), 5)).value) for _ in range(6)]
    assert sorted(d.reason for d in letters) == ["expired", "malformed", "not_unsubscribe", "wrong_kind", "wrong_kind",
                                                 "wrong_kind"]
