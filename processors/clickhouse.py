"""ClickHouse access for both DSNs: chdb://PATH (the engine in-process) and http(s):// (a server)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from schemas.clickhouse_cluster import split_statements

DEFAULT_DATABASE = "pixeltrack"
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def connect(dsn: str, database: str | None = DEFAULT_DATABASE, **settings: Any) -> Client:
    """A sync clickhouse-connect client. For chdb:// the rest of the DSN is a folder path (relative or
    absolute); chDB lets one process hold one path, so callers share a path and differ by database."""
    if database is not None and not _DB_RE.match(database):
        raise ValueError(f"database name {database!r} must be letters, digits and _")
    if dsn.startswith("chdb://"):
        path = str(Path(dsn[len("chdb://"):]).expanduser().resolve())
        Path(path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(interface="chdb", path=path, database=database,
                                             settings=settings or None)
    return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None)


READ_TIMEOUT = 60  # seconds a read-only query may run (max_execution_time): it shares a thread with inserts
_READ_START = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
_SUBQUERY_START = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)


def readonly_sql(sql: str) -> str:
    """`sql` as a query that can only read, or ValueError. readonly=1 still lets a SELECT write a file
    (INTO OUTFILE … APPEND): a SELECT or WITH runs as a subquery, where INTO OUTFILE (and a second
    statement) is a syntax error; SHOW, DESCRIBE, EXPLAIN and EXISTS cannot write."""
    text = sql.strip().rstrip(";").strip()
    if not _READ_START.match(text):
        raise ValueError("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS queries are taken here")
    if _SUBQUERY_START.match(text):
        return f"SELECT * FROM (\n{text}\n)"
    if re.search(r"\bINTO\s+OUTFILE\b", text, re.IGNORECASE):
        raise ValueError("INTO OUTFILE is not taken here")
    return text


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL) of schemas/clickhouse/NNN_*.sql in order."""
    folder = resources.files("schemas") / "clickhouse"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(n, (folder / n).read_text(encoding="utf-8")) for n in names]


_TABLE_SETTINGS = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\b.*\bSETTINGS\s+(?P<settings>[^;]+?)\s*;?\s*$",
                             re.DOTALL)


_MATERIALIZED_VIEW = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) TO \w+ AS\s+(?P<select>.+?);?\s*$", re.DOTALL)


def _view_query_of(statement: str) -> tuple[str, str] | None:
    """(view, SELECT) of a CREATE MATERIALIZED VIEW … TO … AS SELECT statement."""
    m = _MATERIALIZED_VIEW.match(statement.strip())
    return (m["name"], m["select"]) if m else None


_TABLE_TTL = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\b.*^TTL (?P<ttl>.+? INTERVAL (?P<days>\d+) DAY)$",
                        re.DOTALL | re.MULTILINE)
_TTL_DAYS = re.compile(r"\bTTL .*?toIntervalDay\((\d+)\)")


def _ttl_of(statement: str) -> tuple[str, str, int] | None:
    """(table, TTL expression, days) of a CREATE TABLE statement with a TTL of whole days."""
    m = _TABLE_TTL.match(statement.strip())
    return (m["name"], m["ttl"], int(m["days"])) if m else None


def _settings_of(statement: str) -> tuple[str, str] | None:
    """(table, "name = value, …") of a CREATE TABLE statement with a trailing SETTINGS clause."""
    m = _TABLE_SETTINGS.match(statement.strip())
    return (m["name"], m["settings"]) if m else None


def migrate(dsn: str, database: str = DEFAULT_DATABASE, retention_days: int = 395) -> list[str]:
    """Creates the database and applies every DDL file; idempotent (tables IF NOT EXISTS, views replaced).
    A table that exists already gets the SETTINGS its CREATE gives (a setting added in a later release,
    such as the deduplication window of a materialized view's target, reaches older installs), when it
    is a single-node *MergeTree; a materialized view that exists already gets the query its CREATE
    gives. Returns the names of files applied for the first time."""
    admin = connect(dsn, database=None)
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    finally:
        admin.close()
    client = connect(dsn, database=database)
    try:
        client.command("CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime "
                       "DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY name")
        done = {r[0] for r in client.query("SELECT name FROM schema_migrations").result_rows}
        applied = []
        for name, sql in migration_files():
            for statement in split_statements(sql.replace("{retention_days}", str(int(retention_days)))):
                client.command(statement)
                view = _view_query_of(statement)
                if view is not None:
                    # IF NOT EXISTS keeps an older definition: the view's query is set to the file's, in
                    # place (no window in which inserts bypass it, unlike a drop and create).
                    client.command(f"ALTER TABLE {view[0]} MODIFY QUERY {view[1]}")
                ttl = _ttl_of(statement)
                if ttl is not None:
                    # A table made with another retention keeps it under IF NOT EXISTS: set the new one
                    # (only when it differs: a TTL change recomputes the TTL of every part).
                    full = client.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                                        "AND name = {n:String}", parameters={"n": ttl[0]}).result_rows
                    days = _TTL_DAYS.search(str(full[0][0])) if full else None
                    if days is not None and int(days.group(1)) != ttl[2]:
                        client.command(f"ALTER TABLE {ttl[0]} MODIFY TTL {ttl[1]}")
                found = _settings_of(statement)
                if found is not None:
                    engine = client.query("SELECT engine FROM system.tables WHERE database = currentDatabase() "
                                          "AND name = {n:String}", parameters={"n": found[0]}).result_rows
                    if engine and engine[0][0].endswith("MergeTree") and not engine[0][0].startswith("Replicated"):
                        client.command(f"ALTER TABLE {found[0]} MODIFY SETTING {found[1]}")
            if name not in done:
                client.insert("schema_migrations", [[name]], column_names=["name"])
                applied.append(name)
        return applied
    finally:
        client.close()
