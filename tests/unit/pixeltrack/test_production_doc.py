"""docs/production.md stays true: the ClickHouse version it states is the one deploy/ runs, and every
PIXELTRACK_* variable and `pixeltrack` command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from pixeltrack.cli import build_parser
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")


def test_the_minimum_clickhouse_version_is_the_one_compose_pins() -> None:
    pinned = re.search(r"image: clickhouse/clickhouse-server:(\S+)",
                       (ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert pinned is not None
    assert f"**Minimum ClickHouse version: {pinned.group(1)}**" in DOC
    assert f"`clickhouse/clickhouse-server:{pinned.group(1)}`" in DOC


def test_every_setting_and_command_it_names_exists() -> None:
    known = {f"PIXELTRACK_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"PIXELTRACK_[A-Z_]+", DOC))
    assert named - known == set()
    assert len(named) >= 10
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert subcommands is not None
    code = "\n".join(re.findall(r"^```\w*\n(.*?)^```", DOC, re.MULTILINE | re.DOTALL))
    used = set(re.findall(r"^\s*pixeltrack ([a-z-]+)\b(?!:)", code, re.MULTILINE))
    assert used - set(subcommands) == set()
    assert {"process", "edge", "api", "triggers", "dashboard", "migrate"} <= used
