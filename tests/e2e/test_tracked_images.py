"""Opens through the email's own images, in a real browser: an email instrumented with track_images is
opened in Debian's headless Chromium with images on; the edge (fast path and all) answers its pixel and
image fetches, the pipeline classifies them into chDB, and the message counts one human open — and still
one when its 1×1 pixel is removed, as when a client or a blocker drops pixels but loads content images."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from ingest.app import create_app
from ingest.fastpath import EdgeSite
from ingest.pixel import GIF
from ingest.publisher import QueuePublisher
from pixeltrack.sender.instrument import PIXEL_TAG, EmailPlan, instrument
from pixeltrack.sender.sdk import Message, Tracker
from schemas.records import RawHit, Record
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.e2e.test_dashboard import CHROMIUM, browse
from tests.integration.test_analytics import run_pipeline
from tests.plugins.clickhouse import ClickHouseDb

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's headless Chromium is not installed (apt-get install -y chromium)")

# A reader's Chrome. Headless Chromium says "HeadlessChrome" in its own UA, which the classifier rightly
# takes for automation; a person's browser does not, so the test browser wears a person's UA.
READER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
             "Safari/537.36")
CAMPAIGN = "images"
EMAIL = """<!doctype html>
<html><head><meta charset="utf-8"><title>Spring</title></head>
<body style="margin:0">
<table role="presentation" width="600"><tr><td>
<img src="{images}/logo.gif" width="180" height="48" alt="Northwind" style="display:block">
<img src="{images}/hero.gif" width="600" height="300" alt="Spring collection" style="display:block">
<p>Our spring collection is here.</p>
<a href="https://shop.example/spring"><img src="{images}/button.gif" width="200" height="40" alt="Shop"></a>
<img src="{images}/hero.gif" width="600" height="300" alt="Spring collection, again">
</td></tr></table>
</body></html>
"""


@dataclass
class Stand:
    edge: str  # the tracking base URL
    images: str  # where the original images (and the email) are served
    bus: asyncio.Queue[Record]
    served: dict[str, int]  # original image fetches by path

    async def records(self, n: int, timeout: float = 10.0) -> list[Record]:
        return [await asyncio.wait_for(self.bus.get(), timeout) for _ in range(n)]


@pytest.fixture
async def stand(settings: Settings, keyring: Keyring, tmp_path: Path) -> AsyncIterator[Stand]:
    """The real edge (its fast path) with the in-process transport, and a site holding the email's
    original images and the emails themselves, both on 127.0.0.1."""
    bus: asyncio.Queue[Record] = asyncio.Queue()
    edge_runner = web.AppRunner(create_app(settings, publisher=QueuePublisher(bus), keyring=keyring),
                                access_log=None)
    await edge_runner.setup()
    await EdgeSite(edge_runner, "127.0.0.1", 0).start()
    served: dict[str, int] = {}

    async def original(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name.endswith(".html"):
            return web.FileResponse(tmp_path / name)
        if not name.endswith(".gif"):
            raise web.HTTPNotFound()  # the browser's favicon.ico
        served[name] = served.get(name, 0) + 1
        return web.Response(body=GIF, content_type="image/gif")

    app = web.Application()
    app.router.add_get("/{name}", original)
    site_runner = web.AppRunner(app, access_log=None)
    await site_runner.setup()
    await web.TCPSite(site_runner, "127.0.0.1", 0).start()
    edge_port, site_port = edge_runner.addresses[0][1], site_runner.addresses[0][1]
    try:
        yield Stand(f"http://127.0.0.1:{edge_port}", f"http://127.0.0.1:{site_port}", bus, served)
    finally:
        await site_runner.cleanup()
        await edge_runner.cleanup()


def message_totals(db: ClickHouseDb, message: str) -> tuple[object, ...]:
    (row,) = db.rows(f"SELECT sent, opens_human, opens_proxy, opens_machine, opens_duplicate FROM message_totals "
                     f"FINAL WHERE message_id = '{message}'")
    return row


@pytest.mark.parametrize("with_pixel", [True, False], ids=["with-pixel", "pixel-removed"])
async def test_an_email_read_in_chromium_counts_one_human_open(
        stand: Stand, clickhouse: ClickHouseDb, settings: Settings, keyring: Keyring, tmp_path: Path,
        with_pixel: bool) -> None:
    message = f"m-{'pixel' if with_pixel else 'nopixel'}"
    plan = EmailPlan.parse(EMAIL.format(images=stand.images), tracker_base=stand.edge)
    email = instrument(plan, Tracker(stand.edge, keyring), Message(CAMPAIGN, message, "r-1"), track_images=True)
    assert (len(email.images), len(set(email.images))) == (4, 3)  # hero.gif twice: one token
    text = email.html
    pixel_tag = PIXEL_TAG.format(src=email.pixel)
    assert text.count(pixel_tag) == 1
    if not with_pixel:
        text = text.replace(pixel_tag, "")
        assert "/o/" not in text
    (tmp_path / f"{message}.html").write_text(text, encoding="utf-8")

    await browse(f"{stand.images}/{message}.html", tmp_path / "profile", budget_ms=2000,
                 extra_args=[f"--user-agent={READER_UA}"])

    # Every image was loaded through the edge: its 302 led the browser to the original.
    assert sorted(stand.served) == ["button.gif", "hero.gif", "logo.gif"]
    fetches = 3 + (1 if with_pixel else 0)  # distinct URLs: Chromium fetches hero.gif's once
    records = await stand.records(fetches)
    await asyncio.sleep(0.5)
    assert stand.bus.empty(), "more fetches reached the edge than the email has distinct images"
    kinds = sorted(RawHit.decode(r.value).kind for r in records)
    assert kinds == (["image"] * 3 + (["open"] if with_pixel else []))
    assert {RawHit.decode(r.value).ua for r in records} == {READER_UA}

    send = email.send()
    await run_pipeline(clickhouse, settings, keyring,
                       [Record(Topics().sends, message.encode(), send.encode()), *records])
    # One reading, one open: the first fetch counts, the others repeat it.
    assert message_totals(clickhouse, message) == (1, 1, 0, 0, fetches - 1)
    (summary,) = clickhouse.rows(f"SELECT delivered, unique_opens, unique_human_opens, opens_machine "
                                 f"FROM campaign_summary WHERE campaign = '{CAMPAIGN}'")
    assert summary == (1, 1, 1, 0)
    opens = clickhouse.rows(f"SELECT verdict, count() FROM hits WHERE message_id = '{message}' AND kind = 'open' "
                            "GROUP BY verdict ORDER BY verdict")
    assert opens == [("duplicate", fetches - 1), ("human", 1)]
