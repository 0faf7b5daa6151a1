"""`pixeltrack process` with a broker there: its checks pass it on to consume, and a SIGTERM ends it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_cli_errors import KEYS, clean_env

pytestmark = pytest.mark.kafka


def started(proc: subprocess.Popen[str]) -> None:
    """Returns once `proc` (pixeltrack process) is past its checks and schema, in its signal-handled run:
    its first log line there names the processor's hot path."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if "processor hot path" in line:
            return
    raise AssertionError(f"process ended before it consumed (code {proc.wait()})")


def test_the_kafka_check_passes_a_broker_that_answers(kafka_bootstrap: str) -> None:
    """In a process of its own, as the commands run it: its own event loop and Kafka client are not left
    to this test process's collector (a socket it closes late would fail a later test's warnings)."""
    check = subprocess.run([sys.executable, "-c", "import sys; from pixeltrack.compose.reach import "
                            "refuse_unreachable_kafka as check; check(sys.argv[1])", kafka_bootstrap],
                           capture_output=True, text=True, timeout=60, env=clean_env())
    assert check.returncode == 0, check.stderr
    assert check.stdout == check.stderr == ""


def test_process_with_a_broker_starts_on_its_default_chdb_and_stops(tmp_path: Path, kafka_bootstrap: str) -> None:
    with socket.socket() as probe:  # a free port for its /metrics
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    env = clean_env(PIXELTRACK_SIGNING_KEYS=KEYS, PIXELTRACK_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    PIXELTRACK_TOPIC_PREFIX=f"start{time.monotonic_ns()}.",
                    PIXELTRACK_PROCESSOR_METRICS_PORT=str(metrics_port), PIXELTRACK_HEADER_TIMEOUT_SECONDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pixeltrack.cli", "process"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started(proc)
        assert (tmp_path / ".pixeltrack" / "chdb" / "metadata" / "pixeltrack.sql").exists()
        # its /metrics, on loopback (the default host), under the head deadline of every server
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            assert b"pixeltrack_connections_open{server=\"metrics\"}" in resp.read()
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as silent:
            opened = time.monotonic()
            assert silent.recv(1) == b""
            assert time.monotonic() - opened < 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith(f"pixeltrack process: Kafka {kafka_bootstrap} "), out
    assert "Traceback" not in err


def test_make_kafka_on_a_taken_port_is_found_by_process_from_its_folder(tmp_path: Path) -> None:
    """9092 (here: a port this test holds) taken: `make kafka` starts the broker on a free port and writes
    it to .kafka/bootstrap, where `pixeltrack process` run from that folder finds it, saying so."""
    import os

    from tests.plugins.kafka import KAFKA_SH, ROOT, end_watcher, stop_when_gone

    (tmp_path / "deploy").symlink_to(ROOT / "deploy")  # the Makefile's recipes name deploy/ from the folder
    env = clean_env(PIXELTRACK_SIGNING_KEYS=KEYS, PIXELTRACK_PROCESSOR_METRICS_PORT="0")
    if "PIXELTRACK_KAFKA_LIBS" in os.environ:
        env["PIXELTRACK_KAFKA_LIBS"] = os.environ["PIXELTRACK_KAFKA_LIBS"]
    watcher = stop_when_gone(KAFKA_SH, tmp_path / ".kafka")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            made = subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "kafka",
                                   f"KAFKA_PORT={port}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=240)
        assert made.returncode == 0, made.stderr
        address = (tmp_path / ".kafka" / "bootstrap").read_text().strip()
        assert address != f"127.0.0.1:{port}"
        assert f"port {port} is taken: starting the broker on a free port" in made.stdout
        assert "find it (.kafka/bootstrap)" in made.stdout
        proc = subprocess.Popen([sys.executable, "-m", "pixeltrack.cli", "process"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            started(proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.startswith(f"pixeltrack process: Kafka {address} (from .kafka/bootstrap, written by `make kafka`) ")
    finally:
        subprocess.run([str(KAFKA_SH), "stop", str(tmp_path / ".kafka")], timeout=60, check=False)
        end_watcher(watcher)
