"""The site after the click, in a real browser: `pixeltrack serve` (edge, processors, chDB) on 127.0.0.1, a
second local origin playing the sender's site with the documented snippet, and Debian's headless Chromium
following a real /c/ click redirect there. The page view and the conversion reach ClickHouse attributed to
the click's message and recipient; the page reloads itself once, and the conversion still counts once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.plugins.waiting import eventually

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's headless Chromium is not installed (apt-get install -y chromium)")

BIN = Path(sys.executable).parent / "pixeltrack"
# A desktop Chrome's user agent: headless Chromium's own says HeadlessChrome, which is a machine's (a
# bot running the site's scripts: tests/unit/processors/test_site.py), and this test follows a person.
DESKTOP_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
              "Safari/537.36")

# The sender's pages. Their own script (served from their origin, as a strict CSP wants) queues the
# conversion before the site script loads, and reloads the page once, later, as a person might.
LANDING = """<!doctype html><html><head><meta charset="utf-8"><title>Thanks for your order</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' {edge};
 connect-src {edge}">
<script src="/shop.js"></script>
<script async src="{edge}/s.js"{attrs}></script>
</head><body><h1>Thanks for your order</h1><p id="loads"></p><p id="where"></p></body></html>"""
SHOP_JS = """window.pixeltrack = window.pixeltrack || function () {
  (window.pixeltrack.q = window.pixeltrack.q || []).push(arguments); };
pixeltrack('conversion', {value: 49.5, currency: 'EUR', id: 'order-1001'});
var loads = Number(sessionStorage.getItem('loads') || 0) + 1;
sessionStorage.setItem('loads', String(loads));
document.addEventListener('DOMContentLoaded', function () {
  document.getElementById('loads').textContent = 'loads=' + loads;
  document.getElementById('where').textContent = 'href=' + location.href;
});
if (loads === 1) setTimeout(function () { location.reload(); }, 2000);
"""


def run(*args: str) -> str:
    out = subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`pixeltrack serve` as a person runs it: the edge, API, processors and chDB in one process."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELTRACK_")}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--api-port", "0", "--dashboard-port", "0",
                                 "--data", str(data)], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    state = data / "serve.json"
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {log.read_text()}")
        time.sleep(0.1)
    yield data, json.loads(state.read_text())
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log.read_text()


@pytest.fixture
async def shop(served: tuple[Path, dict[str, Any]]) -> AsyncIterator[str]:
    """The sender's site: another origin on 127.0.0.1 (another port), serving the landing page."""
    edge = served[1]["edge_url"].rstrip("/")

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=LANDING.format(edge=edge, attrs=""), content_type="text/html")

    async def consent_first(request: web.Request) -> web.Response:
        # A site whose banner must be answered first, and the visitor does not answer it.
        return web.Response(text=LANDING.format(edge=edge, attrs=' data-consent="required"'), content_type="text/html")

    async def shop_js(request: web.Request) -> web.Response:
        return web.Response(text=SHOP_JS, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/thanks", landing)
    app.router.add_get("/eu/thanks", consent_first)
    app.router.add_get("/shop.js", shop_js)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def browse(url: str, profile: Path) -> str:
    """Follows `url` in headless Chromium (its redirects, the page's scripts and timers within the
    virtual time budget) and returns the DOM it ends with."""
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--user-agent={DESKTOP_UA}", "--virtual-time-budget=8000",
            "--dump-dom", url]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except BaseException:  # timed out or cancelled: no browser outlives its test
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def query(data: Path, sql: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run("query", "--data", str(data), "--format", "json", sql).splitlines()]


def edge_count(edge: str, kind: str, result: str) -> float:
    """pixeltrack_edge_hits_total{kind, result} as the edge's /metrics says."""
    with urllib.request.urlopen(edge.rstrip("/") + "/metrics") as resp:
        text = resp.read().decode()
    found = re.search(rf'pixeltrack_edge_hits_total\{{kind="{kind}",result="{result}"\}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


async def test_a_click_then_a_page_view_and_a_conversion_reach_clickhouse_once(
        served: tuple[Path, dict[str, Any]], shop: str, tmp_path: Path) -> None:
    data, info = served
    edge = info["edge_url"]
    urls = json.loads(run("link", "--data", str(data), "--base-url", edge, "--campaign", "spring", "--variant", "B",
                          "--message", "m-1", "--recipient", "r-1", "--url", f"{shop}/thanks?utm_source=email",
                          "--json"))
    dom = await browse(urls["clicks"][0], tmp_path / "profile")
    # The page loaded twice (its own reload), the second time without the click id in its address: the
    # script took it out after the first load, and the reload found it in the site's storage.
    assert "loads=2" in dom
    assert f"href={shop}/thanks?utm_source=email<" in dom

    visits: list[dict[str, Any]] = []

    def arrived() -> bool:
        visits[:] = query(data, "SELECT hit_id, kind, campaign, variant, message_id, recipient_id, link_url, "
                                "verdict, click_hit_id FROM hits WHERE kind IN ('click', 'visit') ORDER BY ts")
        return len(visits) == 3 and edge_count(edge, "conversion", "ok") == 2

    await eventually(arrived, 60, "a click, two page views and two conversion beacons")
    click, *views = visits
    assert (click["kind"], click["message_id"], click["recipient_id"], click["verdict"]) == (
        "click", "m-1", "r-1", "human")
    assert [(v["kind"], v["campaign"], v["variant"], v["message_id"], v["recipient_id"], v["link_url"],
             v["click_hit_id"]) for v in views] == [
        ("visit", "spring", "B", "m-1", "r-1", f"{shop}/thanks", click["hit_id"])] * 2
    # the first view is a person's; the reload, within seconds, a repeat of it or a page of its own
    assert views[0]["verdict"] == "human"
    assert views[1]["verdict"] in ("human", "duplicate")
    # both loads sent the conversion (the edge took two), and it counts once
    assert edge_count(edge, "conversion", "ok") == 2
    expected = [{"idempotency_key": "site:m-1:order-1001", "campaign": "spring", "variant": "B", "message_id": "m-1",
                 "recipient_id": "r-1", "click_hit_id": click["hit_id"], "value": 49.5, "currency": "EUR"}]
    sql = ("SELECT idempotency_key, campaign, variant, message_id, recipient_id, click_hit_id, value, currency "
           "FROM conversions")
    await eventually(lambda: query(data, sql) == expected, 30, "the conversion")
    # and stays once: the second's batch was written by now (the visits of the reload came with it), so a
    # few more batch intervals show nothing new
    await asyncio.sleep(3)
    assert query(data, sql) == expected
    assert query(data, "SELECT visits, pages, from_site FROM visit_stats INNER JOIN conversion_timing "
                       "USING (tenant, campaign, variant, message_id) WHERE message_id = 'm-1'") == [
        {"visits": 1, "pages": 1 if views[1]["verdict"] == "duplicate" else 2, "from_site": True}]


async def test_without_consent_nothing_individual_is_recorded(served: tuple[Path, dict[str, Any]], shop: str,
                                                              tmp_path: Path) -> None:
    data, info = served
    edge = info["edge_url"]
    urls = json.loads(run("link", "--data", str(data), "--base-url", edge, "--campaign", "spring", "--message", "m-2",
                          "--recipient", "r-2", "--url", f"{shop}/eu/thanks", "--json"))
    dom = await browse(urls["clicks"][0], tmp_path / "profile")
    assert "loads=2" in dom
    site = shop.removeprefix("http://")
    # the two page views are counted for the site, and nothing else: no visit, no conversion sent
    await eventually(lambda: query(data, "SELECT count() AS n FROM site_visits") == [{"n": 2}], 60, "site visits")
    assert query(data, "SELECT site, verdict, as_org FROM site_visits") == [
        {"site": site, "verdict": "human", "as_org": ""}] * 2
    assert query(data, "SELECT kind FROM hits") == [{"kind": "click"}]
    assert edge_count(edge, "conversion", "ok") == 0
    assert query(data, "SELECT count() AS n FROM conversions") == [{"n": 0}]
