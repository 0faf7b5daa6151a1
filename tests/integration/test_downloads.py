"""Download links end to end, as a person runs them: `pixeltrack serve` (edge, processors, chDB), `link
--download`, real HTTP fetches. A fetch answers 302 to the document and stores one `download` event; a
scanner fetching every link and document of a message right after delivery is a machine; a person's
download a day after delivery is a person's; campaign_summary, link_stats and the report count them."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pixeltrack.compose.build import minting_keyring
from pixeltrack.sender.sdk import ApiClient, Message, Tracker
from schemas.sends import Send
from schemas.settings import Settings
from tests.integration.test_serve import NoRedirect, run, served  # noqa: F401 (served: a fixture)

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
PRICES = "https://files.example.com/price-list.pdf"
PAPER = "https://files.example.com/whitepaper.pdf"
DAY_MS = 86_400_000


def fetch(url: str, ua: str = "", accept: str = "") -> tuple[int, str]:
    """(status, Location) of one GET, redirects not followed."""
    headers = {"User-Agent": ua} if ua else {}
    if accept:
        headers["Accept"] = accept
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers)) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers.get("Location", "")


def query(data: Path, sql: str, rows: int, timeout: float = 45.0) -> list[dict[str, Any]]:
    """The rows of `sql` through the running serve, once there are `rows` of them."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = [json.loads(line) for line in run("query", "--data", str(data), "--format", "json", sql).splitlines()]
        if len(got) >= rows:
            return got
        time.sleep(0.3)
    return got


def test_link_download_fetch_stores_one_download_event(served: tuple[Path, str, Any]) -> None:  # noqa: F811
    data, edge, _ = served
    urls = json.loads(run("link", "--data", str(data), "--base-url", edge, "--campaign", "docs", "--message", "m-1",
                          "--recipient", "r-1", "--download", PRICES, "--json"))
    assert sorted(urls) == ["clicks", "downloads", "pixel"]
    assert urls["clicks"] == []
    assert [("/d/" in u) for u in urls["downloads"]] == [True]
    assert fetch(urls["downloads"][0], ua=CHROME) == (302, PRICES)  # no click id added to a document's address
    rows = query(data, "SELECT kind, campaign, message_id, recipient_id, link_url, verdict FROM hits", 1)
    time.sleep(1.0)  # anything more would have arrived by now
    rows = query(data, "SELECT kind, campaign, message_id, recipient_id, link_url, verdict FROM hits", 1)
    assert rows == [{"kind": "download", "campaign": "docs", "message_id": "m-1", "recipient_id": "r-1",
                     "link_url": PRICES, "verdict": "human"}]
    # A tampered token is no redirect and stores nothing.
    token = urls["downloads"][0]
    assert fetch(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), ua=CHROME) == (404, "")
    # Without --json, one URL a line: the pixel, then the links, then the downloads.
    lines = run("link", "--data", str(data), "--base-url", edge, "--campaign", "docs", "--message", "m-1",
                "--recipient", "r-1", "--url", "https://shop.example/", "--download", PRICES).splitlines()
    assert ["/o/" in lines[0], "/c/" in lines[1], "/d/" in lines[2], len(lines)] == [True, True, True, 3]


def test_a_scanner_burst_is_a_machine_and_a_download_a_day_later_a_person(
        served: tuple[Path, str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    data, edge, _ = served
    for name in [k for k in os.environ if k.startswith("PIXELTRACK_")]:
        monkeypatch.delenv(name)
    tracker = Tracker(edge, minting_keyring(Settings(), data, "", create=False))
    now = int(time.time() * 1000)
    scanned = Message("docs", "m-scan", "r-scan", variant="A", sent_at=now - 30_000)  # delivered 30 s ago
    read = Message("docs", "m-read", "r-read", variant="A", sent_at=now - DAY_MS)  # delivered yesterday
    info = json.loads((data / "serve.json").read_text())
    api = ApiClient(info["api_url"], info["api_key"])
    assert api.register_sends([Send("", "docs", "A", m.message, m.recipient, m.sent_at / 1000)
                               for m in (scanned, read)]) == 2

    # The scanner: every link and document of the message within a second, with a browser's UA.
    burst = [tracker.click_url(scanned, "https://shop.example/a"), tracker.download_url(scanned, PRICES),
             tracker.click_url(scanned, "https://shop.example/b"), tracker.download_url(scanned, PAPER)]
    answers = [fetch(url, ua=CHROME) for url in burst]
    assert [a[0] for a in answers] == [302] * 4
    assert [a[1].split("?")[0] for a in answers] == ["https://shop.example/a", PRICES, "https://shop.example/b", PAPER]
    # The reader, a day after delivery: opens the message, then downloads the price list.
    assert fetch(tracker.pixel_url(read), ua=CHROME, accept="image/avif,image/webp,image/*,*/*;q=0.8")[0] == 200
    assert fetch(tracker.download_url(read, PRICES), ua=CHROME) == (302, PRICES)

    sql = ("SELECT message_id, kind, link_url, verdict, source, reasons FROM hits "
           "WHERE message_id IN ('m-scan', 'm-read') ORDER BY message_id, ts")
    rows = query(data, sql, 6)
    time.sleep(1.0)  # revisions of the burst are written with the batch that made them
    rows = query(data, sql, 6)
    # Sorted: the burst's fetches can share a millisecond, so their order by time is not theirs to keep.
    verdicts = sorted((r["message_id"], r["kind"], r["verdict"], r["source"]) for r in rows)
    assert verdicts == sorted([
        ("m-read", "open", "human", "direct"), ("m-read", "download", "human", "direct"),
        ("m-scan", "click", "machine", "scanner"), ("m-scan", "download", "machine", "scanner"),
        ("m-scan", "click", "machine", "scanner"), ("m-scan", "download", "machine", "scanner")])
    assert all("link_burst" in r["reasons"] for r in rows if r["message_id"] == "m-scan")

    summary = query(data, "SELECT delivered, unique_downloads, downloads_human, downloads_filtered, download_rate, "
                          "unique_clicks, clicks_filtered FROM campaign_summary WHERE campaign = 'docs'", 1)
    assert summary == [{"delivered": 2, "unique_downloads": 1, "downloads_human": 1, "downloads_filtered": 2,
                        "download_rate": 0.5, "unique_clicks": 0, "clicks_filtered": 2}]
    links = query(data, "SELECT link, clicks_human, clicks_filtered, downloads_human, unique_downloads, "
                        "downloads_filtered FROM link_stats WHERE campaign = 'docs' ORDER BY link", 4)
    assert [tuple(r.values()) for r in links] == [
        (PRICES, 0, 0, 1, 1, 1), (PAPER, 0, 0, 0, 0, 1),
        ("https://shop.example/a", 0, 1, 0, 0, 0), ("https://shop.example/b", 0, 1, 0, 0, 0)]
    per_message = query(data, "SELECT message_id, downloads_human, downloads_filtered FROM message_totals FINAL "
                              "WHERE campaign = 'docs' ORDER BY message_id", 2)
    assert [tuple(r.values()) for r in per_message] == [("m-read", 1, 0), ("m-scan", 0, 2)]

    report = json.loads(run("report", "--data", str(data), "--campaign", "docs", "--format", "json",
                            "--metric", "download"))
    (variant,) = report["variants"]
    assert (variant["unique_downloads"], variant["downloads_filtered"], variant["download_rate"]) == (1, 2, 0.5)
    table = run("report", "--data", str(data), "--campaign", "docs")
    assert "unique downloads" in table
    assert "Filtered downloads by source" in table
