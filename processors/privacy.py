"""Erasure: `pixeltrack forget` removes a recipient from every table that can name them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.privacy import recipient_hash

# Tables whose rows name a recipient directly (recipient_id) and those keyed by the recipient's
# message ids. Hourly aggregates hold counts only and stay.
BY_RECIPIENT = ("events", "sends", "conversions", "message_totals")
BY_MESSAGE = ("link_totals",)


def _token_fragments(recipient: str) -> list[str]:
    """Base64url fragments that appear in any token whose JSON payload holds `"recipient"`, whatever
    its alignment in the payload: lets dead letters (which keep the request path) be searched."""
    out = []
    needle = f'"{recipient}"'.encode()
    for pad in range(3):
        enc = base64.urlsafe_b64encode(b"\0" * pad + needle).rstrip(b"=").decode()
        start = (pad * 4 + 2) // 3 + (1 if pad else 0)
        frag = enc[start:len(enc) - 2]
        if len(frag) >= 8:
            out.append(frag)
    return out


def forget(client: Client, recipient: str, tenant: str = "") -> dict[str, int]:
    """Deletes every row naming the recipient (synchronously: mutations_sync=2), records the erasure
    under the recipient's hash, and returns rows deleted per table."""
    params: dict[str, Any] = {"r": recipient, "t": tenant}
    messages = [str(r[0]) for r in client.query(
        "SELECT DISTINCT message_id FROM sends WHERE tenant = {t:String} AND recipient_id = {r:String} UNION DISTINCT "
        "SELECT DISTINCT message_id FROM events WHERE tenant = {t:String} AND recipient_id = {r:String}",
        parameters=params).result_rows]
    deleted: dict[str, int] = {}
    sync = {"mutations_sync": 2}
    for table in BY_RECIPIENT:
        where = "tenant = {t:String} AND recipient_id = {r:String}"
        deleted[table] = int(client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=params)
                             .result_rows[0][0])
        if deleted[table]:
            client.command(f"ALTER TABLE {table} DELETE WHERE {where}", parameters=params, settings=sync)
    if messages:
        mp = {"t": tenant, "m": messages}
        for table in BY_MESSAGE:
            where = "tenant = {t:String} AND message_id IN {m:Array(String)}"
            deleted[table] = int(client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=mp)
                                 .result_rows[0][0])
            if deleted[table]:
                client.command(f"ALTER TABLE {table} DELETE WHERE {where}", parameters=mp, settings=sync)
    frags = _token_fragments(recipient)
    if frags:
        fp = {"f": frags}
        where = "multiSearchAny(path, {f:Array(String)})"
        deleted["dead_letters"] = int(client.query(f"SELECT count() FROM dead_letters WHERE {where}",
                                                   parameters=fp).result_rows[0][0])
        if deleted["dead_letters"]:
            client.command(f"ALTER TABLE dead_letters DELETE WHERE {where}", parameters=fp, settings=sync)
    client.insert("erasures", [[tenant, recipient_hash(tenant, recipient), datetime.now(UTC), deleted]],
                  column_names=["tenant", "recipient_hash", "requested_at", "rows_deleted"])
    return deleted
