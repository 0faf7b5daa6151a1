"""`pixeltrack forget` through a running `serve` with triggers and recipient events: afterwards no file
under serve's data folder — chDB's, the trigger journals, their dead letters — holds the recipient's id,
a plain hash of it or the payload of any of their links, whatever arrives for them afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from pixeltrack.compose.build import keyring_for
from pixeltrack.compose.serve import serve
from pixeltrack.sender.sdk import ApiClient, Message, Tracker, prepare
from pixeltrack.serve_admin import admin_post
from pixeltrack.serve_state import ServeInfo
from schemas.privacy import recipient_hash
from schemas.settings import Settings
from schemas.tokens import ClickRef, Keyring, PreferencesRef, TokenPayload, mint_click_ref, mint_preferences
from tests.integration.test_forget_letters import every_char_encoded
from tests.plugins.waiting import eventually
from tests.unit.processors.builders import CHROME
from tests.unit.processors.triggers.receiver import Receiver, free_port

SECRET = "serve-erasure-secret-0123456789"
PRICING = "https://shop.example.com/pricing"


def rules_text(url: str) -> str:
    """first-open to a receiver that takes it; tell-sales to one that is down (its actions become dead
    letters at once); every recipient event to the receiver."""
    return f"""default_webhook = "crm"
[webhooks.crm]
url = "{url}"
secret = "{SECRET}"
[webhooks.down]
url = "http://127.0.0.1:{free_port()}/hook"
secret = "{SECRET}"
[tags.pricing]
url_contains = ["/pricing"]
[[rules]]
name = "first-open"
type = "first_open"
[[rules]]
name = "tell-sales"
type = "tagged_click"
tags = ["pricing"]
webhook = "down"
[recipient_events]
"""


class Person:
    """One recipient's email, minted with serve's own keys for the edge at `edge`, and every token minted
    for them."""

    def __init__(self, who: str, keyring: Keyring) -> None:
        self.who = who
        self.keyring = keyring
        self.sent_ms = int((time.time() - 3600) * 1000)
        # a message id that does not spell the recipient's id (`unsubscribes` keeps message ids)
        self.message = Message("spring", f"m-{uuid.uuid4().hex[:12]}", who, "A", sent_at=self.sent_ms)
        self.links: list[str] = []

    def token(self, kind: str = "open", **fields: Any) -> str:
        url = PRICING if kind != "open" else ""
        payload = TokenPayload(kind, "", "spring", "A", self.message.message, self.who,  # type: ignore[arg-type]
                               fields.pop("sent_at", self.sent_ms), fields.pop("expires_at", 0), url)
        minted = self.keyring.mint(payload)
        self.links.append(minted)
        return minted

    def fetches(self, edge: str) -> list[tuple[str, str, dict[str, str]]]:
        """(method, URL, form) of everything the recipient's email leads to: an open, a click, an
        unsubscribe and a withdrawn consent; fetches the edge keeps as dead letters (expired, of the wrong
        kind, in every shape forget must find, and one the processors make a letter of: an impossible
        send time); and a pixel whose every character is percent-encoded (the edge's router decodes it:
        an open)."""
        tracker = Tracker(edge, self.keyring)
        email = prepare(tracker, self.message, [PRICING])
        unsubscribe, preferences = tracker.unsubscribe_url(self.message), tracker.preferences_url(self.message)
        click_id = mint_click_ref(self.keyring, ClickRef("", "spring", "A", self.message.message, self.who, "h", "l"))
        expired_preferences = mint_preferences(self.keyring, PreferencesRef("", self.who, "spring", expires_at=1))
        self.links += [email.pixel, *email.clicks, unsubscribe, preferences, click_id, expired_preferences]
        paths = [f"/o/{self.token(expires_at=1)}.gif", f"/p/{expired_preferences}", f"/c/{self.token()}",
                 f"/o/x.gif?t={self.token()}", f"/o//{self.token()}.gif", f"/c/junk?u={self.token('click')}",
                 "/o/" + self.token().replace(".", "%25252E") + ".gif", "/o/" + every_char_encoded(self.token(), 1),
                 f"/o/{self.who}.gif", f"/o/{self.token(sent_at=10**16)}.gif", f"/c/x?cid={click_id}"]
        return [("GET", email.pixel, {}), ("GET", email.clicks[0], {}), *(("GET", edge + p, {}) for p in paths),
                ("POST", unsubscribe, {"List-Unsubscribe": "One-Click"}), ("POST", preferences, {"consent": "denied"})]

    def payloads(self) -> dict[str, bytes]:
        out = {}
        for i, link in enumerate(self.links):
            token = link.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gif")
            out[f"payload {i}"] = token.split(".")[1].encode()
        return out


async def fetch_all(edge: str, p: Person) -> None:
    async with aiohttp.ClientSession() as http:
        for method, url, form in p.fetches(edge):
            async with http.request(method, url, allow_redirects=False, headers={"User-Agent": CHROME},
                                    data=form or None) as resp:
                assert resp.status < 500, (url, resp.status)


def files_holding(folder: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root, _, names in os.walk(folder):
        for n in names:
            try:
                data = (Path(root) / n).read_bytes()
            except OSError:  # removed while walking
                continue
            for label, needle in needles.items():
                if needle in data:
                    found.setdefault(label, []).append(str(Path(root) / n))
    return found


class Served:
    """A serve running in this process on `data`, and its admin endpoint (asked from a thread: serve runs
    on this event loop)."""

    def __init__(self, settings: Settings, data: Path) -> None:
        self.settings = settings
        self.data = data
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.info: ServeInfo | None = None

    async def __aenter__(self) -> Served:
        self.task = asyncio.create_task(serve(self.settings, self.data, "127.0.0.1", 0, api_port=0,
                                              dashboard_port=0, stop=self.stop, announce=False))
        await eventually(lambda: ServeInfo.read(self.data) is not None or self.task is None or self.task.done(),
                         60, "serve started")
        assert not self.task.done(), self.task
        self.info = ServeInfo.read(self.data)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 120)

    async def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.info is not None
        return await asyncio.to_thread(admin_post, self.info, path, body, 600)

    async def count(self, sql: str) -> int:
        return len((await self.admin("/query", {"sql": sql, "parameters": {}}))["rows"])

    async def until(self, sql: str, more_than: int, what: str) -> None:
        deadline = time.monotonic() + 60
        while await self.count(sql) <= more_than:
            assert time.monotonic() < deadline, f"{what} not met within 60s"
            await asyncio.sleep(0.2)


async def test_after_forget_no_file_of_the_serve_data_folder_names_the_recipient(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    """Before forget the recipient is in chDB's files and both journals; forget; all of it again (and
    the other recipient's, so that what is processed shows); serve restarted, all of it again; then no
    file of the data folder holds the id, plain hashes of it or the payload of any of its tokens."""
    receiver = await Receiver(SECRET).start()
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_text(receiver.url))
    data = tmp_path / "data"
    s = settings.model_copy(update={"triggers_rules": rules, "triggers_settle_seconds": 0.3,
                                    "triggers_max_attempts": 1, "dead_letter_samples": 1000,
                                    "batch_max_ms": 100})
    target, other = f"erin-{uuid.uuid4().hex[:10]}", f"olaf-{uuid.uuid4().hex[:10]}"
    keyring = keyring_for(s, data)
    people = [Person(target, keyring), Person(other, keyring)]
    theirs = f"SELECT 1 FROM dead_letters WHERE position(path, '{other}') > 0"  # the bare-id letter
    try:
        async with Served(s, data) as served:
            assert served.info is not None
            await asyncio.to_thread(ApiClient(served.info.api_url, served.info.api_key).register_sends,
                                    [prepare(Tracker(served.info.edge_url, keyring), p.message).send for p in people])
            for p in people:
                await fetch_all(served.info.edge_url, p)
            await served.until("SELECT 1 FROM dead_letters", 19, "every letter stored")  # ten each
            await eventually(lambda: len({c.payload["recipient"] for c in receiver.accepted
                                          if c.rule == "consent.changed"}) == 2, 60, "the consent webhooks")
            for journal in (data / "triggers", data / "recipient-events"):
                await eventually(lambda: files_holding(journal, {"t": target.encode(), "o": other.encode()})  # noqa: B023
                                 .keys() == {"t", "o"}, 60, f"both in {journal.name}")
            assert files_holding(data / "chdb", {"id": target.encode()})  # the control

            deleted = (await served.admin("/forget", {"recipient": target, "tenant": ""}))["deleted"]
            assert deleted["dead_letters"] == 10
            assert deleted["trigger_journal_lines"] >= 3
            assert deleted["consents"] >= 1

            before = await served.count(theirs)
            for p in people:
                await fetch_all(served.info.edge_url, p)
            await served.until(theirs, before, "the other's late letters stored")
            await asyncio.sleep(2.0)  # the triggers settle and deliver what arrived
        async with Served(s, data) as again:
            assert again.info is not None
            before, accepted = await again.count(theirs), len(receiver.accepted)
            for p in people:
                await fetch_all(again.info.edge_url, p)
            await again.until(theirs, before, "the other's letters after the restart stored")
            # the later consent change of each still reaches the sender (and nothing of the target's is kept)
            await eventually(lambda: sum(c.rule == "consent.changed" for c in receiver.accepted[accepted:]) == 2,
                             60, "the consent webhooks after the restart")
            await asyncio.sleep(2.0)
    finally:
        await receiver.stop()

    plain = {"id": target.encode(),
             "sha256(tenant:id)": recipient_hash("", target).encode(),
             "sha256(id)": hashlib.sha256(target.encode()).hexdigest().encode(),
             "md5(id)": hashlib.md5(target.encode()).hexdigest().encode(),
             **people[0].payloads()}
    assert files_holding(data, plain) == {}
    # the other recipient is everywhere the target was (so the files are searched where they would be)
    kept = files_holding(data, {"id": other.encode()})["id"]
    assert any("/chdb/" in f for f in kept)
    assert {Path(f).parent.name for f in kept} >= {"triggers", "recipient-events"}
