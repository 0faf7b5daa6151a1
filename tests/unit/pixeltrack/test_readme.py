"""The README documents every setting exactly as the code defines it."""

from pathlib import Path

from pixeltrack.cli import settings_table

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_settings_table_matches_code() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = text.index("<!-- /settings-table -->")
    assert text[start:end].strip() == settings_table().strip(), "run `pixeltrack settings` into README.md"


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
