"""Erasure: `pixeltrack forget` removes a recipient from every table that can name them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.privacy import recipient_hash

# Tables whose rows name a recipient directly (recipient_id) and those keyed by the recipient's
# message ids. Hourly aggregates hold counts only and stay.
BY_RECIPIENT = ("events", "sends", "conversions", "message_totals")
BY_MESSAGE = ("link_totals",)


# Dead letters naming the recipient: a token in the path (the edge's letters) or in the record kept
# in `raw` (the processors' letters of hits) whose payload says tenant and recipient, or a send's or
# conversion's record that does. Exact: the token's payload is decoded and compared field by field
# (payload fields: kind, tenant, campaign, variant, message, recipient, ...).
_TOKEN = ("if(extract(path, '/[a-z]/([A-Za-z0-9_-]{1,16}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+)') != '', "
          "extract(path, '/[a-z]/([A-Za-z0-9_-]{1,16}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+)'), "
          "JSONExtractString(raw, 'token'))")
_PAYLOAD = f"tryBase64URLDecode(splitByChar('.', {_TOKEN})[2])"
DEAD_LETTERS_NAMING = (
    f"(JSONExtractString({_PAYLOAD}, 6) = {{r:String}} AND JSONExtractString({_PAYLOAD}, 2) = {{t:String}}) "
    "OR (JSONExtractString(raw, 'recipient') = {r:String} AND JSONExtractString(raw, 'tenant') = {t:String})")


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
    deleted["dead_letters"] = int(client.query(f"SELECT count() FROM dead_letters WHERE {DEAD_LETTERS_NAMING}",
                                               parameters=params).result_rows[0][0])
    if deleted["dead_letters"]:
        client.command(f"ALTER TABLE dead_letters DELETE WHERE {DEAD_LETTERS_NAMING}", parameters=params,
                       settings=sync)
    client.insert("erasures", [[tenant, recipient_hash(tenant, recipient), datetime.now(UTC), deleted]],
                  column_names=["tenant", "recipient_hash", "requested_at", "rows_deleted"])
    return deleted
