"""`pixeltrack forget` on an installation with tenants needs --tenant: '' is a tenant of its own. The
installation is the running serve when there is one (it says whether it has tenants), else the settings."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixeltrack.cli import main
from pixeltrack.serve_state import STATE_FILE
from schemas.tenants import Tenant, TenantRegistry


def test_forget_refuses_to_guess_the_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIXELTRACK_TENANTS_FILE", str(acme_tenants_file(tmp_path)))
    assert main(["forget", "--recipient", "r-1", "--clickhouse", f"chdb://{tmp_path / 'db'}"]) == 2
    assert "give --tenant" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()  # nothing was touched, no erasure recorded


class AdminStandIn:
    """Answers POST /forget as a serve's admin endpoint does, and keeps the bodies it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = json.dumps({"deleted": {"events": 3}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin() -> Iterator[AdminStandIn]:
    a = AdminStandIn()
    yield a
    a.close()


def running_serve(data: Path, admin_url: str, tenants: list[str] | None) -> None:
    """The state file a live serve writes (this test's own pid stands for the serve's)."""
    data.mkdir(parents=True, exist_ok=True)
    info = {"edge_url": "http://127.0.0.1:1", "dashboard_url": "http://127.0.0.1:2", "api_url": "http://127.0.0.1:3",
            "api_key": "k", "admin_url": admin_url, "admin_token": "t", "pid": os.getpid()}
    if tenants is not None:
        info["tenants"] = tenants
    (data / STATE_FILE).write_text(json.dumps(info))


def acme_tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.json"
    TenantRegistry({"acme": Tenant("acme", ("t.acme.example",), "a1:YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg",
                                   "a1")}).save(path)
    return path


def test_forget_asks_the_running_serve_whether_it_has_tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              admin: AdminStandIn) -> None:
    """The caller's environment has no tenants file, the serve it erases through has tenants: refused."""
    monkeypatch.delenv("PIXELTRACK_TENANTS_FILE", raising=False)
    running_serve(tmp_path / "data", admin.url, ["acme"])
    assert main(["forget", "--recipient", "r-1", "--data", str(tmp_path / "data")]) == 2
    assert "give --tenant" in capsys.readouterr().err
    assert admin.received == []
    assert main(["forget", "--recipient", "r-1", "--tenant", "acme", "--data", str(tmp_path / "data")]) == 0
    assert admin.received == [{"recipient": "r-1", "tenant": "acme"}]


def test_forget_through_a_serve_without_tenants_ignores_the_callers_tenants_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, admin: AdminStandIn) -> None:
    monkeypatch.setenv("PIXELTRACK_TENANTS_FILE", str(acme_tenants_file(tmp_path)))
    running_serve(tmp_path / "data", admin.url, [])
    assert main(["forget", "--recipient", "r-1", "--data", str(tmp_path / "data")]) == 0
    assert admin.received == [{"recipient": "r-1", "tenant": ""}]


def test_forget_through_a_serve_that_does_not_say_needs_the_tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   admin: AdminStandIn) -> None:
    monkeypatch.delenv("PIXELTRACK_TENANTS_FILE", raising=False)
    running_serve(tmp_path / "data", admin.url, None)
    assert main(["forget", "--recipient", "r-1", "--data", str(tmp_path / "data")]) == 2
    assert admin.received == []


@pytest.mark.parametrize("where", ["--clickhouse", "default"])
def test_forget_and_the_readers_reach_a_serve_chdb_through_the_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, admin: AdminStandIn, where: str) -> None:
    """Its chDB named by DSN (or the default chdb://.pixeltrack/chdb in the serve's folder): not opened
    beside the serve, which would take the folder from the serve's own writes."""
    import argparse

    from pixeltrack.commands.data import running_serve as serve_of
    from schemas.settings import Settings

    monkeypatch.delenv("PIXELTRACK_TENANTS_FILE", raising=False)
    monkeypatch.delenv("PIXELTRACK_CLICKHOUSE_DSN", raising=False)
    monkeypatch.chdir(tmp_path)
    running_serve(tmp_path / ".pixeltrack", admin.url, [])
    flags = ["--clickhouse", "chdb://.pixeltrack/chdb"] if where == "--clickhouse" else []
    assert main(["forget", "--recipient", "r-1", "--tenant", "", *flags]) == 0
    assert admin.received == [{"recipient": "r-1", "tenant": ""}]
    args = argparse.Namespace(data=None, clickhouse=flags[1] if flags else None)
    info = serve_of(args, Settings(_env_file=None))
    assert info is not None
    assert info.admin_url == admin.url
    assert not (tmp_path / ".pixeltrack" / "chdb").exists()
