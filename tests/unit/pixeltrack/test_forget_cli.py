"""`pixeltrack forget` on an installation with tenants needs --tenant: '' is a tenant of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixeltrack.cli import main
from schemas.tenants import Tenant, TenantRegistry


def test_forget_refuses_to_guess_the_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    tenants = tmp_path / "tenants.json"
    TenantRegistry({"acme": Tenant("acme", ("t.acme.example",), "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg",
                                   "a1")}).save(tenants)
    monkeypatch.setenv("PIXELTRACK_TENANTS_FILE", str(tenants))
    assert main(["forget", "--recipient", "r-1", "--clickhouse", f"chdb://{tmp_path / 'db'}"]) == 2
    assert "give --tenant" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()  # nothing was touched, no erasure recorded
