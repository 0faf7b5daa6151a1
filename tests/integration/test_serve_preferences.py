"""`pixeltrack serve` with a [recipient_events] table: a preferences POST on its edge reaches a real
receiver on 127.0.0.1 as one signed webhook; a scanner's GET changes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from pixeltrack.compose.build import keyring_for
from pixeltrack.compose.serve import serve
from pixeltrack.sender.sdk import Message, Tracker
from schemas.settings import Settings
from tests.plugins.waiting import eventually
from tests.unit.processors.triggers.receiver import Receiver

SECRET = "serve-prefs-secret-0123456789"
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"


async def test_serve_sends_a_withdrawal_to_the_crm(settings: Settings, tmp_path: Path) -> None:
    receiver = await Receiver(SECRET).start()
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[webhooks.crm]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n[recipient_events]\n')
    data = tmp_path / "data"
    s = settings.model_copy(update={"triggers_rules": rules})
    stop = asyncio.Event()
    task = asyncio.create_task(serve(s, data, "127.0.0.1", 0, api_port=0, dashboard_port=0, stop=stop,
                                     announce=False))
    try:
        await eventually(lambda: (data / "serve.json").exists() or task.done(), 60, "serve started")
        assert not task.done(), task
        edge = json.loads((data / "serve.json").read_text())["edge_url"]
        link = Tracker(edge, keyring_for(s, data)).preferences_url(Message("welcome", "m-1", "r-1"))
        async with aiohttp.ClientSession() as http:
            async with http.get(link, headers={"User-Agent": SCANNER_UA}) as resp:
                assert resp.status == 200
            await asyncio.sleep(1.0)
            assert receiver.calls == []
            async with http.post(link, data={"consent": "denied"}) as resp:
                assert resp.status == 200
        await eventually(lambda: len(receiver.accepted) == 1, 60, "the consent webhook")
        await asyncio.sleep(0.5)
        (got,) = receiver.accepted
        assert (got.rule, got.payload["recipient"], got.payload["state"], got.payload["source"]) == (
            "consent.changed", "r-1", "denied", "preferences")
        assert len(receiver.calls) == 1
        assert receiver.bad_signatures == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await receiver.stop()
    assert (data / "recipient-events" / "triggers-state.jsonl").read_text().count('"fired"') == 1
