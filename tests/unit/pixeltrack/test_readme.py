"""The README says what the code does: every setting, every make target and every command it names."""

import re
from pathlib import Path

from pixeltrack.cli import build_parser
from pixeltrack.commands.setup import settings_table

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


def test_readme_settings_table_matches_code() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = text.index("<!-- /settings-table -->")
    assert text[start:end].strip() == settings_table().strip(), "run `pixeltrack settings` into README.md"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_every_make_target_the_readme_names_exists_and_ci_runs_make_test() -> None:
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", README.read_text()))
    assert {"run", "test"} <= named
    assert named <= _make_targets(), named - _make_targets()
    assert re.search(r"^\s*make test\s*$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_every_pixeltrack_command_the_readme_names_exists() -> None:
    text = README.read_text()
    named = set(re.findall(r"`pixeltrack ([a-z][a-z-]*)", text)) | set(re.findall(r"bin/pixeltrack ([a-z][a-z-]*)",
                                                                                  text))
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    assert named, "the README names no command"
    assert named <= commands, named - commands
