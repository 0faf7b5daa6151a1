"""The baseline for bench_edge: a bare aiohttp handler answering the same 43-byte GIF with the same
headers, on the same server setup as the edge (AppRunner, uvloop, no access log), and nothing else.

Run: python bench/bare_gif.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web

from ingest.pixel import GIF, PIXEL_HEADERS


async def pixel(request: web.Request) -> web.Response:
    return web.Response(body=GIF, headers=PIXEL_HEADERS)


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/o/{name}", pixel, allow_head=True)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
