"""The dashboard in a real browser: a simulated two-variant campaign through the pipeline into chDB, served
on 127.0.0.1 and read by Debian's headless Chromium. The numbers it shows are the truth's and
campaign_summary's, machines are split by source with their reasons and a drill-down lists example hits,
its script passes the Content-Security-Policy and swaps in new numbers while open."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pixeltrack.analytics.report import ab_verdict, fetch
from pixeltrack.dashboard import create_dashboard_app, query_with
from pixeltrack.dashboard.queries import SUMMARY_SQL, Query
from processors.writer import ClickHouseWriter
from schemas.reasons import reason as reason_label
from schemas.records import Record
from schemas.sends import Send
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics
from tests.integration.test_analytics import run_pipeline
from tests.integration.test_cookbook import write_city_db
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import Simulation, load_patterns, simulate

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's headless Chromium is not installed (apt-get install -y chromium)")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "labelled-hits.jsonl"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CAMPAIGN = "spring-sale"
LATE_SENDS = 25  # registered while the page is open: variant A's delivered must grow by this much
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Shown(HTMLParser):
    """What a page shows: the text of every element with data-metric, keyed by the nearest enclosing
    data-variant or data-campaign ("" for campaign-wide numbers), and of every data-verdict line."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.metrics: dict[tuple[str, str], str] = {}
        self.verdicts: dict[str, str] = {}
        self.chart_ids: list[str] = []
        self.polylines: dict[str, int] = {}
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._text: dict[int, list[str]] = {}
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and "chart" in a.get("class", "").split():
            self.chart_ids.append(a.get("id", ""))
        if tag == "polyline" and "data-series" in a:
            chart = next((s[1]["id"] for s in reversed(self._stack) if s[0] == "svg"), "")
            self.polylines[chart] = self.polylines.get(chart, 0) + 1
        if tag in VOID:
            return
        self._stack.append((tag, a))
        if "data-metric" in a or "data-verdict" in a:
            self._text[len(self._stack) - 1] = []

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            depth = len(self._stack) - 1
            open_tag, a = self._stack.pop()
            if depth in self._text:
                text = "".join(self._text.pop(depth)).strip()
                if "data-verdict" in a:
                    self.verdicts[a["data-verdict"]] = text
                else:
                    scope = next((s[1].get("data-variant") or s[1].get("data-campaign") or "" for s in
                                  reversed(self._stack) if "data-variant" in s[1] or "data-campaign" in s[1]), "")
                    self.metrics[(scope, a["data-metric"])] = text
            if open_tag == tag:
                return

    def handle_data(self, data: str) -> None:
        for parts in self._text.values():
            parts.append(data)


async def browse(url: str, profile: Path, *, screenshot: Path | None = None, budget_ms: int = 0,
                 extra_args: Sequence[str] = ()) -> str:
    """Loads `url` in headless Chromium and returns the DOM after load (and after `budget_ms` of the
    page's virtual time, during which its timers run), or writes a screenshot instead. `extra_args`:
    more Chromium switches (e.g. --user-agent)."""
    assert CHROMIUM is not None
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
            "--window-size=1400,2300"]
    if budget_ms:
        args.append(f"--virtual-time-budget={budget_ms}")
    args += extra_args
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    # an asyncio subprocess: the dashboard answers Chromium from this very event loop
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 45)
    except BaseException:  # timed out or cancelled: no browser outlives its test
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@dataclass
class Gate:
    """The writer's query, except that once armed, campaign reads after the first wait for `release`: the
    page renders, then its first poll waits until the test has written more. Shown afterwards, the new
    numbers can only have come from polling."""

    query: Query
    armed: bool = False
    served: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        if self.armed and sql == SUMMARY_SQL:
            if self.served.is_set():
                await self.released.wait()
            self.served.set()
        return await self.query(sql, parameters)


@dataclass
class Served:
    url: str
    gate: Gate
    sim: Simulation
    db: ClickHouseDb


@pytest.fixture
async def served(clickhouse: ClickHouseDb, keyring: Keyring, tmp_path: Path) -> AsyncIterator[Served]:
    settings = Settings(_env_file=None, edge_id="test-edge", spool_dir=None,
                        geoip_city_db=write_city_db(tmp_path / "city.mmdb"))
    sim = simulate(load_patterns(FIXTURE), CAMPAIGN, 6000, click_boost={"B": 0.25}, send_spread=6 * 3600, seed=11,
                   bounce_share=0.03)
    # conversions carry the link clicked, so the links table has conversions and revenue
    clicked = {s.message: h.link for s, h in sim.hits if h.kind == "click" and h.verdict == "human"}
    sim.conversions = [dataclasses.replace(c, link=clicked.get(c.message, "")) for c in sim.conversions]
    await run_pipeline(clickhouse, settings, keyring, sim.records(keyring, Topics()))

    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    gate = Gate(query_with(writer))
    runner = web.AppRunner(create_dashboard_app(gate, refresh_seconds=1, cache_seconds=0), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Served(f"http://{host}:{port}/", gate, sim, clickhouse)
    finally:
        await runner.cleanup()
        await writer.close()


def report_rows(db: ClickHouseDb) -> list[dict[str, Any]]:
    """campaign_summary as `pixeltrack report` reads it."""
    def query(sql: str, params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        client = db.client()
        try:
            result = client.query(sql, parameters=params)
            return list(result.column_names), [list(r) for r in result.result_rows]
        finally:
            client.close()

    return fetch(query, CAMPAIGN)


async def test_dashboard_shows_the_campaign_in_chromium(served: Served, tmp_path: Path, keyring: Keyring,
                                                        settings: Settings) -> None:
    truth = served.sim.truth
    rows = {r["variant"]: r for r in report_rows(served.db)}
    assert sorted(rows) == sorted(truth) == ["A", "B"]
    for v, t in truth.items():  # the views hold the truth; the page must show the views
        assert (rows[v]["delivered"], rows[v]["unique_opens"], rows[v]["unique_clicks"]) == (
            t.delivered, t.unique_opens, t.unique_clicks)
    delivered = sum(t.delivered for t in truth.values())
    opened = sum(t.unique_opens for t in truth.values())
    bounced = sum(t.bounced for t in truth.values())
    assert sum(t.sent for t in truth.values()) == delivered + bounced == 6000
    assert bounced > 100

    # the campaign list
    listing = Shown(await browse(served.url, tmp_path / "profile"))
    assert listing.metrics[(CAMPAIGN, "delivered")] == f"{delivered:,}"
    assert listing.metrics[(CAMPAIGN, "open_rate")] == f"{opened / delivered * 100:.1f}%"

    # the campaign page, as served (no script needed for the numbers)
    page_url = f"{served.url}campaign?name={CAMPAIGN}"
    shown = Shown(await browse(page_url, tmp_path / "profile"))
    for v, t in truth.items():
        assert shown.metrics[(v, "delivered")] == f"{t.delivered:,}" == f"{rows[v]['delivered']:,}"
        assert shown.metrics[(v, "unique_opens")] == f"{t.unique_opens:,}"
        assert shown.metrics[(v, "open_rate")] == f"{t.unique_opens / t.delivered * 100:.2f}%" == \
            f"{rows[v]['open_rate'] * 100:.2f}%"
        assert shown.metrics[(v, "unique_clicks")] == f"{t.unique_clicks:,}"
        assert shown.metrics[(v, "ctr")] == f"{t.unique_clicks / t.delivered * 100:.2f}%"
    assert shown.metrics[("", "delivered")] == f"{delivered:,}"
    assert shown.metrics[("", "unique_opens")] == f"{opened:,}"
    # the funnel starts at sent; bounces (over sent) and complaints (over delivered) beside it
    complained = sum(t.complained for t in truth.values())
    assert shown.metrics[("", "sent")] == "6,000"
    assert shown.metrics[("", "bounced")] == f"{bounced:,}"
    assert shown.metrics[("", "bounce_rate")] == f"{bounced / 6000 * 100:.2f}%"
    assert shown.metrics[("", "complained")] == f"{complained:,}"
    assert shown.metrics[("", "complaint_rate")] == f"{complained / delivered * 100:.3f}%"
    # the A/B verdict is the report's, word for word; B was built to win on clicks
    _, verdict = ab_verdict(list(rows.values()), "click")
    assert shown.verdicts["click"] == verdict
    assert verdict.startswith("Variant B wins on click rate")
    for chart in ("funnel-chart", "opens-chart", "clicks-chart", "clients-chart", "devices-chart",
                  "countries-chart"):
        assert chart in shown.chart_ids
    assert shown.polylines["opens-chart"] == 3
    assert shown.polylines["clicks-chart"] == 2

    # machine opens by source with their top reasons, as the hits view has them
    html = await browse(page_url, tmp_path / "profile")
    machine = {str(src): int(n) for src, n in served.db.rows(  # type: ignore[call-overload]
        f"SELECT source, count() FROM hits WHERE campaign = '{CAMPAIGN}' AND kind = 'open' AND verdict = 'machine' "
        "GROUP BY source")}
    assert sum(machine.values()) == sum(t.opens_machine for t in truth.values()) > 0
    assert len(machine) >= 2  # the simulation has Apple MPP and scanners at least
    by_row: dict[str, str] = dict(
        re.findall(r'<tr data-kind="open" data-side="machine" data-source="([^"]*)">(.*?)</tr>', html))
    assert set(by_row) == set(machine)
    for source, n in machine.items():
        assert f'<td data-field="hits">{n:,}</td>' in by_row[source], source
        top = [str(r[0]) for r in served.db.rows(
            f"SELECT reason, count() AS n FROM hits ARRAY JOIN reasons AS reason WHERE campaign = '{CAMPAIGN}' "
            f"AND kind = 'open' AND verdict = 'machine' AND source = '{source}' GROUP BY reason "
            "ORDER BY n DESC, reason LIMIT 3")]
        assert re.findall(r'data-reason="([^"]*)"', by_row[source]) == top, source
        for code in top:  # shown as words, not codes
            assert f">{reason_label(code, 'machine').label}</a>" in by_row[source]
    assert "Apple Mail Privacy Protection" in by_row["apple_mpp"]

    # the drill-down of the largest source lists its latest hits
    largest = max(machine, key=lambda s: machine[s])
    link = re.search(r'<td class="name"><a href="([^"]*)"', by_row[largest])
    assert link is not None
    href = unescape(link.group(1))
    drill = await browse(served.url + href, tmp_path / "profile")
    hit_rows = re.findall(r'<tr data-hit="\d+">(.*?)</tr>', drill)
    assert len(hit_rows) == min(20, machine[largest])
    latest = served.db.rows(f"SELECT max(ts) FROM hits WHERE campaign = '{CAMPAIGN}' AND kind = 'open' "
                            f"AND verdict = 'machine' AND source = '{largest}'")[0][0]
    assert f'<td data-field="ts">{latest:%Y-%m-%d %H:%M:%S} UTC</td>' in hit_rows[0]
    assert all('<td data-field="kind">open</td>' in r and 'data-reason="' in r for r in hit_rows)

    # a screenshot that shows the charts
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "dashboard.png"
    png.unlink(missing_ok=True)
    await browse(page_url, tmp_path / "profile", screenshot=png, budget_ms=500)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a blank or error page compresses to far less

    # live: sends registered after the page rendered appear without a reload
    served.gate.armed = True
    late = [Send("", CAMPAIGN, "A", f"{CAMPAIGN}-late{i:03d}", f"late{i:03d}", 1_790_000_000.0 + i)
            for i in range(LATE_SENDS)]
    topics = Topics()
    browser = asyncio.create_task(browse(page_url, tmp_path / "profile", budget_ms=4000))
    try:
        await asyncio.wait_for(served.gate.served.wait(), 30)
        await run_pipeline(served.db, settings, keyring, [Record(topics.sends, s.message.encode(), s.encode())
                                                          for s in late])
    except BaseException:
        browser.cancel()
        with contextlib.suppress(BaseException):
            await browser
        raise
    finally:
        served.gate.released.set()
    live = Shown(await browser)
    assert live.metrics[("A", "delivered")] == f"{truth['A'].delivered + LATE_SENDS:,}"
    assert live.metrics[("B", "delivered")] == f"{truth['B'].delivered:,}"
    assert live.metrics[("", "delivered")] == f"{delivered + LATE_SENDS:,}"
