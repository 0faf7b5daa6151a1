"""A webhook receiver on 127.0.0.1 for tests: verifies every delivery's signature, records it, and can fail."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from processors.triggers.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SignatureError, verify_signature


@dataclass(frozen=True)
class Received:
    key: str
    attempt: int
    rule: str
    signed_at: int
    body: bytes
    payload: dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """Answers `fail_with` statuses first (one per request, in order), then 204 — or `always` if set.
    `accepted` holds the verified deliveries it answered with 2xx; `calls` every request's
    (idempotency key, status answered)."""

    secret: str
    port: int = field(default_factory=free_port)
    fail_with: list[int] = field(default_factory=list)
    always: int | None = None
    accepted: list[Received] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/pixeltrack"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        try:
            signed_at = verify_signature(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body, tolerance=300)
        except SignatureError as exc:
            self.bad_signatures.append(exc.reason)
            self.calls.append((key, 401))
            return web.Response(status=401, text=exc.reason)
        status = self.always if self.always is not None else (self.fail_with.pop(0) if self.fail_with else 204)
        self.calls.append((key, status))
        if 200 <= status < 300:
            self.accepted.append(Received(key, int(request.headers["X-Pixeltrack-Attempt"]),
                                          request.headers["X-Pixeltrack-Rule"], signed_at, body, orjson.loads(body)))
        return web.Response(status=status, text="nope" if status >= 300 else "")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks/pixeltrack", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
