"""The edge app served on 127.0.0.1 with the in-process transport, for handler tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from ingest.publisher import QueuePublisher
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring


@dataclass
class EdgeUnderTest:
    client: TestClient
    bus: asyncio.Queue[Record]

    async def records(self, n: int, timeout: float = 5.0) -> list[Record]:
        """The next n records the edge forwarded."""
        return [await asyncio.wait_for(self.bus.get(), timeout) for _ in range(n)]


@pytest.fixture
async def edge_app(settings: Settings, keyring: Keyring) -> AsyncIterator[EdgeUnderTest]:
    bus: asyncio.Queue[Record] = asyncio.Queue()
    app = create_app(settings, publisher=QueuePublisher(bus), keyring=keyring)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield EdgeUnderTest(client, bus)


def strip_click_id(location: str, param: str = "pt_cid") -> str:
    """A redirect's Location without the click id the edge appends: the destination as signed."""
    head, hash_, fragment = location.partition("#")
    for sep in ("&", "?"):
        at = head.find(f"{sep}{param}=")
        if at >= 0:
            head = head[:at]
            break
    return head + hash_ + fragment
