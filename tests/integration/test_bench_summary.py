"""The benchmark's summary phase on a small store: its SQL still fits the schema, and it reports the
three states it is meant to (bench/bench_pipeline.py; the full run is `make bench-pipeline`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_pipeline.py"


def test_summary_phase_times_live_loading_and_merged(tmp_path: Path) -> None:
    # Its own process: chDB lets a process open one path, and this one has the test session's.
    done = subprocess.run([sys.executable, str(BENCH), "--summary-only", "--events", "60000", "--messages", "6000",
                           "--dir", str(tmp_path / "chdb")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    states = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(states) == {"live", "loading", "merged"}
    for ms, parts in states.values():
        assert ms > 0
        # message_totals' parts by rows: one row per message once merged, so at least the 6,000 messages
        assert sum(int(rows.replace(",", "")) for rows in parts.split(", after")[0].split("+")) >= 6_000
