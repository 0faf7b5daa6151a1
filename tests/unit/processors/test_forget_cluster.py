"""`forget` pointed at a ClickHouse cluster refuses before it writes anything: its deletes cannot run
through Distributed tables, and the Memory table they read would exist on one node only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from processors.privacy import ClusterRefused, forget


class ClusterClient:
    """Answers system.tables as a cluster's database does (`events` is Distributed); records the rest."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def query(self, sql: str, **_: Any) -> SimpleNamespace:
        if "system.tables" in sql:
            return SimpleNamespace(result_rows=[("Distributed",)])
        return SimpleNamespace(result_rows=[(0,)])

    def command(self, sql: str, **_: Any) -> None:
        self.written.append(sql)

    def insert(self, table: str, *_: Any, **__: Any) -> None:
        self.written.append(f"INSERT INTO {table}")


def test_forget_refuses_a_cluster_before_writing_anything() -> None:
    client = ClusterClient()
    with pytest.raises(ClusterRefused, match="Erasure on a cluster"):
        forget(client, "erin", "", b"k" * 32)  # type: ignore[arg-type]
    assert client.written == []
