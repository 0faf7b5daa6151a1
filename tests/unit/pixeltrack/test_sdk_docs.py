"""docs/sdk.md's worked example runs as written (fewer recipients) against the real ingest API handler."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from aiohttp import web

from ingest.api import create_api_app
from ingest.publisher import QueuePublisher
from schemas.records import Record
from schemas.sends import Send
from schemas.tokens import Keyring
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[3]
SECRET = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)
    (block,) = [b for b in blocks if "register_sends" in b and "def deliver" in b]
    return block


async def test_the_worked_example_registers_every_send_with_pseudonyms() -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    keyring = Keyring.parse(SECRET)
    app = create_api_app(keyring, ["doc-key"], Topics(), QueuePublisher(bus), own_publisher=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = {**os.environ, "COUNT": "5003", "PIXELTRACK_SIGNING_KEYS": SECRET, "PIXELTRACK_API_KEY": "doc-key",
               "PIXELTRACK_API": f"http://127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", example(), cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "5003 sends registered"
    sends = [Send.decode(bus.get_nowait().value) for _ in range(bus.qsize())]
    assert len(sends) == 5003
    assert len({s.message for s in sends}) == 5003
    assert all(re.fullmatch(r"p-[0-9a-f]{32}", s.recipient) for s in sends)
    assert {s.variant for s in sends} == {"A", "B"}
    assert {s.mailbox_domain for s in sends} == {"example.org"}
    assert {s.links for s in sends} == {2}
    assert b"@example.org" not in err  # hash_recipients: no warning naming an address, no address at all
