"""The preferences link /p/<token>: a GET (a person or a scanner) changes nothing, a POST records a Consent."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.client_ip import ClientIpResolver
from ingest.edge import Edge, RequestFacts
from ingest.pages import preferences_page
from ingest.publisher import QueuePublisher
from pixeltrack.sender.sdk import Message, Tracker
from schemas.consents import Consent
from schemas.records import DeadLetter, Record
from schemas.settings import Settings
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, PreferencesRef, mint_preferences
from schemas.topics import Topics
from tests.plugins.edge import EdgeUnderTest

BASE = "http://t.example.com"
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"


def prefs_path(keyring: Keyring, **kw: str) -> str:
    url = Tracker(BASE, keyring).preferences_url(Message("spring", "m-1", "r-1"), **kw)
    assert url.startswith(f"{BASE}/p/")
    return url.removeprefix(BASE)


async def test_get_shows_the_form_and_records_nothing(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    path = prefs_path(keyring, state="granted")
    for ua in (SCANNER_UA, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"):
        page = await edge_app.client.get(path, headers={"User-Agent": ua})
        assert page.status == 200
        assert page.headers["Cache-Control"] == "no-store"
        text = await page.text()
        assert 'method="post"' in text
        assert 'name="consent" value="granted"' in text
        assert 'name="consent" value="denied"' in text
        assert "When this email was sent, you allowed it." in text
    head = await edge_app.client.head(path)
    assert head.status in (200, 405)
    await asyncio.sleep(0.05)
    assert edge_app.bus.empty()  # nothing recorded by GETs or a HEAD


@pytest.mark.parametrize(("choice", "state", "text_version"), [("denied", "denied", ""),
                                                                 ("granted", "granted", "v2026-03"),
                                                                 (" Denied ", "denied", "")])
async def test_post_records_one_consent(edge_app: EdgeUnderTest, keyring: Keyring, choice: str, state: str,
                                        text_version: str) -> None:
    before = time.time()
    resp = await edge_app.client.post(prefs_path(keyring, text_version="v2026-03"), data={"consent": choice})
    assert resp.status == 200
    assert "Your choice is saved" in await resp.text()
    (record,) = await edge_app.records(1)
    assert record.topic == "consents"
    assert record.key == b"r-1"  # Topics.consents is keyed by recipient id
    c = Consent.decode(record.value)
    assert (c.tenant, c.recipient, c.state, c.source, c.text_version) == ("", "r-1", state, "preferences",
                                                                          text_version)
    assert before <= c.ts <= time.time()
    assert edge_app.bus.empty()


@pytest.mark.parametrize("form", [{}, {"consent": "maybe"}, {"List-Unsubscribe": "One-Click"}])
async def test_post_without_a_valid_choice_is_a_400_and_changes_nothing(edge_app: EdgeUnderTest, keyring: Keyring,
                                                                        form: dict[str, str]) -> None:
    resp = await edge_app.client.post(prefs_path(keyring), data=form)
    assert resp.status == 400
    assert "consent" in await resp.text()
    await asyncio.sleep(0.05)
    assert edge_app.bus.empty()


async def test_bad_tokens_are_404_and_dead_letters(edge_app: EdgeUnderTest, keyring: Keyring) -> None:
    path = prefs_path(keyring)
    token = path.removeprefix("/p/")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    pixel = Tracker(BASE, keyring).pixel_url(Message("c", "m", "r"))
    other_kind = pixel.removeprefix(f"{BASE}/o/").removesuffix(".gif")
    for bad, reason in ((forged, "bad_signature"), (other_kind, "wrong_kind"), ("junk%20here", "malformed")):
        resp = await edge_app.client.post(f"/p/{bad}", data={"consent": "denied"})
        assert resp.status == 404
        (record,) = await edge_app.records(1)
        letter = DeadLetter.decode(record.value)
        assert (letter.kind, letter.reason) == ("preferences", reason)


async def test_a_tenants_link_works_on_its_own_domain_only(settings: Settings) -> None:
    acme = Tenant("acme", ("t.acme.example",), "k1:" + "QUNNRS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg")
    registry = TenantRegistry({"acme": acme}, Keyring({"d1": b"default-secret-0123456789abcdef"}, "d1"))
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus), tenants=registry)
    token = mint_preferences(acme.keyring(), PreferencesRef("acme", "r-9"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        elsewhere = await client.post(f"/p/{token}", data={"consent": "denied"})
        assert elsewhere.status == 404
        assert DeadLetter.decode((await asyncio.wait_for(bus.get(), 5)).value).reason == "unknown_key"
        # Signed with the default keys but naming acme: a forgery anywhere.
        claimed = mint_preferences(registry.default, PreferencesRef("acme", "r-9"))  # type: ignore[arg-type]
        assert (await client.post(f"/p/{claimed}", data={"consent": "denied"})).status == 404
        assert DeadLetter.decode((await asyncio.wait_for(bus.get(), 5)).value).reason == "wrong_tenant"
        home = await client.post(f"/p/{token}", data={"consent": "denied"}, headers={"Host": "t.acme.example"})
        assert home.status == 200
        c = Consent.decode((await asyncio.wait_for(bus.get(), 5)).value)
        assert (c.tenant, c.recipient, c.state) == ("acme", "r-9", "denied")


def test_page_escapes_and_says_nothing_it_does_not_know() -> None:
    assert "When this email was sent" not in preferences_page("")
    assert "you had not chosen yet" in preferences_page("unknown")
    assert "<script" not in preferences_page("<script>")


class _FullForwarder:
    """A forwarder whose journal is at its bound: nothing submitted is kept."""

    def __init__(self) -> None:
        self.submitted: list[Record] = []

    def submit(self, record: Record) -> bool:
        self.submitted.append(record)
        return False


def test_a_choice_that_cannot_be_kept_is_never_confirmed(keyring: Keyring) -> None:
    forwarder = _FullForwarder()
    edge = Edge(TenantRegistry({}, keyring), forwarder, ClientIpResolver([]), "e", Topics())  # type: ignore[arg-type]
    token = prefs_path(keyring).removeprefix("/p/")
    facts = RequestFacts("POST", f"/p/{token}", "t.example.com", "127.0.0.1", None, "", {}, time.time())
    assert edge.preferences(facts, token, "denied").kind == "try_again"
    assert edge.preferences(facts._replace(method="GET"), token, None).kind == "form"
    assert len(forwarder.submitted) == 1  # the POST's attempt only
