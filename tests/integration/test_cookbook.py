"""docs/analysts.md stays true: every ```sql block runs against a simulated campaign and returns rows,
a few give the simulation's known numbers, and the doc names every table and view the migrations make."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from pixeltrack.compose.build import build_processor
from processors.clickhouse import connect, migrate
from processors.local_runner import LocalRecord
from processors.writer import ClickHouseWriter
from schemas.records import DeadLetter, RawHit, Record
from schemas.sends import Send
from schemas.settings import Settings
from schemas.tokens import ClickRef, Keyring, mint_click_ref
from schemas.topics import Topics
from tests.integration.test_analytics import run_pipeline
from tests.integration.writers import process_and_write
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import SimHit, Simulation, load_patterns, simulate

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "analysts.md"
FIXTURE = ROOT / "tests" / "fixtures" / "labelled-hits.jsonl"
CAMPAIGN = "spring"  # the campaign every query in the doc is written for
# what `pixeltrack query --param NAME=VALUE` gives a doc query that uses {NAME:Type}
PARAMS = {"campaign": CAMPAIGN, "tenant": ""}
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6} +(.+)$", re.MULTILINE)

# Human hits of the labelled sample come from these networks; a small GeoLite2-shaped City database
# gives them a place, so the geo queries have something to show (proxied and machine hits never do).
GEO = {
    "GB": ["81.0.0.0/8", "2a02:c7f::/32"],
    "US": ["73.0.0.0/8", "24.0.0.0/8"],
    "FR": ["92.0.0.0/8"],
    "DE": ["86.0.0.0/8"],
}
DEAD_LETTERS = (("edge", "bad_signature"), ("edge", "bad_signature"), ("edge", "bad_signature"),
                ("edge", "expired"), ("edge", "malformed"), ("processor", "undecodable"))
KEYRING = Keyring({"t1": b"test-secret-0123456789abcdef"}, "t1")
RESIDENTIAL_IP = "81.2.69.160"
DOCUMENTS = ("https://files.example.com/price-list.pdf", "https://files.example.com/whitepaper.pdf")
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
          "Safari/537.36")
SITE_CLICKS = 40  # people's clicks followed by two page views each on the sender's site (site_records)
SITE_VISITS = 3  # page views there without a click id


def doc_queries() -> list[tuple[str, str]]:
    """(nearest heading above, SQL) of every ```sql block of the doc."""
    text = DOC.read_text(encoding="utf-8")
    out = []
    for block in SQL_BLOCK.finditer(text):
        headings = HEADING.findall(text, 0, block.start())
        out.append((headings[-1].strip() if headings else "(top)", block.group(1).strip()))
    return out


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def write_city_db(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City", languages=["en"],
                   description="pixeltrack cookbook test database")
    for country, cidrs in GEO.items():
        w.insert_network(IPSet(cidrs), {"country": {"iso_code": country}})
    w.to_db_file(str(path))
    return path


def with_extras(sim: Simulation) -> tuple[list[Record], list[Record]]:
    """Records of the simulation (its truth updated), with what it does not make on its own: conversions
    that name the click they followed (its link and hit id, as a click id would), and a quiet message
    whose first click gets revised (a two-link burst from one residential client: human at first, then
    the scanner's). Also returns dead letters from the edge and the processor, which `fill` writes
    separately."""
    human_click = {s.message: h for s, h in sim.hits if h.kind == "click" and h.verdict == "human"}
    sim.conversions = [dataclasses.replace(c, link=human_click[c.message].link, click_hit_id=human_click[c.message].id)
                       if c.message in human_click else c for c in sim.conversions]

    engaged = {s.message for s, _ in sim.hits}
    quiet = next(s for s in sim.sends if s.message not in engaged)
    headers = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    burst = [SimHit(f"burst{i}", quiet.sent_at + 900 + 0.3 * i, "click", "GET", RESIDENTIAL_IP, CHROME, headers,
                    f"https://shop.example.com/{page}", False, "machine") for i, page in enumerate(("sale", "new"))]
    extra = [(quiet, h) for h in burst]
    sim.truth[quiet.variant].clicks_filtered += len(burst)

    # Downloads: readers of three opened messages download the price list a day after their send (people's),
    # and a scanner fetches a link and both documents of a quiet message right after delivery (a burst: all
    # the machine's). And a reader whose client blocks the pixel but loads the email's three images: one
    # human open, the other two fetches its duplicates.
    opened = list(dict.fromkeys(s for s, h in sim.hits if h.kind == "open" and h.verdict == "human"))[:3]
    for i, s in enumerate(opened):
        extra.append((s, SimHit(f"download{i}", s.sent_at + 86400 + i, "download", "GET", f"81.2.69.{170 + i}",
                                CHROME, headers, DOCUMENTS[0], False, "human")))
    quiet_ones = [s for s in sim.sends if s.message not in engaged and s is not quiet]
    scanned, reader = quiet_ones[0], quiet_ones[1]
    for i, url in enumerate(("https://shop.example.com/sale", *DOCUMENTS)):
        extra.append((scanned, SimHit(f"scan{i}", scanned.sent_at + 45 + 0.3 * i, "click" if i == 0 else "download",
                                      "GET", "81.2.69.190", CHROME, headers, url, False, "machine")))
    sim.truth[scanned.variant].clicks_filtered += 1
    image_accept = {"accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}
    for i, name in enumerate(("hero.jpg", "logo.png", "boot.jpg")):
        extra.append((reader, SimHit(f"image{i}", reader.sent_at + 3600 + 0.1 * i, "image", "GET", "81.2.69.195",
                                     CHROME, image_accept, f"https://img.example.com/{name}", False,
                                     "human" if i == 0 else "duplicate")))
    truth = sim.truth[reader.variant]
    truth.unique_opens, truth.opens_human, truth.opens_duplicate = (
        truth.unique_opens + 1, truth.opens_human + 1, truth.opens_duplicate + 2)
    sim.hits = sorted([*sim.hits, *extra], key=lambda sh: sh[1].ts)

    topics = Topics()
    start = min(s.sent_at for s in sim.sends)
    letters = [Record(topics.hits_dlq, None, DeadLetter(
        id=f"dl-{i}", received_at=start + 60 * i, stage=stage, reason=reason, detail="cookbook", kind="open",
        method="GET", host="t.example.com", path="/o/not-a-token.gif", ip="198.51.100.7", ua=CHROME,
        edge="sim").encode()) for i, (stage, reason) in enumerate(DEAD_LETTERS)]
    return [*sim.records(KEYRING, topics), *site_records(sim, topics)], letters


def site_clicks(sim: Simulation) -> list[tuple[Send, SimHit]]:
    """The people's clicks a visit to the site follows in site_records."""
    return [(s, h) for s, h in sim.hits if h.kind == "click" and h.verdict == "human"][:SITE_CLICKS]


def site_records(sim: Simulation, topics: Topics) -> list[Record]:
    """What the site script would send after the simulation's people's clicks (docs/site.md): two pages
    for the first SITE_CLICKS human clicks (the landing page and one more, through the click id the
    redirect appended), and SITE_VISITS page views without a click id on the sender's site."""
    out = []
    clicks = site_clicks(sim)
    for i, (s, h) in enumerate(clicks):
        cid = mint_click_ref(KEYRING, ClickRef(s.tenant, s.campaign, s.variant, s.message, s.recipient, h.id, h.link,
                                               round(s.sent_at * 1000)))
        for j, page in enumerate((h.link.split("?")[0], "https://shop.example.com/cart")):
            raw = RawHit(f"visit-{i}-{j}", h.ts + 20 + 40 * j, "visit", "POST", "t.example.com", page, cid, h.ip,
                         CHROME, "sim", {"accept": "*/*", "sec-fetch-mode": "no-cors"})
            out.append(Record(topics.hits_raw, s.message.encode(), raw.encode()))
    start = min(s.sent_at for s in sim.sends)
    for i in range(SITE_VISITS):
        raw = RawHit(f"site-{i}", start + 3600 * i, "site_visit", "POST", "t.example.com", "https://shop.example.com/",
                     "", RESIDENTIAL_IP, CHROME, "sim", {"accept": "*/*"})
        out.append(Record(topics.hits_raw, b"https://shop.example.com/", raw.encode()))
    return out


async def fill(db: ClickHouseDb, settings: Settings, records: list[Record], letters: list[Record]) -> None:
    """The campaign as the embedded runner would write it; then the dead letters as records of Kafka
    partition 0, so that `consumer_positions` has a row as in production."""
    await run_pipeline(db, settings, KEYRING, records)
    processor = build_processor(settings, KEYRING)
    writer = ClickHouseWriter(db.dsn, db.database)
    try:
        batch = [LocalRecord(r.topic, 0, offset, r.value, r.headers) for offset, r in enumerate(letters)]
        await process_and_write(processor, writer, batch, "cookbook:dlq")
    finally:
        await writer.close()


@dataclass(frozen=True)
class Cookbook:
    db: ClickHouseDb
    client: Client
    sim: Simulation

    def query(self, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
        """As `pixeltrack query` runs it: read-only, with `--param` for each {NAME:Type} the SQL uses."""
        parameters = {name: value for name, value in PARAMS.items() if f"{{{name}:" in sql}
        result = self.client.query(sql, parameters=parameters or None, settings={"readonly": 1})
        return list(result.column_names), [tuple(r) for r in result.result_rows]


@pytest.fixture(scope="module")
def cookbook(chdb_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cookbook]:
    """One migrated database for the module, filled once: queries only read it."""
    db = ClickHouseDb(chdb_dsn, f"cookbook_{uuid.uuid4().hex[:12]}")
    migrate(db.dsn, db.database, retention_days=3650, dead_letter_retention_days=3650)
    city = write_city_db(tmp_path_factory.mktemp("geoip") / "city.mmdb")
    settings = Settings(_env_file=None, edge_id="test-edge", spool_dir=None, geoip_city_db=city)
    sim = simulate(load_patterns(FIXTURE), CAMPAIGN, 4000, engaged_share=0.5, click_boost={"B": 0.25}, seed=5,
                   bounce_share=0.03)
    client = db.client()
    # Partial rows per message stay unmerged, as on a busy server: the per-message queries must merge them
    # (a background merge after the last insert would leave nothing to prove). chDB keeps this while the
    # client that asked stays open.
    client.command(f"SYSTEM STOP MERGES {db.database}.message_totals")
    asyncio.run(fill(db, settings, *with_extras(sim)))
    try:
        yield Cookbook(db, client, sim)
    finally:
        client.close()
        admin = connect(chdb_dsn, None)
        try:
            admin.command(f"DROP DATABASE IF EXISTS {db.database} SYNC")
        finally:
            admin.close()


QUERIES = doc_queries()


def params() -> list[Any]:
    seen: dict[str, int] = {}
    out = []
    for heading, sql in QUERIES:
        name = slug(heading)
        seen[name] = seen.get(name, 0) + 1
        out.append(pytest.param(sql, id=name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return out


def query_under(heading: str, index: int = 0) -> str:
    """The `index`-th SQL block under the heading that starts with `heading`."""
    found = [sql for h, sql in QUERIES if h.startswith(heading)]
    assert len(found) > index, f"{len(found)} SQL blocks under a heading starting with {heading!r}"
    return found[index]


def test_doc_has_a_cookbook_of_at_least_twelve_queries() -> None:
    cookbook_part = DOC.read_text(encoding="utf-8").split("\n## Cookbook\n", 1)
    assert len(cookbook_part) == 2, "docs/analysts.md has no '## Cookbook' section"
    assert len(SQL_BLOCK.findall(cookbook_part[1])) >= 12
    # written for the simulated campaign, so that every query here finds its data
    assert {name for _, sql in QUERIES for name in re.findall(r"campaign\s*=\s*'([^']*)'", sql)} == {CAMPAIGN}
    # query parameters are ones the test (like `pixeltrack query --param`) can fill
    assert {name for _, sql in QUERIES for name in re.findall(r"\{(\w+):", sql)} <= set(PARAMS)


@pytest.mark.parametrize("sql", params())
def test_doc_query_runs_and_returns_rows(cookbook: Cookbook, sql: str) -> None:
    columns, rows = cookbook.query(sql)
    assert columns
    assert rows, "no rows: the query, or the simulated campaign it runs on, has gone wrong"


def test_every_table_and_view_is_documented(cookbook: Cookbook) -> None:
    _, rows = cookbook.query(f"SELECT name FROM system.tables WHERE database = '{cookbook.db.database}' ORDER BY name")
    names = [str(r[0]) for r in rows]
    assert {"events", "hits", "campaign_summary"} <= set(names)
    text = DOC.read_text(encoding="utf-8")
    assert [n for n in names if f"`{n}`" not in text] == []


def test_doc_numbers_equal_the_simulated_truth(cookbook: Cookbook) -> None:
    truth = cookbook.sim.truth
    total = {f: sum(getattr(t, f) for t in truth.values()) for f in (
        "delivered", "unique_opens", "unique_clicks", "converted_messages", "opens_human", "opens_proxy",
        "opens_machine", "opens_duplicate", "clicks_human", "clicks_filtered", "sent", "bounced", "complained",
        "replied")}
    assert total["sent"] == 4000
    assert total["bounced"] > 50  # the simulation has bounces, so delivered is not sent

    columns, funnel = cookbook.query(query_under("Funnel"))
    assert {stage: messages for stage, messages, *_ in funnel} == {
        "sent": 4000, "delivered": total["delivered"], "opened": total["unique_opens"],
        "clicked": total["unique_clicks"], "converted": total["converted_messages"]}
    assert {(r[columns.index("bounced")], r[columns.index("complained")]) for r in funnel} == {
        (total["bounced"], total["complained"])}

    columns, health = cookbook.query(query_under("Bounce, complaint"))
    got_health = {r[0]: dict(zip(columns, r, strict=True)) for r in health}
    for variant, t in truth.items():
        row = got_health[variant]
        assert (row["sent"], row["delivered"], row["bounced"], row["complained"], row["replied"]) == (
            t.sent, t.delivered, t.bounced, t.complained, t.replied)
        assert row["hard_bounced"] + row["soft_bounced"] == t.bounced
        assert row["bounce_rate"] == round(t.bounced / t.sent, 4)
        assert row["reply_rate"] == round(t.replied / t.delivered, 4)

    # raw events read with sum(sign): the revised burst click counts once, as the machine's
    assert cookbook.db.rows("SELECT max(revision) FROM events WHERE hit_id = 'burst0'") == [(1,)]
    _, raw = cookbook.query(query_under("`events`"))
    assert {(kind, verdict): hits for kind, verdict, hits in raw} == {
        ("open", "human"): total["opens_human"], ("open", "proxy"): total["opens_proxy"],
        ("open", "machine"): total["opens_machine"], ("open", "duplicate"): total["opens_duplicate"],
        ("click", "human"): total["clicks_human"], ("click", "machine"): total["clicks_filtered"],
        ("visit", "human"): 2 * SITE_CLICKS,  # site_records: two pages after each of 40 people's clicks
        ("download", "human"): 3, ("download", "machine"): 2}

    columns, after = cookbook.query(query_under("Visits after the click"))
    rows = [dict(zip(columns, r, strict=True)) for r in after]
    # visitors: a message and link with a visit (two people's clicks of one message on one link are one)
    visitors = len({(s.message, h.link) for s, h in site_clicks(cookbook.sim)})
    assert (sum(r["visitors"] for r in rows), sum(r["all_visits"] for r in rows), sum(r["all_pages"] for r in rows),
            sum(r["all_machine_pages"] for r in rows)) == (visitors, SITE_CLICKS, 2 * SITE_CLICKS, 0)
    columns, sites = cookbook.query(query_under("Visits after the click", 2))
    assert {(r[0], sum(x[2] for x in sites)) for r in sites} == {("shop.example.com", SITE_VISITS)}

    columns, ab = cookbook.query(query_under("A/B comparison"))
    got = {r[0]: dict(zip(columns, r, strict=True)) for r in ab}
    for variant, t in truth.items():
        assert (got[variant]["delivered"], got[variant]["unique_opens"], got[variant]["unique_clicks"],
                got[variant]["converted_messages"]) == (t.delivered, t.unique_opens, t.unique_clicks,
                                                        t.converted_messages)

    columns, money = cookbook.query(query_under("Conversions and revenue per variant"))
    rows = [dict(zip(columns, r, strict=True)) for r in money]
    assert {r["variant"]: r["conversions"] for r in rows} == {v: t.conversions for v, t in truth.items()}
    assert {r["variant"]: r["revenue"] for r in rows} == pytest.approx({v: t.revenue for v, t in truth.items()})

    _, letters = cookbook.query(query_under("Dead letters by reason"))
    assert {(stage, reason): n for stage, reason, n, *_ in letters} == {
        (stage, reason): DEAD_LETTERS.count((stage, reason)) for stage, reason in DEAD_LETTERS}


def test_doc_per_message_queries_equal_the_simulated_truth(cookbook: Cookbook) -> None:
    """The queries on `message_totals`, `link_totals` and `conversions.click_hit_id` count each message
    (and each conversion's click) once, whatever state of merging the parts are in."""
    truth = cookbook.sim.truth
    total = {f: sum(getattr(t, f) for t in truth.values()) for f in (
        "delivered", "unique_opens", "unique_clicks", "converted_messages", "conversions", "opens_human",
        "opens_proxy", "sent", "bounced")}
    # several partial rows per message are what the queries must merge; the test is moot without them
    assert cookbook.db.rows(f"SELECT count() > uniqExact(message_id) FROM message_totals "
                            f"WHERE campaign = '{CAMPAIGN}'") == [(1,)]

    # the same messages read with FINAL and with GROUP BY
    final = cookbook.query(query_under("`message_totals`", 1))
    grouped = cookbook.query(query_under("`message_totals`", 2))
    assert len(final[1]) == 20
    as_dicts = [[{k: v for k, v in zip(cols, r, strict=True) if k in grouped[0]} for r in rows]
                for cols, rows in (final, grouped)]
    assert as_dicts[0] == as_dicts[1]

    columns, split = cookbook.query(query_under("`campaign_summary`"))
    got = {r[0]: dict(zip(columns, r, strict=True)) for r in split}
    for variant, t in truth.items():
        row = got[variant]
        assert (row["delivered"], row["unique_opens"], row["unique_clicks"]) == (
            t.delivered, t.unique_opens, t.unique_clicks)
        assert row["unique_human_opens"] + row["unique_proxy_only_opens"] == t.unique_opens
        assert 0 < row["unique_clicks_of_openers"] <= t.unique_clicks
        assert row["ctor"] == pytest.approx(row["unique_clicks_of_openers"] / t.unique_opens, abs=1e-4)

    columns, cohorts = cookbook.query(query_under("Cohorts by send hour"))
    sums = {c: sum(dict(zip(columns, r, strict=True))[c] for r in cohorts) for c in (
        "sent", "delivered", "opened", "clicked", "converted")}
    assert sums == {"sent": total["sent"], "delivered": total["delivered"], "opened": total["unique_opens"],
                    "clicked": total["unique_clicks"], "converted": total["converted_messages"]}

    columns, domains = cookbook.query(query_under("Machine share by mailbox provider"))
    rows = [dict(zip(columns, r, strict=True)) for r in domains]
    assert (sum(r["sent"] for r in rows), sum(r["bounced"] for r in rows), sum(r["delivered"] for r in rows),
            sum(r["opened"] for r in rows)) == (total["sent"], total["bounced"], total["delivered"],
                                                total["unique_opens"])

    # per message, the doc's bounce rule marks exactly the simulation's bounced messages
    _, some = cookbook.query(query_under("`message_totals`", 0))
    assert len(some) == 20
    _, every = cookbook.query(query_under("`message_totals`", 0).replace("LIMIT 20", "LIMIT 100000"))
    assert sum(1 for r in every if r[-1]) == total["bounced"]
    assert any(not r[-1] for r in every)  # soft bounces a delivery followed: bounced once, delivered

    columns, first = cookbook.query(query_under("Time to first open"))
    rows = [dict(zip(columns, r, strict=True)) for r in first]
    assert sum(r["messages"] for r in rows) == total["unique_opens"]
    assert all(r["direct"] + r["proxied"] == r["messages"] for r in rows)

    _, reopens = cookbook.query(query_under("Re-opens per recipient"))
    assert sum(opens * recipients for opens, recipients in reopens) == total["opens_human"] + total["opens_proxy"]

    _, links = cookbook.query(query_under("`link_totals`"))
    assert sum(messages for _, messages in links) == total["unique_clicks"]

    # every simulated conversion names the human click it followed (see `with_extras`)
    columns, after_click = cookbook.query(query_under("Time from click to conversion"))
    rows = [dict(zip(columns, r, strict=True)) for r in after_click]
    assert sum(r["conversions"] for r in rows) == total["conversions"]
    assert sum(r["after_filtered_click"] for r in rows) == 0
    assert sum(r["revenue"] for r in rows) == pytest.approx(sum(t.revenue for t in truth.values()))
    columns, clicks = cookbook.query(query_under("`conversions`"))
    rows = [dict(zip(columns, r, strict=True)) for r in clicks]
    assert {r["click_verdict"] for r in rows} == {"human"}
    assert sum(r["conversions"] for r in rows) == total["conversions"]

    # a saved query with --param gives what the literal one does
    columns, with_params = cookbook.query(query_under("Running SQL"))
    assert {r[0]: r[1:4] for r in with_params} == {
        v: (t.delivered, t.unique_opens, t.unique_clicks) for v, t in truth.items()}


def test_doc_download_and_image_queries_equal_the_simulated_extras(cookbook: Cookbook) -> None:
    """The downloads and image opens `with_extras` adds: three people's downloads of the price list, a
    scanner's of both documents; one reader opening through three images (one open, two duplicates)."""
    _, documents = cookbook.query(query_under("Downloads per document"))
    assert [r[:4] for r in documents] == [(DOCUMENTS[0], 3, 3, 1), (DOCUMENTS[1], 0, 0, 1)]
    _, fetched = cookbook.query(query_under("Opens through the email's images"))
    assert [r for r in fetched if r[0] == "image"] == [("image", "duplicate", 2, 1), ("image", "human", 1, 1)]
    _, only = cookbook.query(query_under("Opens through the email's images", 1))
    assert only[0][0] == 1
    assert only[0][1] > 0
