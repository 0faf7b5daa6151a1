"""ClickHouse access for both DSNs: chdb://PATH (the engine in-process) and http(s):// (a server)."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

from schemas.clickhouse_cluster import split_statements

DEFAULT_DATABASE = "pixeltrack"
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class ClickHouseUnavailable(ConnectionError):
    """No ClickHouse to talk to: a server that does not answer, or a chDB folder another process holds.
    The message is one line naming the DSN (without credentials) and the reason."""


def public_dsn(dsn: str) -> str:
    """`dsn` without user:password, for logs and messages."""
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", dsn)


_connecting = threading.local()


def _quiet_while_connecting(record: logging.LogRecord) -> bool:
    """clickhouse-connect (and urllib3 under it) log warnings, one with a traceback, when the first request
    fails; while `connect` makes that request the failure is raised as ClickHouseUnavailable instead, which
    says it in one line."""
    return not getattr(_connecting, "active", False)


for _name in ("clickhouse_connect.driver._backend.http_sync", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_quiet_while_connecting)


def _root_reason(exc: BaseException) -> str:
    """The innermost cause's words ("[Errno 111] Connection refused"), not the layers of wrappers."""
    reason: BaseException = exc
    while reason.__cause__ is not None or reason.__context__ is not None:
        reason = reason.__cause__ or reason.__context__  # type: ignore[assignment]
    errno_words = re.search(r"\[Errno -?\d+\] [^\"')]+", str(reason))
    if errno_words:
        return errno_words.group(0).strip()
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__


def connect(dsn: str, database: str | None = DEFAULT_DATABASE, **settings: Any) -> Client:
    """A sync clickhouse-connect client. For chdb:// the rest of the DSN is a folder path (relative or
    absolute); chDB lets one process hold one path, so callers share a path and differ by database."""
    if database is not None and not _DB_RE.match(database):
        raise ValueError(f"database name {database!r} must be letters, digits and _")
    if dsn.startswith("chdb://"):
        path = Path(dsn[len("chdb://"):]).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return _open_chdb(path, database, settings)
    _connecting.active = True
    try:
        return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None)
    except OperationalError as exc:
        raise ClickHouseUnavailable(f"cannot reach ClickHouse at {public_dsn(dsn)}: {_root_reason(exc)}") from None
    finally:
        _connecting.active = False


def chdb_holder(path: Path) -> int | None:
    """The pid of the process holding the chDB folder `path` (its status file says it), or None."""
    try:
        found = re.search(r"^PID: (\d+)$", (path / "status").read_text(), re.MULTILINE)
    except (OSError, UnicodeDecodeError):
        return None
    return int(found.group(1)) if found else None


def _open_chdb(path: Path, database: str | None, settings: dict[str, Any]) -> Client:
    """A chDB client on `path`. The engine writes its own error to the process's stderr (file descriptor
    2, past Python) before raising it: what it writes while it opens is held and written out after, but
    for the line of a folder another process holds, which ClickHouseUnavailable says in one line."""
    held = False
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as said:
            os.dup2(said.fileno(), 2)
            try:
                try:
                    return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database,
                                                         settings=settings or None)
                except ProgrammingError as exc:
                    if "already initialized with path" not in str(exc):
                        raise
                    # This process's engine is on another folder, kept by a client nothing references any
                    # more but a reference cycle (a traceback's frames, say): the collector frees it, and
                    # the engine is free for this folder. A client still in use keeps it: held, below.
                    gc.collect()
                    return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database,
                                                         settings=settings or None)
            except ProgrammingError as exc:
                held = "EmbeddedServer" in str(exc) or "Unable to open the chdb engine" in str(exc)
                if not held:
                    raise
                pid = chdb_holder(path)
                raise ClickHouseUnavailable(
                    f"chDB at {path} is held by {f'process {pid}' if pid else 'another process'} (chDB is one "
                    "process's at a time): retry once it ends, or use a ClickHouse server (--clickhouse "
                    "http://HOST:8123)") from None
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                said.seek(0)
                lines = said.read().splitlines(keepends=True)
                os.write(2, b"".join(x for x in lines if not (held and b"Cannot lock file" in x)))
    finally:
        os.close(saved)


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


_CREATE_TABLE_NAME = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\b")
_TABLE_TTL = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\b.*^TTL (?P<ttl>.+? INTERVAL (?P<days>\d+) DAY)$",
                        re.DOTALL | re.MULTILINE)
_TTL_DAYS = re.compile(r"\bTTL .*?toIntervalDay\((\d+)\)")


def _ttl_of(statement: str) -> tuple[str, str, int] | None:
    """(table, TTL expression, days) of a CREATE TABLE statement with a TTL of whole days."""
    m = _TABLE_TTL.match(statement.strip())
    return (m["name"], m["ttl"], int(m["days"])) if m else None


_COLUMN_LINE = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[A-Z].*?),?$", re.MULTILINE)


def _columns_of(statement: str) -> list[tuple[str, str]]:
    """(name, type) of a CREATE TABLE statement's columns, in order (INDEX lines left out)."""
    head = statement.split("\nENGINE", 1)[0]
    return [(m["name"], m["type"]) for m in _COLUMN_LINE.finditer(head)]


def _settings_of(statement: str) -> tuple[str, str] | None:
    """(table, "name = value, …") of a CREATE TABLE statement with a trailing SETTINGS clause."""
    m = _TABLE_SETTINGS.match(statement.strip())
    return (m["name"], m["settings"]) if m else None


DEFAULT_DEAD_LETTER_RETENTION_DAYS = 14


def schema_sql(sql: str, retention_days: int, dead_letter_retention_days: int) -> str:
    """A DDL file with its retention placeholders filled in."""
    return (sql.replace("{retention_days}", str(int(retention_days)))
            .replace("{dead_letter_retention_days}", str(int(dead_letter_retention_days))))


def migrate(dsn: str, database: str = DEFAULT_DATABASE, retention_days: int = 395,
            dead_letter_retention_days: int = DEFAULT_DEAD_LETTER_RETENTION_DAYS) -> list[str]:
    """Creates the database and applies every DDL file; idempotent (tables IF NOT EXISTS, views replaced).
    What IF NOT EXISTS would keep from an older release is brought up to date: a materialized view gets
    the query its CREATE gives, a single-node *MergeTree table its SETTINGS (such as the deduplication
    window of a view's target) — each once per definition, recorded in schema_migrations (an ALTER
    takes locks that inserts wait on, so not at every start) — and the raw tables the TTL of
    `retention_days` (dead_letters: `dead_letter_retention_days`) when theirs differs. Returns the names
    of files applied for the first time."""
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
        tables = {str(n): (str(e), str(full)) for n, e, full in client.query(
            "SELECT name, engine, engine_full FROM system.tables WHERE database = currentDatabase()").result_rows}

        def once(key: str, alter: str) -> None:
            key = f"{key}:{hashlib.sha256(alter.encode()).hexdigest()[:16]}"
            if key not in done:
                client.command(alter)
                client.insert("schema_migrations", [[key]], column_names=["name"])
                done.add(key)

        applied = []
        for name, sql in migration_files():
            for statement in split_statements(schema_sql(sql, retention_days, dead_letter_retention_days)):
                client.command(statement)
                created = _CREATE_TABLE_NAME.match(statement.strip())
                if created is not None and created["name"] in tables:
                    # A table from an older release gets the columns added since (single node).
                    have = {str(r[0]) for r in client.query(
                        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
                        parameters={"t": created["name"]}).result_rows}
                    after = ""
                    for column, type_ in _columns_of(statement):
                        if column not in have:
                            place = f" AFTER {after}" if after else " FIRST"
                            client.command(f"ALTER TABLE {created['name']} ADD COLUMN IF NOT EXISTS {column} {type_}"
                                           f"{place}")
                        after = column
                view = _view_query_of(statement)
                if view is not None:
                    # In place: no window in which inserts bypass the view, unlike a drop and create.
                    once(f"query:{view[0]}", f"ALTER TABLE {view[0]} MODIFY QUERY {view[1]}")
                ttl = _ttl_of(statement)
                days = _TTL_DAYS.search(tables.get(ttl[0], ("", ""))[1]) if ttl is not None else None
                if ttl is not None and days is not None and int(days.group(1)) != ttl[2]:
                    client.command(f"ALTER TABLE {ttl[0]} MODIFY TTL {ttl[1]}")  # recomputes every part's TTL
                found = _settings_of(statement)
                engine = tables.get(found[0], ("", ""))[0] if found is not None else ""
                if found is not None and engine.endswith("MergeTree") and not engine.startswith("Replicated"):
                    once(f"settings:{found[0]}", f"ALTER TABLE {found[0]} MODIFY SETTING {found[1]}")
            if name not in done:
                client.insert("schema_migrations", [[name]], column_names=["name"])
                applied.append(name)
        return applied
    finally:
        client.close()
