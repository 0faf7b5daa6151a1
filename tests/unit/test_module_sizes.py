"""No module of ingest/, processors/, schemas/ or pixeltrack/ passes 400 lines without saying why in its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "schemas", "pixeltrack")
LIMIT = 400
PHRASE = "Longer than 400 lines because"


def oversized(root: Path = ROOT) -> list[str]:
    """The modules over LIMIT lines whose docstring does not state a reason with PHRASE."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            if lines > LIMIT and PHRASE not in (ast.get_docstring(ast.parse(text)) or ""):
                found.append(f"{path.relative_to(root)} ({lines} lines)")
    return found


def test_every_long_module_states_why() -> None:
    missing = oversized()
    assert not missing, (f"over {LIMIT} lines without '{PHRASE} ...' in the module docstring (split it, or say "
                         f"why it is one module): {', '.join(missing)}")


@pytest.mark.parametrize(("docstring", "flagged"), [("One job.", True), (f"One job.\n\n{PHRASE} x.", False)])
def test_the_check_reads_the_docstring(tmp_path: Path, docstring: str, flagged: bool) -> None:
    (tmp_path / "ingest").mkdir()
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    body = "\n".join(f"X{i} = {i}" for i in range(LIMIT))
    (tmp_path / "ingest" / "long.py").write_text(f'"""{docstring}"""\n{body}\n')
    (tmp_path / "ingest" / "short.py").write_text('"""Short."""\nX = 1\n')
    assert oversized(tmp_path) == (["ingest/long.py (401 lines)"] if flagged else [])
