"""A running `serve`'s admin HTTP API (127.0.0.1, token in its state file): read-only SQL and `forget`,
since it owns the chDB folder (one process per path); and the client the commands reach it with."""

from __future__ import annotations

import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pixeltrack.serve_state import ServeInfo

if TYPE_CHECKING:
    from aiohttp import web

    from processors.writer import ClickHouseWriter
    from schemas.tenants import TenantRegistry

ADMIN_HEADER = "X-Pixeltrack-Admin"


class QueryError(RuntimeError):
    """ClickHouse's own message for a query that failed."""


def admin_app(writer: ClickHouseWriter, token: str,
              forgotten: Callable[[str], None] | None = None, privacy_key: bytes | None = None,
              tenants: TenantRegistry | None = None,
              journals: Callable[[str, str], Awaitable[int]] | None = None) -> web.Application:
    """Read-only SQL for `pixeltrack query` while serve owns the chDB path (one process per path), and
    `forget` (with `privacy_key`, the installation's; without, forget is refused). `forgotten(keyed
    recipient hash)` is told before the rows are deleted (the processor then drops
    what still arrives for the recipient at once, not at its next read of `erasures`); `tenants` (who
    serves which host) decide which letters name them (processors.privacy.letters_naming);
    `journals(tenant, recipient)` then erases them from the files of serve's triggers and returns the
    lines it removed (answered as `trigger_journal_lines`)."""
    from aiohttp import web  # here: the commands that only post to it (query, forget) load no server

    from ingest.serverlog import quiet_bad_requests
    from schemas.privacy import keyed_recipient_hash

    async def query(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), token):
            return web.json_response({"error": "missing or wrong admin token"}, status=401)
        try:
            body = await request.json()
            sql, parameters = str(body.get("sql", "")).strip(), body.get("parameters") or {}
        except (ValueError, AttributeError):
            return web.json_response({"error": 'body must be {"sql": "...", "parameters": {...}}'}, status=400)
        if not sql:
            return web.json_response({"error": "empty query"}, status=400)
        try:
            columns, rows = await writer.query(sql, readonly=True, parameters=parameters)
        except Exception as exc:  # ClickHouse's message is the useful answer for the person asking
            return web.json_response({"error": str(exc).strip()[:2000]}, status=400)
        return web.json_response({"columns": columns, "rows": rows}, dumps=lambda o: json.dumps(o, default=str))

    async def forget(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get(ADMIN_HEADER, ""), token):
            return web.json_response({"error": "missing or wrong admin token"}, status=401)
        try:
            body = await request.json()
            recipient, tenant = body.get("recipient") or "", body.get("tenant") or ""
        except (ValueError, AttributeError):
            return web.json_response({"error": 'body must be {"recipient": "...", "tenant": "..."}'}, status=400)
        if not recipient or not isinstance(recipient, str) or not isinstance(tenant, str):
            return web.json_response({"error": "recipient (a string) is required; tenant is a string"}, status=400)
        if privacy_key is None:
            return web.json_response({"error": "forget is not available here (no privacy key)"}, status=503)
        if forgotten is not None:
            forgotten(keyed_recipient_hash(privacy_key, tenant, recipient))
        deleted = await writer.forget(recipient, tenant, privacy_key, tenants)
        if journals is not None:
            deleted["trigger_journal_lines"] = await journals(tenant, recipient)
        return web.json_response({"deleted": deleted})

    quiet_bad_requests()  # a malformed request: one DEBUG line, address truncated (ingest.serverlog)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/query", query)
    app.router.add_post("/forget", forget)
    return app


def admin_post(info: ServeInfo, path: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST to a running serve's admin endpoint (it owns the chDB folder); QueryError carries its message."""
    req = urllib.request.Request(f"{info.admin_url}{path}", method="POST", data=json.dumps(payload).encode(),
                                 headers={ADMIN_HEADER: info.admin_token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}")
        exc.close()
        raise QueryError(detail.get("error", str(exc))) from None
