"""Every verdict, source and reason code spelled as an SQL literal is one schemas/verdicts.py defines.

The DDL's aggregates, the cluster DDL, the dashboard's and report's SQL, the analysts' cookbook and
the Grafana board compare `verdict`, `source` and `reasons` with quoted literals; a verdict renamed in
schemas/verdicts.py (or a typo in a query) would silently count nothing. This test reads them all.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import verdicts

ROOT = Path(__file__).resolve().parents[3]
QUOTED = re.compile(r"'([^']*)'")
# `verdict = 'x'`, `e.source != 'x'`, `'x' = verdict`, `verdict IN ('x', 'y')`, `source NOT IN (...)`;
# a column name is matched whole (`opens_verdict` or `source_label` are other columns).
_OP = r"\s*(?:=|==|!=|<>)\s*"
COMPARED = {
    column: (re.compile(rf"(?<![\w.])(?:\w+\.)?{column}{_OP}'([^']*)'|'([^']*)'{_OP}(?:\w+\.)?{column}(?!\w)", re.I),
             re.compile(rf"(?<![\w.])(?:\w+\.)?{column}\s+(?:NOT\s+)?IN\s*\(([^)]*)\)", re.I))
    for column in ("verdict", "source", "reason")
}
# The events' reasons array: has(reasons, 'x'), hasAny(reasons, ['x', 'y']), indexOf, countEqual, ...
IN_REASONS = re.compile(r"\b(?:has|hasAny|hasAll|indexOf|countEqual)\(\s*(?:\w+\.)?reasons\s*,\s*([^)]*)\)", re.I)
WORDS = {"verdict": verdicts.VERDICTS, "source": verdicts.SOURCES, "reason": verdicts.REASONS}


def literals(sql: str) -> Iterator[tuple[str, str]]:
    """(column, literal) for each word `sql` compares a verdict, source or reason with. A statement
    that reads `dead_letters` has its own `reason` vocabulary (bad_signature, ...): not the classifier's."""
    for column, (equal, member) in COMPARED.items():
        if column == "reason" and "dead_letters" in sql:
            continue
        for m in equal.finditer(sql):
            yield column, next(g for g in m.groups() if g is not None)
        for m in member.finditer(sql):
            for q in QUOTED.finditer(m.group(1)):
                yield column, q.group(1)
    for m in IN_REASONS.finditer(sql):
        for q in QUOTED.finditer(m.group(1)):
            yield "reason", q.group(1)


def _python_strings(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)


def statements(path: Path) -> Iterator[str]:
    """The SQL-bearing pieces of a file: statements of .sql, string constants of .py, strings of the
    Grafana JSON (its queries), paragraphs of Markdown (a cookbook entry's prose and its query)."""
    if path.suffix == ".sql":
        yield from path.read_text(encoding="utf-8").split(";")
    elif path.suffix == ".py":
        yield from _python_strings(path)
    elif path.suffix == ".json":
        yield from _json_strings(json.loads(path.read_text(encoding="utf-8")))
    else:
        yield from re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))


def sources_of_sql() -> list[Path]:
    files = [*sorted((ROOT / "schemas" / "clickhouse").glob("*.sql")), ROOT / "deploy" / "clickhouse" / "cluster.sql",
             ROOT / "docs" / "analysts.md", ROOT / "deploy" / "grafana" / "pixeltrack.json"]
    files += sorted((ROOT / "pixeltrack").rglob("*.py")) + sorted((ROOT / "processors").rglob("*.py"))
    return files


def found() -> dict[Path, list[tuple[str, str]]]:
    return {p: [w for s in statements(p) for w in literals(s)] for p in sources_of_sql()}


def test_the_scan_finds_the_literals_where_they_are() -> None:
    # guards the scan: one that finds nothing would pass everything
    by_file = found()
    for name in ("schemas/clickhouse/005_aggregates.sql", "deploy/clickhouse/cluster.sql", "docs/analysts.md",
                 "deploy/grafana/pixeltrack.json", "pixeltrack/dashboard/queries.py"):
        assert by_file[ROOT / name], f"no verdict/source/reason literal found in {name}"
    everything = {w for ws in by_file.values() for w in ws}
    assert {("verdict", "human"), ("verdict", "proxy"), ("verdict", "machine"), ("verdict", "duplicate"),
            ("source", "apple_mpp"), ("source", "scanner")} <= everything
    assert sum(len(ws) for ws in by_file.values()) >= 60


@pytest.mark.parametrize(("sql", "expected"), [
    ("sumIf(hits, kind = 'open' AND verdict = 'humane')", [("verdict", "humane")]),
    ("WHERE e.verdict IN ('human', 'proxi') AND source NOT IN ('apple_mpp')",
     [("verdict", "human"), ("verdict", "proxi"), ("source", "apple_mpp")]),
    ("countIf('bot' = source)", [("source", "bot")]),
    ("countIf(has(reasons, 'link_burst')) + countIf(hasAny(e.reasons, ['honeypot', 'nope']))",
     [("reason", "link_burst"), ("reason", "honeypot"), ("reason", "nope")]),
    ("arrayJoin(reasons) AS reason WHERE reason = 'fast'", [("reason", "fast")]),
    ("SELECT * FROM dead_letters WHERE reason = 'bad_signature'", []),
    ("opens_verdict = 'x' AND source_label = 'y' AND {source:String} = source", []),
])
def test_the_scan_reads_each_form(sql: str, expected: list[tuple[str, str]]) -> None:
    assert sorted(literals(sql)) == sorted(expected)


def test_every_sql_literal_is_a_defined_word() -> None:
    unknown = sorted(f"{p.relative_to(ROOT)}: {column} {word!r}" for p, ws in found().items() for column, word in ws
                     if word not in WORDS[column])
    assert not unknown, f"literals that schemas/verdicts.py does not define: {unknown}"
