"""`pixeltrack dashboard`: the dashboard alone, reading a ClickHouse server (or a chDB path no one holds)."""

from __future__ import annotations

import asyncio

from ingest.serving import ServerLimits
from pixeltrack.dashboard.app import query_with, start_dashboard
from processors.writer import ClickHouseWriter
from schemas.runtime import stop_on_signals


async def run_dashboard(dsn: str, database: str, host: str = "127.0.0.1", port: int = 8082, *, tenant: str = "",
                        refresh_seconds: int = 5, stop: asyncio.Event | None = None,
                        limits: ServerLimits | None = None) -> None:
    """Serves until SIGINT/SIGTERM (or `stop`). A chdb:// path can be opened by one process at a time:
    while `pixeltrack serve` holds it, use the dashboard serve runs instead."""
    stop = stop or asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)
    writer = ClickHouseWriter(dsn, database)
    try:
        runner = await start_dashboard(query_with(writer), host, port, tenant=tenant,
                                       refresh_seconds=refresh_seconds, limits=limits)
        try:
            bound = runner.addresses[0]
            print(f"pixeltrack dashboard on http://{bound[0]}:{bound[1]}/ (Ctrl-C stops)", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        await writer.close()
