"""`pixeltrack serve`, `link` and `query` as a person runs them: real processes, chDB, HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.edge import strip_click_id

BIN = Path(sys.executable).parent / "pixeltrack"


def run(*args: str) -> str:
    out = subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True, timeout=120)
    return out.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELTRACK_")}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--api-port", "0", "--dashboard-port", "0",
                                 "--data", str(data)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    state = data / "serve.json"
    deadline = time.monotonic() + 60
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {log.read_text()}")
        time.sleep(0.1)
    yield data, json.loads(state.read_text())["edge_url"], proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log.read_text()


def test_serve_link_fetch_query(served: tuple[Path, str, subprocess.Popen[str]]) -> None:
    data, edge, proc = served
    urls = json.loads(run("link", "--data", str(data), "--base-url", edge, "--campaign", "welcome",
                          "--message", "m-1", "--recipient", "r-1", "--url", "https://example.com/", "--json"))
    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(urls["pixel"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/gif"
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(urls["clicks"][0])
    redirect.value.close()
    assert redirect.value.code == 302
    assert strip_click_id(redirect.value.headers["Location"]) == "https://example.com/"

    deadline = time.monotonic() + 30
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        out = run("query", "--data", str(data), "--format", "json",
                  "SELECT kind, campaign, message_id, link_url, verdict FROM hits ORDER BY kind")
        rows = [json.loads(line) for line in out.splitlines()]
        if len(rows) == 2:
            break
        time.sleep(0.3)
    assert [(r["kind"], r["campaign"], r["message_id"], r["link_url"]) for r in rows] == [
        ("click", "welcome", "m-1", "https://example.com/"), ("open", "welcome", "m-1", "")]
    assert all(r["verdict"] for r in rows)

    # read-only: the query path refuses writes
    failed = subprocess.run([str(BIN), "query", "--data", str(data), "DROP TABLE events"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1

    # the ingest API registers sends; report and dashboard read them through serve
    info = json.loads((data / "serve.json").read_text())
    assert info["tenants"] == []  # what `forget` asks before erasing without --tenant
    from pixeltrack.sender.sdk import ApiClient
    from schemas.sends import Send

    api = ApiClient(info["api_url"], info["api_key"])
    assert api.register_sends([Send("", "welcome", "", "m-1", "r-1", time.time()),
                               Send("", "welcome", "", "m-2", "r-2", time.time())]) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        report = json.loads(run("report", "--data", str(data), "--campaign", "welcome", "--format", "json"))
        if report["variants"] and report["variants"][0]["delivered"] == 2:
            break
        time.sleep(0.3)
    assert report["variants"][0]["delivered"] == 2
    with urllib.request.urlopen(info["dashboard_url"] + "/") as resp:
        assert "welcome" in resp.read().decode()

    # erasure goes through serve too
    assert "erased" in run("forget", "--data", str(data), "--recipient", "r-1")
    out = run("query", "--data", str(data), "--format", "csv",
              "SELECT count() FROM events WHERE recipient_id = 'r-1'")
    assert out.splitlines() == ["count()", "0"]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not (data / "serve.json").exists()
    # stopped: the same query opens the chDB folder directly and sees the same rows
    out = run("query", "--data", str(data), "--format", "csv", "SELECT count() FROM sends")
    assert out.splitlines() == ["count()", "1"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None

