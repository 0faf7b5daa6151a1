"""docs/sdk.md's worked example runs as written (fewer recipients; its deliver() keeps what it is handed) against
the real ingest API handler, and no address leaves it: not in a message id, a URL or anything a token says."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import os
import re
import sys
from pathlib import Path

from aiohttp import web

from ingest.api import create_api_app
from ingest.publisher import QueuePublisher
from schemas.deliveries import Delivery
from schemas.records import Record
from schemas.sends import Send
from schemas.tokens import Keyring, PreferencesRef, TokenKind, TokenPayload, verify_preferences
from schemas.topics import Topics

ROOT = Path(__file__).resolve().parents[3]
SECRET = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"


def example(marker: str = "def deliver") -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)
    (block,) = [b for b in blocks if "ApiClient" in b and marker in b]
    return block


async def run_against_the_api(code: str, bus: asyncio.Queue[Record], count: str = "",
                              env_extra: dict[str, str] | None = None) -> tuple[int | None, bytes, bytes]:
    """Runs `code` in a fresh interpreter against the real API handler publishing onto `bus`."""
    keyring = Keyring.parse(SECRET)
    app = create_api_app(keyring, ["doc-key"], Topics(), QueuePublisher(bus), own_publisher=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = {**os.environ, "COUNT": count, "PIXELTRACK_SIGNING_KEYS": SECRET, "PIXELTRACK_API_KEY": "doc-key",
               "PIXELTRACK_API": f"http://127.0.0.1:{port}", "PYTHONPATH": str(ROOT), **(env_extra or {})}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await runner.cleanup()
    return proc.returncode, out, err


async def test_the_delivery_events_example_posts_each_event() -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    returncode, out, err = await run_against_the_api(example("record_event("), bus)
    assert returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "5 events recorded"
    events = [Delivery.decode(bus.get_nowait().value) for _ in range(bus.qsize())]
    assert [(e.message, e.type, e.id, e.bounce, e.smtp_code) for e in events] == [
        ("spring-r0000001", "bounced", "evt-881", "hard", 550), ("spring-r0000002", "bounced", "evt-882", "soft", 452),
        ("spring-r0000002", "delivered", "evt-903", "", 0), ("spring-r0000003", "complained", "fbl-17", "", 0),
        ("spring-r0000004", "replied", "re-5", "", 0)]
    assert events[-1].ts == 1_796_119_200.0  # 2026-12-01T10:00:00Z


DELIVER = '''    """Hand the email to your mail system."""\n'''
# What the example's deliver() is handed, kept: each email's body and headers on one line.
CAPTURE = DELIVER + '''    with open(os.environ["DELIVERED"], "a") as f:
        f.write(" ".join([body.decode(), *headers.values()]).replace("\\n", " ") + "\\n")
'''
TOKEN_URL = re.compile(r"https?://[^\s\"'<>/]+/([ocudip])/([A-Za-z0-9_.-]+)")


def minted(delivered: str, keyring: Keyring) -> list[TokenPayload | PreferencesRef]:
    """What every tracking URL in the delivered emails and headers says (each verified: genuine tokens)."""
    kinds: dict[str, TokenKind] = {"o": "open", "c": "click", "u": "click", "d": "download", "i": "image"}
    out: list[TokenPayload | PreferencesRef] = []
    for route, token in TOKEN_URL.findall(html.unescape(delivered)):
        if route == "p":
            out.append(verify_preferences(keyring, token))
        else:
            out.append(keyring.verify(token.removesuffix(".gif"), kinds[route]))
    return out


async def test_the_worked_example_registers_every_send_with_pseudonyms(tmp_path: Path) -> None:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    code = example()
    assert DELIVER in code
    delivered = tmp_path / "delivered.txt"
    returncode, out, err = await run_against_the_api(code.replace(DELIVER, CAPTURE), bus, count="5003",
                                                     env_extra={"DELIVERED": str(delivered)})
    assert returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "5003 sends registered"
    sends = [Send.decode(bus.get_nowait().value) for _ in range(bus.qsize())]
    assert len(sends) == 5003
    assert len({s.message for s in sends}) == 5003
    assert all(re.fullmatch(r"p-[0-9a-f]{32}", s.recipient) for s in sends)
    assert {s.variant for s in sends} == {"A", "B"}
    assert {s.mailbox_domain for s in sends} == {"example.org"}
    assert {s.links for s in sends} == {2}
    assert b"@example.org" not in err  # hash_recipients: no warning naming an address, no address at all
    # "The address never leaves this job": not in a message id, a URL or anything a token says.
    assert not [s.message for s in sends if "@" in s.message]
    emails = delivered.read_text()
    assert len(emails.splitlines()) == 5003
    assert "@" not in emails
    payloads = minted(emails, Keyring.parse(SECRET))
    assert len(payloads) == 5003 * 5  # the pixel, two links, the preferences link, List-Unsubscribe
    said = [v for p in payloads for v in dataclasses.asdict(p).values() if isinstance(v, str)]
    assert not [v for v in said if "@" in v]
    assert {p.message for p in payloads} == {s.message for s in sends}
