"""A processor's /metrics (pixeltrack/compose/metrics.py): served by aiohttp under the process's limits on the
configured host, loopback by default; and no server anywhere bypasses the limits. The deadlines and the cap
on real sockets are tests/unit/ingest/test_serving.py's ("metrics")."""

from __future__ import annotations

import ast
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from pixeltrack.compose.metrics import METRICS_CONNECTIONS, metrics_limits, start_metrics
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
# Calls that serve HTTP without ingest/serving.py's deadlines and cap.
UNGUARDED = {"start_http_server", "start_wsgi_server", "make_server", "run_app", "HTTPServer", "ThreadingHTTPServer",
             "TCPSite", "start_server"}


def test_the_metrics_listen_on_loopback_by_default_under_the_settings_limits() -> None:
    s = Settings(_env_file=None)
    assert s.processor_metrics_host == "127.0.0.1"
    limits = metrics_limits(s)
    assert (limits.header_timeout, limits.keepalive_timeout) == (s.header_timeout_seconds, s.keepalive_timeout_seconds)
    assert limits.max_connections == METRICS_CONNECTIONS
    assert metrics_limits(s.model_copy(update={"max_connections": 5})).max_connections == 5


async def test_metrics_are_served_on_the_host_given() -> None:
    registry = CollectorRegistry()
    Counter("pixeltrack_probe", "A counter of this test.", registry=registry).inc(3)
    runner = await start_metrics("127.0.0.1", 0, metrics_limits(Settings(_env_file=None)), registry)
    try:
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1"
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert "pixeltrack_probe_total 3.0" in await resp.text()
    finally:
        await runner.cleanup()


def test_no_server_skips_the_shared_limits() -> None:
    """Every HTTP server goes through ingest/serving.py (LimitedSite, or the edge's EdgeSite built on it)."""
    found = []
    for package in ("ingest", "processors", "pixeltrack", "schemas"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in UNGUARDED:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []
