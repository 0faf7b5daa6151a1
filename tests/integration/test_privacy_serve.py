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
    """One recipient's links, minted with serve's own keys, and every token minted for them."""

    def __init__(self, who: str, edge: str, keyring: Keyring) -> None:
        self.who = who
        self.edge = edge
        self.keyring = keyring
        self.tracker = Tracker(edge, keyring)
        self.sent_ms = int((time.time() - 3600) * 1000)
        # message ids that do not spell the recipient's id (`unsubscribes` keeps message ids: see below)
        self.message = Message("spring", f"m-{uuid.uuid4().hex[:12]}", who, "A", sent_at=self.sent_ms)
        self.prepared = prepare(self.tracker, self.message, [PRICING])
        self.links = [self.prepared.pixel, *self.prepared.clicks, self.tracker.unsubscribe_url(self.message),
                      self.tracker.preferences_url(self.message)]

    def token(self, kind: str = "open", **fields: Any) -> str:
        url = PRICING if kind != "open" else ""
        payload = TokenPayload(kind, "", "spring", "A", self.message.message, self.who,  # type: ignore[arg-type]
                               fields.pop("sent_at", self.sent_ms), fields.pop("expires_at", 0), url)
        minted = self.keyring.mint(payload)
        self.links.append(minted)
        return minted

    def junk(self) -> list[str]:
        """Fetches the edge keeps as dead letters: expired, of the wrong kind, in every shape forget must
        find, and one the processors make a letter of (an impossible send time); and a pixel whose every
        character is percent-encoded (the edge's router decodes it: an open)."""
        click_id = mint_click_ref(self.keyring, ClickRef("", "spring", "A", self.message.message, self.who, "h", "l"))
        expired_preferences = mint_preferences(self.keyring, PreferencesRef("", self.who, "spring", expires_at=1))
        self.links += [click_id, expired_preferences]
        return [f"/o/{self.token(expires_at=1)}.gif", f"/p/{expired_preferences}", f"/c/{self.token()}",
                f"/o/x.gif?t={self.token()}", f"/o//{self.token()}.gif", f"/c/junk?u={self.token('click')}",
                "/o/" + self.token().replace(".", "%25252E") + ".gif", "/o/" + every_char_encoded(self.token(), 1),
                f"/o/{self.who}.gif",
                f"/o/{self.token(sent_at=10**16)}.gif", f"/c/x?cid={click_id}"]

    def payloads(self) -> dict[str, bytes]:
        out = {}
        for i, link in enumerate(self.links):
            token = link.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gif")
            out[f"payload {i}"] = token.split(".")[1].encode()
        return out


async def fetch(http: aiohttp.ClientSession, url: str, method: str = "GET", **kw: Any) -> None:
    async with http.request(method, url, allow_redirects=False, headers={"User-Agent": CHROME}, **kw) as resp:
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


async def test_after_forget_no_file_of_the_serve_data_folder_names_the_recipient(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    receiver = await Receiver(SECRET).start()
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_text(receiver.url))
    data = tmp_path / "data"
    s = settings.model_copy(update={"triggers_rules": rules, "triggers_settle_seconds": 0.3,
                                    "triggers_max_attempts": 1, "dead_letter_samples": 1000,
                                    "batch_max_ms": 100})
    stop = asyncio.Event()
    task = asyncio.create_task(serve(s, data, "127.0.0.1", 0, api_port=0, dashboard_port=0, stop=stop,
                                     announce=False))
    target, other = f"erin-{uuid.uuid4().hex[:10]}", f"olaf-{uuid.uuid4().hex[:10]}"
    try:
        await eventually(lambda: (data / "serve.json").exists() or task.done(), 60, "serve started")
        assert not task.done(), task
        info = ServeInfo.read(data)
        assert info is not None
        keyring = keyring_for(s, data)
        people = {who: Person(who, info.edge_url, keyring) for who in (target, other)}

        async def stored(sql: str) -> int:
            """Rows `sql` finds, asked through serve's admin endpoint (from a thread: serve runs on this loop)."""
            answer = await asyncio.to_thread(admin_post, info, "/query", {"sql": sql, "parameters": {}}, 30)
            return len(answer["rows"])

        async def until(sql: str, more_than: int, what: str) -> None:
            deadline = time.monotonic() + 60
            while await stored(sql) <= more_than:
                assert time.monotonic() < deadline, f"{what} not met within 60s"
                await asyncio.sleep(0.2)

        async def everything(p: Person) -> None:
            async with aiohttp.ClientSession() as http:
                await fetch(http, p.prepared.pixel)
                await fetch(http, p.prepared.clicks[0])
                for path in p.junk():
                    await fetch(http, p.edge + path)
                await fetch(http, p.links[2], "POST", data={"List-Unsubscribe": "One-Click"})
                await fetch(http, p.links[3], "POST", data={"consent": "denied"})

        await asyncio.to_thread(ApiClient(info.api_url, info.api_key).register_sends,
                                [p.prepared.send for p in people.values()])
        for p in people.values():
            await everything(p)
        await until("SELECT 1 FROM dead_letters", 19, "every letter stored")  # ten each
        await eventually(lambda: len({c.payload["recipient"] for c in receiver.accepted
                                      if c.rule == "consent.changed"}) == 2, 60, "the consent webhooks")
        journals = [data / "triggers", data / "recipient-events"]
        await eventually(lambda: all(files_holding(j, {"t": target.encode(), "o": other.encode()}).keys() == {"t", "o"}
                                     for j in journals), 60, "both in both journals")
        # the control: before forget the id is in chDB's files and in the journals
        assert files_holding(data / "chdb", {"id": target.encode()})

        deleted = (await asyncio.to_thread(admin_post, info, "/forget", {"recipient": target, "tenant": ""},
                                           600))["deleted"]
        assert deleted["dead_letters"] == 10
        assert deleted["trigger_journal_lines"] >= 3
        assert deleted["consents"] >= 1

        # afterwards: all of it again, for both (theirs shows when it is processed)
        theirs = f"SELECT 1 FROM dead_letters WHERE position(path, '{other}') > 0"
        before = await stored(theirs)
        for p in people.values():
            p.prepared = prepare(p.tracker, p.message, [PRICING])
            p.links += [p.prepared.pixel, *p.prepared.clicks]
            await everything(p)
        await until(theirs, before, "the other's late letters stored")
        await asyncio.sleep(2.0)  # the triggers settle and deliver what arrived
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)
        await receiver.stop()

    erin = people[target]
    plain = {"id": target.encode(),
             "sha256(tenant:id)": recipient_hash("", target).encode(),
             "sha256(id)": hashlib.sha256(target.encode()).hexdigest().encode(),
             "md5(id)": hashlib.md5(target.encode()).hexdigest().encode(),
             **erin.payloads()}
    assert files_holding(data, plain) == {}
    # the other recipient is everywhere the target was (so the files are searched where they would be)
    kept = files_holding(data, {"id": other.encode()})["id"]
    assert any("/chdb/" in f for f in kept)
    assert {Path(f).parent.name for f in kept} >= {"triggers", "recipient-events"}
