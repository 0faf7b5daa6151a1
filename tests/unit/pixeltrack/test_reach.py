"""The checks a production command makes before it creates anything: one line each, no library log lines."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pixeltrack.compose.reach import refuse_unreachable_clickhouse, refuse_unreachable_kafka
from pixeltrack.errors import CommandError
from processors.clickhouse import ClickHouseUnavailable


def test_no_broker_is_one_line_and_aiokafka_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CommandError) as refused:
        refuse_unreachable_kafka("127.0.0.1:1")
    assert str(refused.value) == ("cannot reach Kafka at 127.0.0.1:1: start it (`make kafka`, see "
                                  "docs/production.md) or set PIXELTRACK_KAFKA_BOOTSTRAP")
    assert not [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING]
    assert logging.getLogger("aiokafka").level == logging.NOTSET  # muted for the check only


def test_a_clickhouse_server_that_does_not_answer_is_named_and_a_chdb_folder_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(ClickHouseUnavailable, match=r"^cannot reach ClickHouse at http://127\.0\.0\.1:1: "):
        refuse_unreachable_clickhouse("http://u:secret@127.0.0.1:1")
    refuse_unreachable_clickhouse(f"chdb://{tmp_path / 'chdb'}")
    assert not (tmp_path / "chdb").exists()
