"""The receiver example of docs/triggers.md, run as written: it verifies, and acts once per signed id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from processors.triggers.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

from .receiver import free_port

DOC = Path(__file__).resolve().parents[4] / "docs" / "triggers.md"


def example() -> dict[str, Any]:
    """The namespace of the doc's Python block after running it (its `app`, `seen` and `SECRET`)."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    namespace: dict[str, Any] = {"__name__": "receiver_example"}
    exec(compile(code, "docs/triggers.md", "exec"), namespace)  # our own documentation, run as written
    return namespace


async def test_the_docs_receiver_acts_once_per_signed_id(capsys: pytest.CaptureFixture[str]) -> None:
    ns = example()
    runner = web.AppRunner(ns["app"], access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hooks/pixeltrack"
    body = orjson.dumps({"id": "k" * 32, "rule": "tell-sales", "recipient": "r-1", "message": "m-1"},
                        option=orjson.OPT_SORT_KEYS)
    statuses = []
    try:
        async with aiohttp.ClientSession() as session:
            # The delivery, a retry of it, and a captured copy replayed under another Idempotency-Key.
            for key in ("k" * 32, "k" * 32, "another-key"):
                headers = {SIGNATURE_HEADER: sign(ns["SECRET"], body), IDEMPOTENCY_HEADER: key}
                async with session.post(url, data=body, headers=headers) as resp:
                    statuses.append(resp.status)
            forged = body.replace(b"r-1", b"r-2")
            async with session.post(url, data=forged, headers={SIGNATURE_HEADER: sign(ns["SECRET"], body)}) as resp:
                statuses.append(resp.status)
    finally:
        await runner.cleanup()
    assert statuses == [204, 204, 204, 401]
    assert capsys.readouterr().out == "tell-sales r-1 m-1\n"
    assert ns["seen"] == {"k" * 32}
