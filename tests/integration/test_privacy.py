"""Recipient privacy on chDB: IP truncation, do-not-track, erasure across every table, tenants apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.classify_file import build_classifier
from processors.local_runner import LocalRecord
from processors.pipeline import HitProcessor
from processors.privacy import forget
from processors.writer import ClickHouseWriter
from schemas.privacy import keyed_recipient_hash, recipient_hash, recipient_key
from schemas.records import DeadLetter, RawHit, Record
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics
from tests.integration.test_analytics import FIXTURE, run_pipeline
from tests.integration.writers import process_and_write
from tests.plugins.clickhouse import ClickHouseDb
from tests.plugins.simulate import load_patterns, simulate

TABLES_WITH_RECIPIENT = ("events", "sends", "conversions", "message_totals")


async def feed(db: ClickHouseDb, processor: HitProcessor, records: list[Record]) -> None:
    writer = ClickHouseWriter(db.dsn, db.database)
    try:
        await process_and_write(processor, writer, [LocalRecord(r.topic, -1, i, r.value) for i, r in
                                                    enumerate(records)], "privacy:1")
    finally:
        await writer.close()


async def test_forget_erases_the_recipient_everywhere(clickhouse: ClickHouseDb, settings: object,
                                                      keyring: Keyring) -> None:
    sim = simulate(load_patterns(FIXTURE), "gdpr", 400, engaged_share=0.8, seed=2)
    await run_pipeline(clickhouse, settings, keyring, sim.records(keyring, Topics()))  # type: ignore[arg-type]
    # a recipient with hits, a send and a conversion if there is one
    send, _ = next((s, h) for s, h in sim.hits if h.kind == "click")
    target = send.recipient
    before = clickhouse.rows("SELECT delivered FROM campaign_summary WHERE variant = '" + send.variant + "'")[0][0]
    assert all(clickhouse.rows(f"SELECT count() FROM {t} WHERE recipient_id = '{target}'")[0][0] > 0
               for t in ("events", "sends", "message_totals"))
    # every stored IP is truncated (IPv4 /24, IPv6 /48)
    assert clickhouse.rows("SELECT countIf(ip LIKE '%.%' AND ip NOT LIKE '%.0') FROM events") == [(0,)]

    client = clickhouse.client()
    try:
        deleted = forget(client, target, "", recipient_key(keyring))
    finally:
        client.close()
    assert deleted["events"] > 0
    assert deleted["sends"] == 1
    for table in TABLES_WITH_RECIPIENT:
        assert clickhouse.rows(f"SELECT count() FROM {table} WHERE recipient_id = '{target}'") == [(0,)], table
    assert clickhouse.rows(f"SELECT count() FROM link_totals WHERE message_id = '{send.message}'") == [(0,)]
    assert clickhouse.rows("SELECT recipient_hash FROM erasures") == [
        (keyed_recipient_hash(recipient_key(keyring), "", target),)]
    after = clickhouse.rows("SELECT delivered FROM campaign_summary WHERE variant = '" + send.variant + "'")[0][0]
    assert after == before - 1
    # no column of any table holds the recipient id any more
    tables = [r[0] for r in clickhouse.rows(
        f"SELECT name FROM system.tables WHERE database = '{clickhouse.database}' AND engine LIKE '%MergeTree%'")]
    for t in tables:
        hits = clickhouse.rows(f"SELECT count() FROM {t} WHERE position(toString(tuple(*)), '{target}') > 0")
        assert hits == [(0,)], t


async def test_do_not_track_stores_nothing(clickhouse: ClickHouseDb, keyring: Keyring) -> None:
    dnt = frozenset({recipient_hash("", "r-quiet")})
    processor = HitProcessor(keyring, build_classifier(), Topics(), do_not_track=dnt)
    records = []
    for i, recipient in enumerate(("r-quiet", "r-loud")):
        token = keyring.mint(TokenPayload("open", "", "dnt", "", f"m-{i}", recipient, 1_790_000_000_000))
        raw = RawHit(f"h{i}", 1_790_000_100.0, "open", "GET", "t.example.com", "/", token, "198.51.100.7",
                     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
                     "e", {"accept": "image/avif,image/webp,*/*"})
        records.append(Record("hits.raw", b"m", raw.encode()))
    await feed(clickhouse, processor, records)
    assert clickhouse.rows("SELECT recipient_id FROM hits") == [("r-loud",)]


@pytest.fixture
def two_tenants() -> TenantRegistry:
    return TenantRegistry({
        "acme": Tenant("acme", ("t.acme.example",), "a1:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFB"),
        "globex": Tenant("globex", ("t.globex.example",), "g1:" + "R0dHR0dHR0dHR0dHR0dHR0dHR0dH"),
    })


async def test_tenants_cannot_forge_each_other(clickhouse: ClickHouseDb, two_tenants: TenantRegistry) -> None:
    acme = two_tenants.for_tenant("acme")
    globex = two_tenants.for_tenant("globex")
    assert acme is not None
    assert globex is not None
    processor = HitProcessor(two_tenants, build_classifier(), Topics())

    def hit(i: int, ring: Keyring, tenant: str, host: str) -> Record:
        token = ring.mint(TokenPayload("open", tenant, "c", "", f"m-{i}", f"r-{i}", 1_790_000_000_000))
        raw = RawHit(f"h{i}", 1_790_000_100.0, "open", "GET", host, "/", token, "198.51.100.7",
                     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
                     "e", {})
        return Record("hits.raw", b"m", raw.encode())

    records = [
        hit(1, acme, "acme", "t.acme.example"),          # genuine
        hit(2, acme, "acme", "t.globex.example"),        # acme's token on globex's domain
        hit(3, globex, "acme", "t.globex.example"),      # globex's key claiming to be acme
        hit(4, globex, "globex", "t.globex.example:443"),  # genuine, with a port
        hit(5, globex, "globex", "unknown.example"),     # a host no tenant serves
    ]
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        await process_and_write(processor, writer, [LocalRecord(r.topic, -1, i, r.value)
                                                    for i, r in enumerate(records)], "tenants:1")
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT tenant, message_id FROM hits ORDER BY tenant") == [("acme", "m-1"),
                                                                                    ("globex", "m-4")]
    # the processor's letters, written with their batch
    assert clickhouse.rows("SELECT stage, reason FROM dead_letters ORDER BY reason") == [
        ("processor", "unknown_host"), ("processor", "unknown_key"), ("processor", "wrong_tenant")]
    # every view is per tenant: globex's summary holds nothing of acme's (no sends registered here, so
    # the open counts in the hit totals and in unsent_engaged, not in the rates)
    rows = clickhouse.rows("SELECT tenant, sum(opens_human + opens_proxy + opens_machine), sum(unsent_engaged) "
                           "FROM campaign_summary GROUP BY tenant ORDER BY tenant")
    assert rows == [("acme", 1, 1), ("globex", 1, 1)]


def test_tenants_file_round_trip_and_validation(tmp_path: Path, two_tenants: TenantRegistry) -> None:
    path = tmp_path / "tenants.json"
    two_tenants.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = TenantRegistry.load(path)
    assert sorted(again.tenants) == ["acme", "globex"]
    found = again.for_host("T.ACME.EXAMPLE:8443")
    assert found is not None
    assert found[0] == "acme"
    assert again.for_host("nobody.example") is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"tenants": [{"name": "a", "domains": ["x.example"], "keys": "k:QUFBQUFBQUFBQUFBQUFBQUFBQUFB"},'
                   ' {"name": "b", "domains": ["x.example"], "keys": "k:QUFBQUFBQUFBQUFBQUFBQUFBQUFB"}]}')
    with pytest.raises(ValueError, match="belongs to both"):
        TenantRegistry.load(bad)


async def test_an_erasure_stays_in_force_against_what_arrives_after_it(clickhouse: ClickHouseDb,
                                                                       keyring: Keyring) -> None:
    """A recipient clicks, is forgotten, and their client clicks another link 0.8 s later (or the
    backlog still holds their hits): nothing of theirs is stored again, and the classifier's revision
    of the first click (now a burst) writes no -1 row that would drive an aggregate negative."""
    from processors.step import ErasureWatch, write_batch
    from tests.unit.processors.builders import CHROME, HTML_ACCEPT, SENT

    t = Topics()
    processor = HitProcessor(keyring, build_classifier(), t)
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    watch = ErasureWatch(processor, writer, every=0)

    def click(hit_id: str, at: float, url: str, recipient: str, offset: int) -> LocalRecord:
        payload = TokenPayload("click", "", "camp", "A", f"msg-{recipient}", recipient, int(SENT * 1000), 0, url)
        raw = RawHit(hit_id, SENT + at, "click", "GET", "t.example.com", "/c/x", keyring.mint(payload),
                     "81.2.69.142", CHROME, "edge-1", dict(HTML_ACCEPT))
        return LocalRecord(t.hits_raw, -1, offset, raw.encode())

    async def batch(records: list[LocalRecord], token: str) -> None:
        await watch.refresh()
        await write_batch(writer, processor.process(records), token)

    try:
        await batch([click("h1", 600.0, "https://shop.example.com/a", "alice", 1),
                     click("b1", 600.0, "https://shop.example.com/a", "bob", 2)], "privacy:1")
        client = clickhouse.client()
        try:
            forget(client, "alice", "", recipient_key(keyring))
        finally:
            client.close()
        await batch([click("h2", 600.8, "https://shop.example.com/b", "alice", 3),
                     click("b2", 900.0, "https://shop.example.com/b", "bob", 4)], "privacy:2")
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT count() FROM events WHERE recipient_id = 'alice'") == [(0,)]
    assert clickhouse.rows("SELECT count() FROM message_totals WHERE recipient_id = 'alice'") == [(0,)]
    assert clickhouse.rows("SELECT recipient_id, clicks_human, clicks_filtered FROM message_totals FINAL") == [
        ("bob", 2, 0)]
    assert clickhouse.rows("SELECT hit_id FROM hits ORDER BY hit_id") == [("b1",), ("b2",)]


async def test_dead_letters_keep_no_full_address_and_forget_finds_exactly_the_recipients(
        clickhouse: ClickHouseDb, keyring: Keyring) -> None:
    """A hit signed with a retired key and a send with an impossible time become the processor's dead
    letters: neither keeps a full IP (nor X-Forwarded-For) in `raw`, and `forget` removes exactly the
    recipient's (by the token's decoded payload, not by a prefix: 'ali' and 'alice-2' are not 'alice')."""
    from schemas.sends import Send

    t = Topics()
    retired = Keyring({"old": b"retired-secret-0123456789xx"}, "old")

    def hit(recipient: str, offset: int) -> LocalRecord:
        token = retired.mint(TokenPayload("open", "", "c", "A", f"m-{recipient}", recipient, 1_790_000_000_000))
        raw = RawHit(f"h-{recipient}", 1_790_000_100.0, "open", "GET", "t.example.com", f"/o/{token}.gif", token,
                     "81.2.69.142", "Mozilla/5.0", "e", {"x-forwarded-for": "203.0.113.77, 81.2.69.142"})
        return LocalRecord(t.hits_raw, -1, offset, raw.encode())

    bad_send = Send("", "c", "A", "m-alice", "alice", 1e300, "x.com", 1)
    processor = HitProcessor(keyring, build_classifier(), t)
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    try:
        await process_and_write(processor, writer, [hit("alice", 1), hit("ali", 2), hit("alice-2", 3),
                                                    LocalRecord(t.sends, -1, 4, bad_send.encode())], "letters:1")
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT count() FROM dead_letters WHERE stage = 'processor'") == [(4,)]
    rows = clickhouse.rows("SELECT ip, raw FROM dead_letters WHERE reason = 'unknown_key'")
    assert {ip for ip, _ in rows} == {"81.2.69.0"}
    assert not any("81.2.69.142" in str(raw) or "203.0.113.77" in str(raw) for _, raw in rows)
    client = clickhouse.client()
    try:
        # its hit's letter and its send's
        assert forget(client, "alice", "", recipient_key(keyring))["dead_letters"] == 2
    finally:
        client.close()
    assert clickhouse.rows("SELECT count() FROM dead_letters") == [(2,)]


async def test_after_forget_nothing_on_disk_or_in_clickhouse_names_the_recipient(clickhouse: ClickHouseDb,
                                                                                 keyring: Keyring) -> None:
    """A recipient with sends, opens, clicks, a conversion and dead letters of every kind (expired and
    wrong-kind fetches, a percent-encoded path, a retired key, a bad time, an undecodable send) is
    forgotten, and the same arrive again afterwards (plus letters made before the erasure, forwarded
    late). Then no table, no system table and no byte of any file under the chDB folder holds the id,
    a plain hash of it (SHA-256 of tenant:id, SHA-256, SHA-1, MD5, ClickHouse's cityHash64 and
    SipHash-128 as a uniqExact state keeps them) or the payload of any of their tokens; and a
    uniqExact state cannot be probed for the id. Another recipient's records, sent alongside, are kept."""
    import hashlib
    import itertools
    import os
    import uuid

    import orjson

    from processors.step import ErasureWatch
    from schemas.sends import Conversion, Send
    from tests.unit.processors.builders import CHROME, HTML_ACCEPT, SENT, as_hits_dlq_values

    target, other = f"erin-{uuid.uuid4().hex[:12]}", f"olaf-{uuid.uuid4().hex[:12]}"
    key = recipient_key(keyring)
    t = Topics()
    processor = HitProcessor(keyring, build_classifier(), t)
    writer = ClickHouseWriter(clickhouse.dsn, clickhouse.database)
    watch = ErasureWatch(processor, writer, every=0)
    offsets = itertools.count(1)
    retired = Keyring({"old": b"retired-secret-0123456789xx"}, "old")
    tokens: dict[str, list[str]] = {target: [], other: []}

    def token(who: str, kind: str = "open", ring: Keyring = keyring, sent_ms: int = int(SENT * 1000),
              expires: int = 0) -> str:
        url = "https://shop.example.com/a" if kind == "click" else ""
        minted = ring.mint(TokenPayload(kind, "", "c", "A", f"m-{who}", who, sent_ms, expires, url))  # type: ignore[arg-type]
        tokens[who].append(minted)
        return minted

    def rec(topic: str, value: bytes) -> LocalRecord:
        return LocalRecord(topic, -1, next(offsets), value)

    def hit(who: str, kind: str, tok: str, at: float) -> LocalRecord:
        raw = RawHit(f"h-{who}-{next(offsets)}", SENT + at, kind, "GET", "t.example.com", f"/{kind[0]}/{tok}", tok,
                     "81.2.69.142", CHROME, "edge-1", dict(HTML_ACCEPT))
        return rec(t.hits_raw, raw.encode())

    def edge_letter(who: str, reason: str, path: str) -> LocalRecord:
        d = DeadLetter(id=f"e-{who}-{next(offsets)}", received_at=SENT + 900, stage="edge", reason=reason,
                       kind="open", method="GET", host="t.example.com", path=path, ip="81.2.69.142", ua=CHROME,
                       edge="edge-1")
        return rec(t.hits_dlq, d.encode())

    def everything(who: str, round_: int) -> list[LocalRecord]:
        send = Send("", "c", "A", f"m-{who}", who, SENT, "x.com", 2)
        bad_send = orjson.loads(send.encode())
        bad_send["links"] = "many"
        expired = token(who, expires=int(SENT * 1000) + 1)
        return [
            rec(t.sends, send.encode()),
            hit(who, "open", token(who), 600.0 + round_), hit(who, "click", token(who, "click"), 700.0 + round_),
            rec(t.conversions,
                Conversion("", f"k-{who}-{round_}", SENT + 800, 5.0, "EUR", message=f"m-{who}").encode()),
            edge_letter(who, "expired", f"/o/{expired}.gif"),
            edge_letter(who, "expired", "/o/" + expired.replace(".", "%2E") + ".gif"),
            edge_letter(who, "wrong_kind", f"/o/{token(who, 'click')}.gif"),
            # Junk naming the id itself, no token: typed by hand, or a scanner guessing URLs.
            edge_letter(who, "malformed", f"/o/{who}.gif"),
            edge_letter(who, "malformed", f"/c/{who.replace('-', '%252D')}?x=1"),
            hit(who, "open", token(who, ring=retired), 650.0),  # a retired key: the processor's letter
            hit(who, "open", token(who, sent_ms=10**16), 660.0),  # sent in the year 318,000: bad_timestamp
            rec(t.sends, orjson.dumps(bad_send)),
        ]

    async def run(records: list[LocalRecord]) -> None:
        """A batch as the batch loop runs it: erasures read, rows written, its own letters among them."""
        await watch.refresh()
        await process_and_write(processor, writer, records, f"erase:{next(offsets)}")

    # letters an older processor made of the target's records before the erasure, still in hits.dlq
    late = as_hits_dlq_values(HitProcessor(keyring, build_classifier(), t).process(
        [hit(target, "open", token(target, ring=retired), 600.0)]))
    assert len(late) == 1
    client = clickhouse.client()
    quiet = {"log_queries": 0}
    try:
        probes = {name: bytes(client.query(f"SELECT {fn}({{r:String}})", parameters={"r": target},
                                           settings=quiet).result_rows[0][0]) if fn == "sipHash128" else
                  int(client.query(f"SELECT {fn}({{r:String}})", parameters={"r": target},
                                   settings=quiet).result_rows[0][0]).to_bytes(8, "little")
                  for name, fn in (("cityHash64", "cityHash64"), ("sipHash64", "sipHash64"),
                                   ("sipHash128", "sipHash128"))}
        await run(everything(target, 0) + everything(other, 0))
        folder = Path(clickhouse.dsn.removeprefix("chdb://"))

        def files_holding(needles: dict[str, bytes]) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for root, _, names in os.walk(folder):
                for n in names:
                    try:
                        data = (Path(root) / n).read_bytes()
                    except OSError:  # a part removed while walking
                        continue
                    for label, needle in needles.items():
                        if needle in data:
                            found.setdefault(label, []).append(str(Path(root) / n))
            return found

        # the control: before forget the id is on disk (a data file keeps short strings as plain bytes)
        assert "id" in files_holding({"id": target.encode()})
        deleted = forget(client, target, "", key)
        # 2 hits (+ nothing else: the others are letters), its send, its conversion, its message's
        # totals, its click's link totals, and its 8 letters (5 from the edge, 2 of them junk naming the bare
        # id, and 3 from the processor)
        assert (deleted["events"], deleted["sends"], deleted["conversions"], deleted["dead_letters"]) == (2, 1, 1, 8)
        assert deleted["message_totals"] >= 1
        assert deleted["link_totals"] >= 1
        # afterwards: the same again, and the late letters forwarded through hits.dlq
        await run(everything(target, 1) + everything(other, 1) + [rec(t.hits_dlq, value) for value in late])

        plain = {"id": target.encode(),
                 "sha256(tenant:id)": recipient_hash("", target).encode(),
                 "sha256(id)": hashlib.sha256(target.encode()).hexdigest().encode(),
                 "sha1(id)": hashlib.sha1(target.encode()).hexdigest().encode(),
                 "md5(id)": hashlib.md5(target.encode()).hexdigest().encode(),
                 **probes,
                 **{f"token payload {i}": tok.split(".")[1].encode() for i, tok in enumerate(tokens[target])}}
        assert files_holding(plain) == {}
        # the other recipient's rows are all there (so the files are searched where they would be)
        assert "id" in files_holding({"id": other.encode()})
        kept = {str(r[0]) for r in client.query(
            "SELECT DISTINCT _table FROM merge(currentDatabase(), '^(events|sends|conversions|message_totals)$') "
            "WHERE recipient_id = {r:String}", parameters={"r": other}, settings=quiet).result_rows}
        assert kept == {"events", "sends", "conversions", "message_totals"}
        assert client.query("SELECT count() FROM hits WHERE recipient_id = {r:String}", parameters={"r": other},
                            settings=quiet).result_rows == [(4,)]

        # every table of the database, by every column's text
        tables = [str(r[0]) for r in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree%'",
            settings=quiet).result_rows]
        assert {"dead_letter_counts", "campaign_sends_hourly", "erasures"} <= set(tables)
        for table in tables:
            for label, needle in plain.items():
                n = client.query(f"SELECT count() FROM {table} WHERE position(toString(tuple(*)), {{n:String}}) > 0",
                                 parameters={"n": needle.decode("latin-1")}, settings=quiet).result_rows[0][0]
                assert n == 0, (table, label)
        # campaign_sends_hourly cannot be probed: adding the id (or its hash) to a state counts one more
        for probe in (target, recipient_hash("", target)):
            grown = client.query(
                "SELECT uniqExactMerge(s) - (SELECT uniqExactMerge(recipients) FROM campaign_sends_hourly) FROM "
                "(SELECT recipients AS s FROM campaign_sends_hourly UNION ALL SELECT uniqExactState({p:String}))",
                parameters={"p": probe}, settings=quiet).result_rows[0][0]
            assert grown == 1
        # ... while the keyed hash (which needs the key) is a member: the probe works
        keyed = keyed_recipient_hash(key, "", other)
        assert client.query(
            "SELECT uniqExactMerge(s) - (SELECT uniqExactMerge(recipients) FROM campaign_sends_hourly) FROM "
            "(SELECT recipients AS s FROM campaign_sends_hourly UNION ALL SELECT uniqExactState({p:String}))",
            parameters={"p": keyed}, settings=quiet).result_rows[0][0] == 0
        # the erasure is recorded under the keyed hash, and the deletes ClickHouse keeps name no one
        assert client.query("SELECT recipient_hash FROM erasures", settings=quiet).result_rows == [
            (keyed_recipient_hash(key, "", target),)]
        mutations = [str(r[0]) for r in client.query(
            "SELECT command FROM system.mutations WHERE database = currentDatabase()", settings=quiet).result_rows]
        assert len(mutations) >= 6
        system_tables = [str(r[0]) for r in client.query(
            "SELECT name FROM system.tables WHERE database = 'system' AND name IN "
            "('mutations', 'processes', 'query_log', 'user_query_log', 'text_log', 'part_log', 'query_views_log')",
            settings=quiet).result_rows]
        assert "mutations" in system_tables
        for table in system_tables:
            text = str(client.query(f"SELECT * FROM system.{table}", settings=quiet).result_rows)
            for label, needle in plain.items():
                assert needle.decode("latin-1") not in text, (table, label)
    finally:
        client.close()
        await writer.close()
