"""A test run's Kafka broker does not outlive the run: not after a Ctrl-C, not after the run is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HOLDS_THE_BROKER = '''
import os
import time
from pathlib import Path


def test_holds_the_broker(kafka_broker):
    Path(os.environ["BROKER_PID_OUT"]).write_text((kafka_broker.folder / "broker.pid").read_text())
    time.sleep(600)
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("ending", ["ctrl-c", "kill"])
def test_the_broker_stops_when_the_run_ends(tmp_path: Path, ending: str) -> None:
    """`ctrl-c`: SIGINT to the run's whole process group, as a terminal sends it (pytest's teardown stops
    the broker). `kill`: SIGKILL to pytest alone, which runs no teardown (SIGTERM's case too)."""
    (tmp_path / "test_holds.py").write_text(HOLDS_THE_BROKER)
    pid_file = tmp_path / "broker.pid"
    env = {k: v for k, v in os.environ.items() if k != "PIXELTRACK_TEST_KAFKA"}
    env.update(BROKER_PID_OUT=str(pid_file), PYTHONPATH=str(ROOT))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                                "tests.plugins.kafka", "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "base"),
                                str(tmp_path)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        broker = int(pid_file.read_text())
        assert alive(broker)
        if ending == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)
        else:
            os.kill(run.pid, signal.SIGKILL)
        run.wait(60)
        deadline = time.monotonic() + 30
        while alive(broker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(broker), f"the broker (pid {broker}) outlived the run ended by {ending}"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
