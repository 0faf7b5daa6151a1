"""The single-node DDL runs on the ClickHouse engine, and deploy/clickhouse/cluster.sql is its cluster form."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from processors.clickhouse import connect, migrate, migration_files
from schemas.clickhouse_cluster import cluster_ddl, split_statements
from tests.plugins.clickhouse import ClickHouseDb
from tests.unit.deploy.deployfiles import DEPLOY

CLUSTER_SQL = DEPLOY / "clickhouse" / "cluster.sql"
REGENERATE = "pixeltrack ddl --cluster pixeltrack --out deploy/clickhouse/cluster.sql"
REPLICA_ARGS = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
ON_CLUSTER = "ON CLUSTER 'pixeltrack'"


def _objects(sql_texts: list[str]) -> dict[str, dict[str, str]]:
    """kind → {name: statement} of CREATE TABLE / MATERIALIZED VIEW / VIEW statements."""
    out: dict[str, dict[str, str]] = {"table": {}, "mv": {}, "view": {}, "alter": {}}
    for text in sql_texts:
        for st in split_statements(text):
            # A column added to an existing table (an upgrade), only if it does not exist.
            alter = re.match(r"ALTER\s+TABLE\s+([\w.]+)(?:\s+ON\s+CLUSTER\s+'\w+')?\s+ADD\s+COLUMN\s+IF\s+NOT\s+"
                             r"EXISTS\s+(\w+)", st)
            if alter:
                out["alter"][f"{alter[1]}.{alter[2]}"] = st
                continue
            # Tables, materialized views and databases only if they do not exist; plain views replaced.
            m = re.match(r"CREATE\s+(TABLE|MATERIALIZED\s+VIEW|DATABASE)\s+IF\s+NOT\s+EXISTS\s+([\w.]+)"
                         r"|CREATE\s+OR\s+REPLACE\s+(VIEW)\s+([\w.]+)", st)
            assert m, f"unexpected statement {st[:60]!r}"
            kind = {"TABLE": "table", "VIEW": "view", "DATABASE": "database"}.get(m[1] or m[3], "mv")
            out.setdefault(kind, {})[m[2] or m[4]] = st
    return out


def single_node() -> dict[str, dict[str, str]]:
    return _objects([sql for _, sql in migration_files()])


def cluster() -> dict[str, dict[str, str]]:
    return _objects([CLUSTER_SQL.read_text(encoding="utf-8")])


def _engine(statement: str) -> tuple[str, str]:
    """(engine name, its arguments) of a CREATE TABLE statement."""
    m = re.search(r"ENGINE\s*=\s*(\w+)(?:\(([^\n]*)\))?\s*(?:\n|$)", statement)
    assert m, statement
    return m[1], m[2] or ""


def test_migration_created_every_table_and_view(clickhouse: ClickHouseDb) -> None:
    objects = single_node()
    engines = dict(clickhouse.rows(f"SELECT name, engine FROM system.tables WHERE database = '{clickhouse.database}'"))
    for name, statement in objects["table"].items():
        assert engines.get(name) == _engine(statement)[0], f"table {name}"
    for name in objects["mv"]:
        assert engines.get(name) == "MaterializedView", f"materialized view {name}"
    for name in objects["view"]:
        assert engines.get(name) == "View", f"view {name}"
    assert {"events", "sends", "conversions", "campaign_summary", "link_stats"} <= set(engines)


def test_migrating_again_replaces_views_of_an_older_release(clickhouse: ClickHouseDb) -> None:
    """Views hold no data: a migration brings their new definitions (tables are left as they are)."""
    c = clickhouse.client()
    try:
        c.command("CREATE OR REPLACE VIEW campaign_summary AS SELECT 'old' AS campaign")
        migrate(clickhouse.dsn, clickhouse.database, retention_days=3650)
        columns = [r[0] for r in c.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                         "AND table = 'campaign_summary' ORDER BY position").result_rows]
    finally:
        c.close()
    assert columns[:5] == ["tenant", "campaign", "variant", "delivered", "recipients"]


def test_cluster_sql_is_generated_from_the_single_node_ddl() -> None:
    assert CLUSTER_SQL.read_text(encoding="utf-8") == cluster_ddl("pixeltrack", migration_files()), (
        f"deploy/clickhouse/cluster.sql is out of date: regenerate it with `{REGENERATE}`")
    assert CLUSTER_SQL.read_text(encoding="utf-8").startswith("-- GENERATED FILE")
    assert REGENERATE in CLUSTER_SQL.read_text(encoding="utf-8")


def test_every_table_has_a_replicated_local_table_and_a_distributed_table() -> None:
    one, many = single_node(), cluster()
    assert set(many["database"]) == {"pixeltrack"}
    for name, statement in one["table"].items():
        engine, args = _engine(statement)
        local = many["table"][f"pixeltrack.{name}_local"]
        assert ON_CLUSTER in local.splitlines()[0]
        assert _engine(local) == (f"Replicated{engine}", ", ".join(a for a in (REPLICA_ARGS, args) if a))
        distributed = many["table"][f"pixeltrack.{name}"]
        assert ON_CLUSTER in distributed.splitlines()[0]
        assert f"AS pixeltrack.{name}_local" in distributed
        d_engine, d_args = _engine(distributed)
        assert d_engine == "Distributed"
        assert d_args.startswith(f"'pixeltrack', 'pixeltrack', '{name}_local'")
        assert "non_replicated_deduplication_window" not in local
        if "non_replicated_deduplication_window" in statement:
            assert "replicated_deduplication_window = 10000" in local, "the insert dedup window carries over"
    assert len(many["table"]) == 2 * len(one["table"])


def test_added_columns_are_added_to_the_local_and_the_distributed_tables() -> None:
    one, many = single_node(), cluster()
    assert one["alter"], "013_origin.sql adds events.origin"
    for name in one["alter"]:
        table, column = name.split(".")
        assert {f"pixeltrack.{table}_local.{column}", f"pixeltrack.{table}.{column}"} <= set(many["alter"])


@pytest.mark.parametrize("table", ["events", "sends", "conversions"])
def test_message_tables_are_sharded_by_message(table: str) -> None:
    _, args = _engine(cluster()["table"][f"pixeltrack.{table}"])
    assert args.endswith(", cityHash64(message_id)")


def test_materialized_views_read_and_write_local_tables() -> None:
    one, many = single_node(), cluster()
    assert {f"pixeltrack.{n}" for n in one["mv"]} == set(many["mv"])
    for name, statement in many["mv"].items():
        assert ON_CLUSTER in statement.splitlines()[0]
        target = re.search(r"^TO (\S+)$", statement, re.M)
        assert target, name
        assert target[1].endswith("_local"), name
        sources = re.findall(r"\bFROM\s+([\w.]+)", statement)
        assert sources, name
        assert all(s.startswith("pixeltrack.") and s.endswith("_local") for s in sources), name


def test_views_read_distributed_tables() -> None:
    one, many = single_node(), cluster()
    assert {f"pixeltrack.{n}" for n in one["view"]} == set(many["view"])
    tables = {f"pixeltrack.{n}" for n in one["table"]}
    for name, statement in many["view"].items():
        assert ON_CLUSTER in statement.splitlines()[0]
        qualified = set(re.findall(r"\b(?:FROM|JOIN)\s+(pixeltrack\.\w+)", statement))
        assert qualified, name
        assert qualified <= tables, name
        assert "_local" not in statement, f"{name} must read the Distributed tables"


def test_cluster_sql_parses(clickhouse: ClickHouseDb) -> None:
    """The ClickHouse parser accepts every statement (chDB parses ON CLUSTER; it cannot run it)."""
    client = clickhouse.client()
    try:
        statements = split_statements(CLUSTER_SQL.read_text(encoding="utf-8"))
        for statement in statements:
            ast = client.query(f"EXPLAIN AST {statement}").result_rows
            assert ast, statement[:80]
        with pytest.raises(Exception, match="Syntax error"):
            client.query("EXPLAIN AST CREATE TABLE t ON CLUSTER 'c' AS u ENGINE = Distributed('c', 'd', 'u'")
    finally:
        client.close()


def _one_shard(sql: str) -> str:
    """The cluster DDL as one shard with one replica sees it: plain engines, Merge in place of Distributed."""
    sql = re.sub(r" ON CLUSTER '[^']*'", "", sql)
    sql = sql.replace(f"({REPLICA_ARGS}, ", "(").replace(f"({REPLICA_ARGS})", "()")
    sql = re.sub(r"Replicated(\w*MergeTree)\(", r"\1(", sql)
    return re.sub(r"ENGINE = Distributed\('[^']*', '(\w+)', '(\w+)'[^;]*;", r"ENGINE = Merge('\1', '^\2$');", sql)


@pytest.fixture
def one_shard(chdb_dsn: str) -> Iterator[str]:
    """A database holding the cluster DDL as one shard runs it; its name."""
    database = f"c_{uuid.uuid4().hex[:12]}"
    admin = connect(chdb_dsn, None)
    try:
        # The same TTL as the `clickhouse` fixture's, so the fixed timestamps below are kept by both.
        sql = cluster_ddl("pixeltrack", migration_files(), database, retention_days=3650)
        for statement in split_statements(_one_shard(sql)):
            admin.command(statement)
        yield database
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        admin.close()


ROWS = {
    "sends": "(tenant, campaign, variant, message_id, recipient_id, sent_at) VALUES "
             "('', 'spring', 'A', 'm1', 'r1', '2025-01-10 10:00:00'), ('', 'spring', 'B', 'm2', 'r2', "
             "'2025-01-10 10:00:00'), ('', 'spring', 'A', 'm3', 'r3', '2025-01-10 10:00:00')",
    # m2's open is revised from machine to human: a collapsing pair (-1 old, +1 new).
    "events": "(hit_id, kind, ts, campaign, variant, message_id, recipient_id, link_url, verdict, source, "
              "mail_client, device, country, revision, sign) VALUES "
              "('h1', 'open', '2025-01-10 11:00:00', 'spring', 'A', 'm1', 'r1', '', 'human', 'direct', "
              "'Apple Mail', 'mobile', 'FR', 0, 1), "
              "('h2', 'open', '2025-01-10 11:05:00', 'spring', 'B', 'm2', 'r2', '', 'machine', 'scanner', "
              "'', '', '', 0, 1), "
              "('h2', 'open', '2025-01-10 11:05:00', 'spring', 'B', 'm2', 'r2', '', 'machine', 'scanner', "
              "'', '', '', 0, -1), "
              "('h2', 'open', '2025-01-10 11:05:00', 'spring', 'B', 'm2', 'r2', '', 'human', 'direct', "
              "'Gmail', 'desktop', 'DE', 1, 1), "
              "('h3', 'click', '2025-01-10 12:00:00', 'spring', 'A', 'm1', 'r1', 'https://example.com/a', "
              "'human', 'direct', 'Apple Mail', 'mobile', 'FR', 0, 1), "
              "('h4', 'click', '2025-01-10 12:01:00', 'spring', 'A', 'm3', 'r3', 'https://example.com/a', "
              "'machine', 'scanner', '', '', '', 0, 1)",
    "conversions": "(idempotency_key, ts, campaign, variant, message_id, recipient_id, link, value, currency) "
                   "VALUES ('k1', '2025-01-10 13:00:00', 'spring', 'A', 'm1', 'r1', 'https://example.com/a', "
                   "25.5, 'EUR')",
}
VIEWS = ["campaign_summary", "link_stats", "client_stats", "campaign_hourly", "hits"]


def test_cluster_ddl_on_one_shard_answers_like_the_single_node_ddl(clickhouse: ClickHouseDb, one_shard: str) -> None:
    """Rows inserted as a Distributed table would insert them on one shard give the analyst views the
    answers the single-node schema gives for the same rows: the MVs and views are wired the same way."""
    single = clickhouse.client()
    shard = connect(clickhouse.dsn, one_shard)
    try:
        for table, values in ROWS.items():
            single.command(f"INSERT INTO {table} {values}")
            shard.command(f"INSERT INTO {table}_local {values}")
        for view in VIEWS:
            expected = [tuple(r) for r in single.query(f"SELECT * FROM {view} ORDER BY ALL").result_rows]
            assert expected, f"{view} is empty: the comparison would prove nothing"
            got = [tuple(r) for r in shard.query(f"SELECT * FROM {view} ORDER BY ALL").result_rows]
            assert got == expected, view
        summary = shard.query("SELECT variant, delivered, unique_opens, unique_clicks, conversions "
                              "FROM campaign_summary ORDER BY variant").result_rows
        assert [tuple(r) for r in summary] == [("A", 2, 1, 1, 1), ("B", 1, 1, 0, 0)]
    finally:
        single.close()
        shard.close()


def test_cluster_ddl_takes_database_and_retention() -> None:
    sql = cluster_ddl("prod-eu", migration_files(), "analytics", retention_days=30)
    assert "CREATE TABLE IF NOT EXISTS analytics.events_local ON CLUSTER 'prod-eu'" in sql
    assert "Distributed('prod-eu', 'analytics', 'events_local', cityHash64(message_id))" in sql
    assert "INTERVAL 30 DAY" in sql
    assert "{retention_days}" not in sql
    assert "pixeltrack." not in sql


@pytest.mark.parametrize(("sql", "message"), [
    ("ALTER TABLE events ADD COLUMN x UInt8;", "no cluster form"),
    ("CREATE TABLE IF NOT EXISTS buf (message_id String) ENGINE = Memory;", "engine Memory"),
    ("CREATE TABLE IF NOT EXISTS r (message_id String) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY tuple();",
     "engine ReplicatedMergeTree"),
    ("CREATE TABLE IF NOT EXISTS audit (id String) ENGINE = MergeTree ORDER BY id;", "sharding key"),
    ("CREATE MATERIALIZED VIEW IF NOT EXISTS mv ENGINE = MergeTree ORDER BY x AS SELECT 1 AS x;", "no cluster form"),
])
def test_cluster_ddl_refuses_what_it_cannot_translate(sql: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        cluster_ddl("c", [("009_new.sql", sql)])
    assert "009_new.sql" in str(err.value)


@pytest.mark.parametrize("name", ["", "a b", "x'y", "c;DROP"])
def test_cluster_ddl_refuses_bad_cluster_names(name: str) -> None:
    with pytest.raises(ValueError, match="cluster name"):
        cluster_ddl(name, migration_files())


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = "-- a comment; with a semicolon\nSELECT ';' AS x, 'it''s' AS y; -- trailing\n\nSELECT 2 -- x;\n;\n"
    assert split_statements(sql) == ["SELECT ';' AS x, 'it''s' AS y", "SELECT 2"]
