"""`pixeltrack process` with a broker there: its checks pass it on to consume, and a SIGTERM ends it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixeltrack.compose.reach import refuse_unreachable_kafka
from tests.integration.test_cli_errors import KEYS, clean_env

pytestmark = pytest.mark.kafka


def test_the_kafka_check_passes_a_broker_that_answers(kafka_bootstrap: str) -> None:
    refuse_unreachable_kafka(kafka_bootstrap)


def test_process_with_a_broker_starts_on_its_default_chdb_and_stops(tmp_path: Path, kafka_bootstrap: str) -> None:
    env = clean_env(PIXELTRACK_SIGNING_KEYS=KEYS, PIXELTRACK_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    PIXELTRACK_TOPIC_PREFIX=f"start{time.monotonic_ns()}.", PIXELTRACK_PROCESSOR_METRICS_PORT="0")
    proc = subprocess.Popen([sys.executable, "-m", "pixeltrack.cli", "process"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".pixeltrack" / "chdb" / "metadata" / "pixeltrack.sql").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no schema in .pixeltrack/chdb"
            time.sleep(0.2)
        time.sleep(2)  # past the schema: consuming
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith(f"pixeltrack process: Kafka {kafka_bootstrap} "), out
    assert "Traceback" not in err
