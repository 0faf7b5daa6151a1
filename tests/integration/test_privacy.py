"""Recipient privacy on chDB: IP truncation, do-not-track, erasure across every table, tenants apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixeltrack.simulate import load_patterns, simulate
from processors.classify_file import build_classifier
from processors.local_runner import LocalRecord
from processors.pipeline import HitProcessor
from processors.privacy import forget
from processors.step import process_and_write
from processors.writer import ClickHouseWriter
from schemas.privacy import keyed_recipient_hash, recipient_hash, recipient_key
from schemas.records import DeadLetter, RawHit, Record
from schemas.tenants import Tenant, TenantRegistry
from schemas.tokens import Keyring, TokenPayload
from schemas.topics import Topics
from tests.integration.test_analytics import FIXTURE, run_pipeline
from tests.plugins.clickhouse import ClickHouseDb

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
        out = await process_and_write(processor, writer, [LocalRecord(r.topic, -1, i, r.value)
                                                          for i, r in enumerate(records)], "tenants:1")
    finally:
        await writer.close()
    assert clickhouse.rows("SELECT tenant, message_id FROM hits ORDER BY tenant") == [("acme", "m-1"),
                                                                                    ("globex", "m-4")]
    reasons = sorted(DeadLetter.decode(r.value).reason for r in out.to_dlq)
    assert reasons == ["unknown_host", "unknown_key", "wrong_tenant"]
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
    out = processor.process([hit("alice", 1), hit("ali", 2), hit("alice-2", 3),
                             LocalRecord(t.sends, -1, 4, bad_send.encode())])
    assert len(out.to_dlq) == 4
    await feed(clickhouse, processor, out.to_dlq)
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
