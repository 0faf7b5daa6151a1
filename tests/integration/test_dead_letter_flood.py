"""Junk costs a count, not a row: a flood of dead letters through the real edge and processor into chDB
(bench/bench_dead_letters.py at a fifth of its size; the full run is 100,000 letters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_dead_letters.py"


def test_twenty_thousand_junk_letters_take_under_a_megabyte_and_are_all_counted(tmp_path: Path) -> None:
    # Its own process: chDB lets a process open one path, and this one has the test session's.
    done = subprocess.run([sys.executable, str(BENCH), "--records", "20000", "--edge-requests", "500",
                           "--dir", str(tmp_path / "chdb")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["letters"] == result["counted"] == 20_500  # every letter counted, the edge's included
    # bodies: at most 10 per stage, reason, edge and minute; the letters span a few seconds (one or two
    # minutes), 4 reasons from 2 edges plus the real edge's 3 (malformed, bad_signature, wrong_kind)
    assert result["stored"] == result["stored_by_counts"] <= (4 * 2 + 3) * 10 * 2
    assert result["stored"] >= 30
    # the 5 MB per 100,000 junk requests of the issue, at a fifth: under 1 MB after merges
    assert result["bytes_on_disk"] < 1_000_000
