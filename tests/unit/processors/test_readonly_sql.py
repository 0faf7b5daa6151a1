"""Read-only SQL for `pixeltrack query`, the dashboard and serve's admin endpoint: readonly=1 alone
still lets a SELECT write a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.clickhouse import readonly_sql
from processors.writer import ClickHouseWriter


def test_reads_pass_and_whatever_could_write_does_not() -> None:
    assert readonly_sql("SELECT 1;") == "SELECT * FROM (\nSELECT 1\n)"
    assert readonly_sql("  with x AS (SELECT 1) SELECT * FROM x").startswith("SELECT * FROM (")
    assert readonly_sql("SHOW TABLES") == "SHOW TABLES"
    for sql in ("INSERT INTO t VALUES (1)", "KILL QUERY WHERE 1", "SYSTEM STOP TTL MERGES", "ALTER TABLE t DELETE",
                "SHOW TABLES INTO OUTFILE '/tmp/x'", ""):
        with pytest.raises(ValueError, match=r"only SELECT|INTO OUTFILE"):
            readonly_sql(sql)


async def test_a_select_into_outfile_is_refused_by_the_engine(tmp_path: Path) -> None:
    writer = ClickHouseWriter(f"chdb://{tmp_path / 'db'}", "default")
    target = tmp_path / "victim.txt"
    try:
        assert (await writer.query("SELECT 41 + 1 AS n"))[1] == [[42]]
        with pytest.raises(Exception, match=r"(?i)syntax|outfile"):
            await writer.query(f"SELECT 'echo INJECTED' AS x INTO OUTFILE '{target}' APPEND")
    finally:
        await writer.close()
    assert not target.exists()
