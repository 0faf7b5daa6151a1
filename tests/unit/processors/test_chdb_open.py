"""chDB is one folder per process: a client of another folder that only a reference cycle keeps is freed
so the next folder opens; one still in use makes the folder held, said in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import sys
from processors.clickhouse import ClickHouseUnavailable, connect
x, y = sys.argv[1], sys.argv[2]
first = connect(f"chdb://{x}", None)
first.command("SELECT 1")
cycle = [first]
cycle.append(cycle)  # as a failed test's traceback keeps its frames
del first, cycle
second = connect(f"chdb://{y}", None)
print(second.command("SELECT 2"))
try:
    connect(f"chdb://{x}", None)
except ClickHouseUnavailable as exc:
    print("held:", exc)
"""


def test_a_client_only_a_cycle_keeps_does_not_hold_the_engine(tmp_path: Path) -> None:
    # a process of its own: the test session's chDB is on its own folder
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "x"), str(tmp_path / "y")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "2"
    assert lines[1].startswith(f"held: chDB at {tmp_path / 'x'} is held by ")
