"""Junk costs a count, not a row: the issue's 100,000 junk requests grow stored dead letters by less than
5 MB, before merges and after (bench/bench_dead_letters.py, as `make bench-dead-letters` runs it).

100,000 hits.dlq-shaped letters plus 500 letters of the real edge answering junk go through the processor
into chDB, received over ten minutes (167 a second: a flood, though slower than the audit's 40,000 in
2.8 s), in the batches the batch loop would take (a second's letters each: about 600 inserts, so as many
parts a table). The ten minutes make the sampling per minute count: each minute stores its own samples,
so a spread stores more bodies than a burst (--seconds 3) and makes more parts. Merges are stopped while
the letters go in, so the first measure is every part as inserted; the second is after OPTIMIZE … FINAL.
The same letters unsampled (the bench's baseline) take more than 5 MB either way, so the bound tells
sampling from storing every body.

Junk slow enough that no (stage, reason, edge, minute) reaches its samples is bounded by the hour's budget
(six minutes' samples): 100,000 letters over a day keep 1,440 bodies (tests/unit/processors/
test_dead_letters.py); before that budget they were stored whole, 13.6 MB after merges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_dead_letters.py"
LIMIT = 5_000_000  # bytes: the "100,000 junk requests grow stored dead letters by less than 5 MB"


def test_a_hundred_thousand_junk_letters_take_under_five_megabytes_before_and_after_merges(tmp_path: Path) -> None:
    # Its own process: chDB lets a process open one path, and this one has the test session's.
    done = subprocess.run([sys.executable, str(BENCH), "--records", "100000", "--edge-requests", "500",
                           "--seconds", "600", "--dir", str(tmp_path / "chdb")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    baseline = result["baseline"]
    assert result["letters"] == result["counted"] == baseline["counted"] == 100_500  # every letter counted
    assert result["inserts"] >= 590  # about a batch a second, as the batch loop cuts them
    # bodies: at most 10 per stage, reason, edge and minute, and 60 per hour. The synthetic letters' 4
    # reasons from 2 edges over 10 minutes (11 minute buckets, 2 hours at most), the real edge's 3 reasons
    # over at most 2 minutes: each of the 8 stores its hour's 60 (6 full minutes of 10), so the sampling
    # measured is the per-minute one up to the hour's budget.
    assert result["stored"] == result["stored_by_counts"] <= (8 * 11 + 3 * 2) * 10
    assert result["stored"] >= 8 * 60
    assert baseline["stored"] == 100_500
    assert result["unmerged_bytes"] < LIMIT, result["unmerged_per_table"]
    assert result["merged_bytes"] < LIMIT, result["merged_per_table"]
    # the measure can tell: every body stored takes more than the bound, unmerged and merged
    assert baseline["unmerged_bytes"] > LIMIT
    assert baseline["merged_bytes"] > LIMIT
