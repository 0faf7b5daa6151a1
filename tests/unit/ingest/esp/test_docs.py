"""docs/esp.md names every event type each receiver knows, and every setting of the receivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.esp import mailgun, postmark, sendgrid, ses
from schemas.settings import Settings

DOC = (Path(__file__).resolve().parents[4] / "docs" / "esp.md").read_text()


@pytest.mark.parametrize("module", [sendgrid, mailgun, postmark, ses])
def test_every_known_event_type_is_in_the_mapping_table(module: object) -> None:
    missing = {t for t in module.KNOWN if f"`{t}`" not in DOC and f" {t}" not in DOC}  # type: ignore[attr-defined]
    assert not missing


def test_every_esp_setting_is_documented() -> None:
    for name in Settings.model_fields:
        if name.startswith("esp_"):
            assert f"PIXELTRACK_{name.upper()}" in DOC, name
