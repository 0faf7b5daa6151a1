"""The ClickHouse engine in-process (chDB): one path for the session, a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from processors.clickhouse import connect, migrate


@dataclass(frozen=True)
class ClickHouseDb:
    dsn: str
    database: str

    def client(self) -> Client:
        return connect(self.dsn, self.database)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        c = self.client()
        try:
            return [tuple(r) for r in c.query(sql).result_rows]
        finally:
            c.close()


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """chDB lets a process open one path, so the whole session shares this one."""
    path: Path = tmp_path_factory.mktemp("chdb")
    return f"chdb://{path}"


@pytest.fixture
def clickhouse(chdb_dsn: str) -> Iterator[ClickHouseDb]:
    """A migrated, empty database of its own for one test."""
    db = ClickHouseDb(chdb_dsn, f"t_{uuid.uuid4().hex[:12]}")
    migrate(db.dsn, db.database, retention_days=3650, dead_letter_retention_days=3650)
    yield db
    admin = connect(chdb_dsn, None)
    try:
        admin.command(f"DROP DATABASE IF EXISTS {db.database} SYNC")
    finally:
        admin.close()
