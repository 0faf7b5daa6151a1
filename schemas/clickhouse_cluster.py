"""ClickHouse cluster DDL made from the single-node DDL (schemas/clickhouse/*.sql), its one source of truth.

Every `*MergeTree` table becomes `<table>_local`, replicated (`Replicated*MergeTree` under
/clickhouse/tables/{shard}/{database}/{table}, replica {replica}; the engine's own arguments kept),
plus a `Distributed` table under the original name, so every reader and writer keeps using the names
it uses on a single node. Materialized views run on each shard, reading from and writing to the
`_local` tables; plain views read the Distributed tables. Everything is `ON CLUSTER`; tables and
materialized views are `IF NOT EXISTS`, plain views `OR REPLACE` (they hold no data), so the output
can be applied again after an upgrade and brings its new view definitions.

Sharding: the tables with a message id that the processors insert into are sharded by
`cityHash64(message_id)`, so every row of one message lives on one shard. `FINAL` on a Distributed
table runs per shard: the collapsing pair of a verdict revision (-1 old, +1 new) must meet to
collapse (the `hits` view), and a message's sends, hits and conversions must feed one per-message row
of `message_totals` (what unique opens, clicks and CTOR are counted from) rather than one per shard.
A deterministic key also keeps exactly-once: a retried insert (same dedup token) splits into the same
per-shard blocks, which each shard's replicated deduplication recognises. Tables that only
materialized views write get no sharding key, so a stray insert through their Distributed table fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from schemas.settings import Settings

DEFAULT_DATABASE = "pixeltrack"
DEFAULT_RETENTION_DAYS = int(Settings.model_fields["retention_days"].default)
DEFAULT_DEAD_LETTER_RETENTION_DAYS = int(Settings.model_fields["dead_letter_retention_days"].default)
LOCAL_SUFFIX = "_local"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
MESSAGE_SHARDING_KEY = "cityHash64(message_id)"
# Inserted tables that are not sharded by message (the rest with a message_id column are). A key must be
# deterministic, and for a Replacing/Collapsing engine a function of its ORDER BY columns, so rows
# that replace one another meet on one shard.
SHARDING_KEYS = {
    "dead_letters": "cityHash64(id)",
    "dead_letter_counts": "cityHash64(stage, reason, edge, kind, minute)",
    "erasures": "cityHash64(recipient_hash)",
    # One recipient's opt-outs replace one another (ORDER BY tenant, recipient_hash, campaign), and
    # `forget` finds them on one shard.
    "unsubscribes": "cityHash64(recipient_hash)",
    # A replayed site visit replaces itself (ORDER BY tenant, site, hit_id): on the same shard.
    "site_visits": "cityHash64(hit_id)",
    # A recipient's consent history on one shard; an aggregate send's repeats (one key) meet on one shard.
    "consents": "cityHash64(tenant, recipient_id)",
    "aggregate_sends": "cityHash64(tenant, campaign, variant, key)",
}

_CLUSTER_RE = re.compile(r"^[A-Za-z0-9_.{}-]{1,128}$")
_DATABASE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_IF_NOT_EXISTS = r"(?:IF\s+NOT\s+EXISTS\s+)?"
_CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+{_IF_NOT_EXISTS}(?P<name>\w+)\s*\(", re.I)
_ENGINE = re.compile(r"\s*ENGINE\s*=\s*(?P<engine>\w+)", re.I)
_CREATE_MV = re.compile(
    rf"CREATE\s+MATERIALIZED\s+VIEW\s+{_IF_NOT_EXISTS}(?P<name>\w+)\s+TO\s+(?P<target>\w+)\s+AS\s+(?P<select>.+)",
    re.I | re.S)
_CREATE_VIEW = re.compile(rf"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+{_IF_NOT_EXISTS}(?P<name>\w+)\s+AS\s+(?P<select>.+)",
                          re.I | re.S)
# A column added to a table of an earlier file (an upgrade of an existing database): idempotent by IF NOT EXISTS.
_ALTER_ADD = re.compile(r"ALTER\s+TABLE\s+(?P<name>\w+)\s+(?P<change>ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\s+.+)",
                        re.I | re.S)
# A table named after FROM or JOIN; not a table function, not already qualified.
_SOURCE = re.compile(r"\b(?P<kw>FROM|JOIN)(?P<ws>\s+)(?P<name>[A-Za-z_]\w*)\b(?!\s*[(.])", re.I)
_MESSAGE_COLUMN = re.compile(r"^\s*message_id\s", re.M)


_Kind = Literal["table", "materialized_view", "view", "alter"]


@dataclass(frozen=True, slots=True)
class _Statement:
    source: str  # file name
    kind: _Kind
    name: str
    sql: str


def split_statements(sql: str) -> list[str]:
    """The statements of a DDL file, without comments: split on ';' outside quotes and comments."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end  # the newline itself is kept
            continue
        if c in "'`\"":
            end = _quote_end(sql, i)
            buf.append(sql[i:end])
            i = end
            continue
        if c == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf))
    return [s for s in (_tidy(chunk) for chunk in out) if s]


def _tidy(statement: str) -> str:
    lines = [line.rstrip() for line in statement.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip())


def _quote_end(sql: str, start: int) -> int:
    """Index just past the quoted literal or identifier opening at `start` (backslash and doubled quotes
    escape)."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise ValueError(f"unterminated {quote} quote starting {sql[start:start + 40]!r}")


def _closing(sql: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at `open_at`, skipping quoted text."""
    depth, i = 0, open_at
    while i < len(sql):
        c = sql[i]
        if c in "'`\"":
            i = _quote_end(sql, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parentheses after {sql[max(0, open_at - 40):open_at + 1]!r}")


def _outside_quotes(sql: str, fn: Callable[[str], str]) -> str:
    """`fn` applied to the parts of `sql` outside quoted literals and identifiers."""
    out: list[str] = []
    plain: list[str] = []
    i = 0
    while i < len(sql):
        if sql[i] in "'`\"":
            out.append(fn("".join(plain)))
            plain = []
            end = _quote_end(sql, i)
            out.append(sql[i:end])
            i = end
        else:
            plain.append(sql[i])
            i += 1
    out.append(fn("".join(plain)))
    return "".join(out)


_KINDS: tuple[tuple[_Kind, re.Pattern[str]], ...] = (
    ("table", _CREATE_TABLE), ("materialized_view", _CREATE_MV), ("view", _CREATE_VIEW), ("alter", _ALTER_ADD))


def _classify(source: str, sql: str) -> _Statement:
    for kind, pattern in _KINDS:
        m = pattern.match(sql)
        if m:
            return _Statement(source, kind, m["name"], sql)
    first = sql.splitlines()[0][:80]
    raise ValueError(f"{source}: no cluster form for {first!r}: cluster_ddl knows CREATE TABLE (a *MergeTree "
                     "engine), CREATE MATERIALIZED VIEW … TO …, CREATE VIEW and ALTER TABLE … ADD COLUMN IF NOT "
                     "EXISTS; extend schemas/clickhouse_cluster.py")


def _rename_sources(select: str, names: dict[str, str]) -> str:
    """`select` with each table or view after FROM or JOIN that `names` maps replaced by its new name."""
    def rename(part: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m["name"]
            if name not in names:
                return m[0]  # a CTE, a subquery alias or a system table: not ours
            return f"{m['kw']}{m['ws']}{names[name]}"
        return _SOURCE.sub(one, part)

    return _outside_quotes(select, rename)


def _sources(select: str) -> list[str]:
    found: list[str] = []

    def collect(part: str) -> str:
        found.extend(m["name"] for m in _SOURCE.finditer(part))
        return part

    _outside_quotes(select, collect)
    return found


class _Generator:
    def __init__(self, cluster: str, database: str, statements: Sequence[_Statement]) -> None:
        self.cluster = cluster
        self.on_cluster = f"ON CLUSTER '{cluster}'"
        self.db = database
        self.tables = {s.name for s in statements if s.kind == "table"}
        self.views = {s.name for s in statements if s.kind == "view"}
        self.mv_targets = {m["target"] for m in (_CREATE_MV.match(s.sql) for s in statements) if m}

    def table(self, st: _Statement) -> list[str]:
        m = _CREATE_TABLE.match(st.sql)
        assert m is not None
        close = _closing(st.sql, m.end() - 1)
        columns = st.sql[m.end() - 1:close + 1]
        e = _ENGINE.match(st.sql, close + 1)
        if e is None:
            raise ValueError(f"{st.source}: table {st.name} has no ENGINE = … after its columns")
        engine, rest_at, args = e["engine"], e.end(), ""
        if st.sql.startswith("(", rest_at):
            args_close = _closing(st.sql, rest_at)
            args, rest_at = st.sql[rest_at + 1:args_close].strip(), args_close + 1
        if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
            raise ValueError(f"{st.source}: table {st.name} has engine {engine}; cluster_ddl replicates "
                             "single-node *MergeTree tables only")
        rest = re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window",
                      st.sql[rest_at:])
        replicated_args = ", ".join(a for a in (f"'{REPLICA_PATH}'", f"'{REPLICA_NAME}'", args) if a)
        local = f"{self.db}.{st.name}{LOCAL_SUFFIX}"
        local_sql = (f"CREATE TABLE IF NOT EXISTS {local} {self.on_cluster}\n{columns}\n"
                     f"ENGINE = Replicated{engine}({replicated_args}){rest}")
        key = self._sharding_key(st, columns)
        distributed_args = ", ".join(
            [f"'{self.cluster}'", f"'{self.db}'", f"'{st.name}{LOCAL_SUFFIX}'"] + ([key] if key else []))
        distributed_sql = (f"CREATE TABLE IF NOT EXISTS {self.db}.{st.name} {self.on_cluster}\nAS {local}\n"
                           f"ENGINE = Distributed({distributed_args})")
        return [local_sql, distributed_sql]

    def _sharding_key(self, st: _Statement, columns: str) -> str | None:
        if st.name in self.mv_targets:
            return None  # written on each shard by its materialized views only
        if st.name in SHARDING_KEYS:
            return SHARDING_KEYS[st.name]
        if _MESSAGE_COLUMN.search(columns):
            return MESSAGE_SHARDING_KEY
        raise ValueError(f"{st.source}: table {st.name} is inserted into and has no message_id column; "
                         "give it a deterministic sharding key in SHARDING_KEYS")

    def materialized_view(self, st: _Statement) -> list[str]:
        m = _CREATE_MV.match(st.sql)
        assert m is not None
        if m["target"] not in self.tables:
            raise ValueError(f"{st.source}: materialized view {st.name} writes to {m['target']}, "
                             "which no file creates as a table")
        read = [n for n in _sources(m["select"]) if n in self.views]
        if read:
            raise ValueError(f"{st.source}: materialized view {st.name} reads the view {read[0]}; "
                             "a per-shard view must read tables")
        local_names = {t: f"{self.db}.{t}{LOCAL_SUFFIX}" for t in self.tables}
        select = _rename_sources(m["select"], local_names)
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.db}.{st.name} {self.on_cluster}\n"
                f"TO {self.db}.{m['target']}{LOCAL_SUFFIX}\nAS {select}"]

    def alter(self, st: _Statement) -> list[str]:
        """A column added to the local tables and to the Distributed table over them."""
        m = _ALTER_ADD.match(st.sql)
        assert m is not None
        if st.name not in self.tables:
            raise ValueError(f"{st.source}: ALTER TABLE {st.name}: no file creates it as a table")
        return [f"ALTER TABLE {self.db}.{st.name}{LOCAL_SUFFIX} {self.on_cluster} {m['change']}",
                f"ALTER TABLE {self.db}.{st.name} {self.on_cluster} {m['change']}"]

    def view(self, st: _Statement) -> list[str]:
        m = _CREATE_VIEW.match(st.sql)
        assert m is not None
        names = {t: f"{self.db}.{t}" for t in self.tables | self.views}
        select = _rename_sources(m["select"], names)
        return [f"CREATE OR REPLACE VIEW {self.db}.{st.name} {self.on_cluster}\nAS {select}"]


def cluster_ddl(cluster: str, sql_files: list[tuple[str, str]], database: str = DEFAULT_DATABASE, *,
                retention_days: int = DEFAULT_RETENTION_DAYS,
                dead_letter_retention_days: int = DEFAULT_DEAD_LETTER_RETENTION_DAYS) -> str:
    """The cluster DDL of `sql_files` ((name, SQL) of schemas/clickhouse/NNN_*.sql, in order) as one SQL
    script with a header, for `clickhouse-client --queries-file` on any one node of `cluster`.

    Pure: same input, same text (deploy/clickhouse/cluster.sql is this with the shipped files). Raises
    ValueError naming the file for a statement it has no cluster form for, rather than guess."""
    if not _CLUSTER_RE.match(cluster):
        raise ValueError(f"cluster name {cluster!r} must be letters, digits, '_', '.', '-' (or a {{macro}})")
    if not _DATABASE_RE.match(database):
        raise ValueError(f"database name {database!r} must be letters, digits and _ (not starting with a digit)")
    if retention_days < 1:
        raise ValueError(f"retention_days {retention_days} must be at least 1")
    if dead_letter_retention_days < 1:
        raise ValueError(f"dead_letter_retention_days {dead_letter_retention_days} must be at least 1")
    parsed: list[_Statement] = []
    for name, sql in sql_files:
        sql = (sql.replace("{retention_days}", str(int(retention_days)))
               .replace("{dead_letter_retention_days}", str(int(dead_letter_retention_days))))
        for statement in split_statements(sql):
            parsed.append(_classify(name, statement))
    gen = _Generator(cluster, database, parsed)
    sources = ", ".join(name for name, _ in sql_files)
    parts = [
        "-- GENERATED FILE: do not edit. The ClickHouse cluster form of schemas/clickhouse/*.sql, made by\n"
        "-- schemas.clickhouse_cluster.cluster_ddl:\n"
        f"--     pixeltrack ddl --cluster {cluster} --out deploy/clickhouse/cluster.sql\n"
        f"-- cluster {cluster}, database {database}, retention_days {retention_days}, "
        f"dead_letter_retention_days {dead_letter_retention_days}; sources: {sources}\n"
        "-- Apply on any one node: clickhouse-client --queries-file cluster.sql (idempotent). The servers need\n"
        "-- the cluster in remote_servers, the {shard} and {replica} macros and ClickHouse Keeper: see\n"
        "-- deploy/clickhouse/README.md.",
        f"CREATE DATABASE IF NOT EXISTS {database} {gen.on_cluster};",
    ]
    current = ""
    for st in parsed:
        if st.source != current:
            parts.append(f"-- {st.source}")
            current = st.source
        emit = {"table": gen.table, "materialized_view": gen.materialized_view, "view": gen.view,
                "alter": gen.alter}[st.kind]
        parts.extend(f"{sql};" for sql in emit(st))
    return "\n\n".join(parts) + "\n"
