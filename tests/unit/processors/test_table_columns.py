"""Every column list the code inserts with matches its table as the DDL creates it.

The rows the processors build (processors/pipeline.py's *_COLUMNS, sent by the writer) and every other
insert in processors/ and pixeltrack/ name their columns; ClickHouse fills a column left out with its
type's zero, so a column added to the DDL but not to the code would be silently empty, and one renamed
in the DDL would fail every batch. The tables come from the migrated schema in chDB (system.columns),
not from parsing the SQL.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.clickhouse import connect, migrate
from processors.pipeline import BatchOutput

ROOT = Path(__file__).resolve().parents[3]
INSERT_METHODS = {"insert", "raw_insert", "insert_df", "insert_arrow"}
INSERT_SQL = re.compile(r"\bINSERT\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.I)
# Inserts whose table and columns are not literals at the call, and where their lists come from.
# BatchOutput's tables, checked through BatchOutput(); forget's own Memory table of letters to delete,
# created with its columns just before (processors/privacy.py), no table of the schema.
GENERIC = {("processors/writer.py", "raw_insert"), ("processors/privacy.py", "insert")}


def _literal_strings(node: ast.expr | None) -> list[str] | None:
    if isinstance(node, ast.List | ast.Tuple) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return None


def inserts_in_code() -> tuple[list[tuple[str, str, list[str]]], set[tuple[str, str]]]:
    """(where, table, columns) of each insert call or `INSERT INTO t (…)` string with a literal table and
    column list in processors/ and pixeltrack/, and (file, method) of the calls that have none."""
    found: list[tuple[str, str, list[str]]] = []
    dynamic: set[tuple[str, str]] = set()
    for path in sorted([*(ROOT / "processors").rglob("*.py"), *(ROOT / "pixeltrack").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for m in INSERT_SQL.finditer(node.value):
                    assert m[2], f"{rel}: {m[0]!r} names no columns: an insert lists the columns it writes"
                    found.append((f"{rel}:{node.lineno}", m[1], [c.strip().strip("`") for c in m[3].split(",")]))
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in INSERT_METHODS):
                continue
            table = node.args[0] if node.args else None
            columns = next((_literal_strings(k.value) for k in node.keywords if k.arg == "column_names"), None)
            if isinstance(table, ast.Constant) and isinstance(table.value, str) and columns is not None:
                found.append((f"{rel}:{node.lineno}", table.value, columns))
            elif not (node.func.attr == "insert" and table is not None and isinstance(table, ast.Constant)
                      and isinstance(table.value, int)):  # list.insert(0, x) is no table's
                dynamic.add((rel, node.func.attr))
    return found, dynamic


def writes() -> list[tuple[str, str, list[str]]]:
    batches = [("processors/pipeline.py BatchOutput", t.table, list(t.columns)) for t in BatchOutput().tables()]
    return batches + inserts_in_code()[0]


def test_the_scan_finds_every_insert() -> None:
    # guards the scan: one that finds nothing would pass everything
    found, dynamic = inserts_in_code()
    assert {t for _, t, _ in writes()} >= {"events", "dead_letters", "dead_letter_counts", "sends", "conversions",
                                           "unsubscribes", "erasures", "schema_migrations"}
    assert any(where.startswith("processors/privacy.py") and cols == ["tenant", "recipient_hash", "requested_at",
                                                                     "rows_deleted"] for where, _, cols in found)
    # an insert whose table or columns are not literals must be one whose lists this test reads elsewhere
    assert dynamic == GENERIC


@pytest.fixture(scope="module")
def schema_columns(chdb_dsn: str) -> Iterator[dict[str, list[tuple[str, str]]]]:
    """table → [(column, default kind)] in order, of a freshly migrated database (one for the module)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    migrate(chdb_dsn, database, retention_days=3650, dead_letter_retention_days=3650)
    client = connect(chdb_dsn, database)
    try:
        rows = client.query("SELECT table, name, default_kind FROM system.columns WHERE database = {d:String} "
                            "ORDER BY table, position", parameters={"d": database}).result_rows
        tables: dict[str, list[tuple[str, str]]] = {}
        for table, name, kind in rows:
            tables.setdefault(str(table), []).append((str(name), str(kind)))
        yield tables
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        client.close()


@pytest.mark.parametrize(("where", "table", "columns"), [pytest.param(*w, id=f"{w[1]}@{w[0]}") for w in writes()])
def test_columns_written_are_the_tables_own(schema_columns: dict[str, list[tuple[str, str]]], where: str, table: str,
                                            columns: list[str]) -> None:
    ddl = schema_columns.get(table, [])
    assert ddl, f"{where}: inserts into {table!r}, a table the schema does not create"
    names = [n for n, _ in ddl]
    kinds = dict(ddl)
    unknown = [c for c in columns if c not in kinds]
    assert not unknown, f"{where}: columns {unknown} are not in {table} ({names})"
    assert columns == [n for n in names if n in columns], f"{where}: {columns} not in {table}'s order {names}"
    computed = [c for c in columns if kinds[c] in ("MATERIALIZED", "ALIAS")]
    assert not computed, f"{where}: writes {table}'s computed columns {computed}"
    # a column left out gets its DEFAULT; one without would silently read as its type's zero
    missing = [n for n in names if n not in columns and kinds[n] not in ("DEFAULT", "MATERIALIZED", "ALIAS")]
    assert not missing, f"{where}: leaves out {table}'s columns {missing}, which have no default"
