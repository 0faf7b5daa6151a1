"""The dashboard app over a fake query: routes, refresh endpoints, failures, the shared cache, headers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pixeltrack.dashboard import create_dashboard_app, query_with
from pixeltrack.dashboard.app import ResultCache
from pixeltrack.dashboard.queries import EXAMPLES_SQL, SUMMARY_SQL
from tests.unit.pixeltrack.dashboard.fakes import CAMPAIGN, HOSTILE, FakeQuery

Client = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(query: Any, **kwargs: Any) -> TestClient[web.Request, web.Application]:
        c = TestClient(TestServer(create_dashboard_app(query, **kwargs), host="127.0.0.1"))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def test_pages_and_their_panels(client: Client) -> None:
    c = await client(FakeQuery(), refresh_seconds=3)
    index = await c.get("/")
    assert index.status == 200
    assert index.content_type == "text/html"
    assert 'href="campaign?name=spring-sale"' in await index.text()
    listing = await (await c.get("/panels")).json()
    assert set(listing) == {"panels", "updated"}
    assert "50,000" in listing["panels"]["campaigns"]

    page = await c.get("/campaign", params={"name": CAMPAIGN})
    html = await page.text()
    assert page.status == 200
    assert 'data-refresh="3"' in html
    assert ">50,000<" in html
    panels = await (await c.get("/campaign/panels", params={"name": CAMPAIGN})).json()
    assert set(panels["panels"]) == {"kpis", "funnel", "ab", "opens", "clicks", "clients", "devices", "countries",
                                     "links", "sources"}
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", panels["updated"])
    for name in panels["panels"]:
        assert f'data-panel="{name}"' in html


async def test_campaign_names_travel_quoted_and_come_back_escaped(client: Client) -> None:
    fake = FakeQuery()
    c = await client(fake)
    page = await c.get("/campaign", params={"name": HOSTILE})
    assert page.status == 200
    assert "<script>alert" not in await page.text()
    assert [p["campaign"] for _, p in fake.calls] == [HOSTILE] * 8


async def test_missing_and_unknown_campaigns(client: Client) -> None:
    c = await client(FakeQuery())
    assert (await c.get("/campaign")).status == 400
    assert (await c.get("/campaign/panels")).status == 400
    unknown = await c.get("/campaign", params={"name": "nope"})
    assert unknown.status == 404
    assert "No sends or hits for campaign &#x27;nope&#x27; yet" in await unknown.text()
    assert (await c.get("/campaign/panels", params={"name": "nope"})).status == 404


async def test_clickhouse_failures_are_503s_that_say_why(client: Client) -> None:
    c = await client(FakeQuery(fail=RuntimeError("Code: 241. <Memory limit> exceeded\nstack trace ...")))
    page = await c.get("/campaign", params={"name": CAMPAIGN})
    assert page.status == 503
    html = await page.text()
    assert "ClickHouse did not answer (Code: 241. &lt;Memory limit&gt; exceeded)" in html
    assert "stack trace" not in html
    assert "data-reload" in html  # reloads itself once the panels answer again
    assert (await c.get("/")).status == 503
    panels = await c.get("/campaign/panels", params={"name": CAMPAIGN})
    assert panels.status == 503
    assert "Memory limit" in (await panels.json())["error"]
    health = await c.get("/healthz")
    assert health.status == 503
    assert (await health.json())["status"] == "unavailable"


async def test_healthz(client: Client) -> None:
    c = await client(FakeQuery())
    health = await c.get("/healthz")
    assert health.status == 200
    assert await health.json() == {"status": "ok"}


async def test_only_the_pages_own_style_and_script_may_run(client: Client) -> None:
    c = await client(FakeQuery())
    page = await c.get("/campaign", params={"name": CAMPAIGN})
    html = await page.text()
    csp = page.headers["Content-Security-Policy"]
    for tag in ("script", "style"):
        inline = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert "style=" not in html  # inline style attributes would need 'unsafe-inline'


async def test_concurrent_pages_share_one_read(client: Client) -> None:
    fake = FakeQuery()
    c = await client(fake, cache_seconds=60)
    answers = await asyncio.gather(*(c.get("/campaign/panels", params={"name": CAMPAIGN}) for _ in range(5)),
                                   c.get("/campaign", params={"name": CAMPAIGN}))
    assert [a.status for a in answers] == [200] * 6
    assert fake.count(SUMMARY_SQL) == 1


async def test_reads_are_fresh_after_the_cache_time_and_failures_are_not_kept() -> None:
    cache = ResultCache(ttl=0.05)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("down")
        return calls

    with pytest.raises(RuntimeError):
        await cache.get(("k",), load)
    assert await cache.get(("k",), load) == 2  # the failure was not kept
    assert await cache.get(("k",), load) == 2  # within ttl
    await asyncio.sleep(0.06)
    assert await cache.get(("k",), load) == 3


async def test_cache_holds_a_bounded_number_of_keys() -> None:
    cache = ResultCache(ttl=60, max_entries=3)

    async def load() -> str:
        return "x"

    for i in range(10):
        await cache.get(("campaign", str(i)), load)
    assert len(cache._entries) == 3


def test_refresh_interval_is_validated() -> None:
    with pytest.raises(ValueError, match="refresh_seconds=0"):
        create_dashboard_app(FakeQuery(), refresh_seconds=0)


async def test_query_with_runs_read_only_sql_on_the_writer() -> None:
    seen: list[tuple[str, bool, dict[str, Any] | None]] = []

    class Writer:
        async def query(self, sql: str, readonly: bool = True,
                        parameters: dict[str, Any] | None = None) -> tuple[list[str], list[Sequence[Any]]]:
            seen.append((sql, readonly, parameters))
            return ["x"], [[1]]

    query = query_with(Writer())
    assert await query("SELECT {a:UInt8} AS x", {"a": 1}) == (["x"], [[1]])
    assert seen == [("SELECT {a:UInt8} AS x", True, {"a": 1})]


async def test_cross_site_requests_and_foreign_host_names_are_refused(client: Client) -> None:
    """A page elsewhere could make the operator's browser fire queries at the dashboard (they run on
    serve's insert thread), or read it after rebinding its own name to 127.0.0.1."""
    from pixeltrack.dashboard.app import LOOPBACK_NAMES

    c = await client(FakeQuery(), allowed_hosts=LOOPBACK_NAMES)
    assert (await c.get("/")).status == 200
    assert (await c.get("/", headers={"Sec-Fetch-Site": "cross-site"})).status == 403
    assert (await c.get("/", headers={"Sec-Fetch-Site": "same-origin"})).status == 200
    assert (await c.get("/healthz", headers={"Host": "attacker.example"})).status == 421
    assert (await c.get("/healthz", headers={"Host": "localhost:8082"})).status == 200
    assert (await c.get("/healthz", headers={"Host": "[::1]:8082"})).status == 200
    anywhere = await client(FakeQuery())  # behind a proxy: any name, still no cross-site requests
    assert (await anywhere.get("/healthz", headers={"Host": "dash.example.com"})).status == 200


async def test_drill_down_page_and_its_panels(client: Client) -> None:
    fake = FakeQuery()
    c = await client(fake)
    params = {"name": CAMPAIGN, "source": "scanner", "side": "machine", "kind": "click", "reason": "link_burst"}
    page = await c.get("/hits", params=params)
    html = await page.text()
    assert page.status == 200
    assert html.count('<tr data-hit="') == 2
    assert "<script>alert" not in html  # a user agent from the internet, escaped
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    (_sql, sent), = [call for call in fake.calls if call[0] == EXAMPLES_SQL]
    assert sent == {"tenant": "", "campaign": CAMPAIGN, "source": "scanner", "side": "machine", "kind": "click",
                    "reason": "link_burst", "limit": 20}
    panels = await (await c.get("/hits/panels", params=params)).json()
    assert set(panels["panels"]) == {"hits"}
    assert panels["panels"]["hits"].count('<tr data-hit="') == 2


@pytest.mark.parametrize(("params", "why"), [
    ({"name": CAMPAIGN}, "source=&lt;source&gt; are required"),
    ({"name": CAMPAIGN, "source": "bot", "side": "all"}, "side=&#x27;all&#x27;: must be one of machine, counted"),
    ({"name": CAMPAIGN, "source": "bot", "kind": "view"}, "kind=&#x27;view&#x27;: must be open, click or download"),
])
async def test_drill_down_refuses_unknown_filters(client: Client, params: dict[str, str], why: str) -> None:
    fake = FakeQuery()
    c = await client(fake)
    page = await c.get("/hits", params=params)
    assert page.status == 400
    assert why in await page.text()
    assert (await c.get("/hits/panels", params=params)).status == 400
    assert not [sql for sql, _ in fake.calls if sql == EXAMPLES_SQL]
