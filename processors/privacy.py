"""Erasure: `pixeltrack forget` removes a recipient from every table that can name them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.privacy import keyed_recipient_hash

# Tables whose rows name a recipient directly (recipient_id), with the column that keys a row for the
# delete, and those keyed by the recipient's message ids. Hourly aggregates hold counts (and keyed
# hashes) only and stay.
BY_RECIPIENT = ("events", "sends", "conversions", "message_totals")
BY_MESSAGE = ("link_totals",)
ROW_KEY = {"events": "hit_id", "sends": "message_id", "conversions": "idempotency_key",
           "message_totals": "message_id", "link_totals": "message_id", "dead_letters": "id"}
MAX_KEYS = 10_000  # row keys per ALTER … DELETE
# No query of forget is logged with its text (where the server logs queries at all): the SELECTs that
# find the rows name the recipient.
QUIET = {"log_queries": 0, "log_query_threads": 0, "log_profile_events": 0}


# Dead letters naming the recipient: a token in the path (the edge's letters; percent-encoding undone,
# twice, as the edge's router would) or in the record kept in `raw` (the processors' letters of hits)
# whose payload says tenant and recipient, or a send's or conversion's record that does. Exact: the
# token's payload is decoded and compared field by field (payload fields: kind, tenant, campaign,
# variant, message, recipient, ...).
_PATH = "decodeURLComponent(decodeURLComponent(path))"
_TOKEN_RE = "'/[a-z]/([A-Za-z0-9_-]{1,16}\\\\.[A-Za-z0-9_-]+\\\\.[A-Za-z0-9_-]+)'"
_RAW_TOKEN_RE = "'([A-Za-z0-9_-]{1,16}\\\\.[A-Za-z0-9_-]{8,}\\\\.[A-Za-z0-9_-]+)'"
_TOKEN = (f"if(extract({_PATH}, {_TOKEN_RE}) != '', extract({_PATH}, {_TOKEN_RE}), "
          f"if(JSONExtractString(raw, 'token') != '', JSONExtractString(raw, 'token'), extract(raw, {_RAW_TOKEN_RE})))")
_PAYLOAD = f"tryBase64URLDecode(splitByChar('.', {_TOKEN})[2])"
DEAD_LETTERS_NAMING = (
    f"(JSONExtractString({_PAYLOAD}, 6) = {{r:String}} AND JSONExtractString({_PAYLOAD}, 2) = {{t:String}}) "
    "OR (JSONExtractString(raw, 'recipient') = {r:String} AND JSONExtractString(raw, 'tenant') = {t:String})")

_NAMING = dict.fromkeys(BY_RECIPIENT, "tenant = {t:String} AND recipient_id = {r:String}")
_NAMING["dead_letters"] = DEAD_LETTERS_NAMING


def forget(client: Client, recipient: str, tenant: str, key: bytes, settle_seconds: float = 30.0) -> dict[str, int]:
    """Deletes every row naming the recipient (synchronously: mutations_sync=2), records the erasure
    under the recipient's keyed hash (schemas.privacy.keyed_recipient_hash with `key`), and returns rows
    deleted per table.

    Nothing written keeps the id: the rows are found by SELECTs (not logged) and deleted by their row
    keys (hit, message, idempotency and letter ids), so the delete commands ClickHouse keeps
    (system.mutations, mutation_*.txt) name no recipient; `erasures` holds the keyed hash only. The
    copies of the parts a delete rewrote stay on disk until ClickHouse's cleanup removes them: this
    waits up to `settle_seconds` for that (seconds on chDB; a server keeps them old_parts_lifetime)."""
    params: dict[str, Any] = {"r": recipient, "t": tenant}
    deleted = dict.fromkeys((*BY_RECIPIENT, *BY_MESSAGE, "dead_letters"), 0)
    for _ in range(3):  # again if rows arrived while deleting (a processor not yet told of the erasure)
        found = 0
        messages = [str(r[0]) for r in _query(
            client, "SELECT DISTINCT message_id FROM sends WHERE tenant = {t:String} AND recipient_id = {r:String} "
            "UNION DISTINCT SELECT DISTINCT message_id FROM events WHERE tenant = {t:String} AND recipient_id = "
            "{r:String} UNION DISTINCT SELECT DISTINCT message_id FROM message_totals WHERE tenant = {t:String} "
            "AND recipient_id = {r:String}", params) if r[0]]
        for table, where in _NAMING.items():
            keys = [str(r[0]) for r in _query(client, f"SELECT DISTINCT {ROW_KEY[table]} FROM {table} WHERE {where}",
                                              params)]
            n = int(_query(client, f"SELECT count() FROM {table} WHERE {where}", params)[0][0])
            if ROW_KEY[table] == "message_id":
                keys = sorted(set(keys) | set(messages))
            found += n
            deleted[table] += n
            _delete(client, table, tenant, ROW_KEY[table], keys)
        for table in BY_MESSAGE:
            n = int(_query(client, f"SELECT count() FROM {table} WHERE tenant = {{t:String}} AND message_id IN "
                           "{m:Array(String)}", {"t": tenant, "m": messages})[0][0]) if messages else 0
            found += n
            deleted[table] += n
            _delete(client, table, tenant, "message_id", messages)
        if not found:
            break
    done = time.time()
    client.insert("erasures", [[tenant, keyed_recipient_hash(key, tenant, recipient), datetime.now(UTC), deleted]],
                  column_names=["tenant", "recipient_hash", "requested_at", "rows_deleted"])
    _settle(client, [t for t, n in deleted.items() if n], done, settle_seconds)
    return deleted


def _query(client: Client, sql: str, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
    return client.query(sql, parameters=parameters, settings=QUIET).result_rows


def _delete(client: Client, table: str, tenant: str, column: str, keys: list[str]) -> None:
    """ALTER TABLE … DELETE by row keys, MAX_KEYS at a time, waiting for each (mutations_sync=2)."""
    for i in range(0, len(keys), MAX_KEYS):
        chunk = keys[i:i + MAX_KEYS]
        where = f"{column} IN {{k:Array(String)}}" if table == "dead_letters" else \
            f"tenant = {{t:String}} AND {column} IN {{k:Array(String)}}"
        client.command(f"ALTER TABLE {table} DELETE WHERE {where}", parameters={"t": tenant, "k": chunk},
                       settings={"mutations_sync": 2, **QUIET})


def _settle(client: Client, tables: list[str], since: float, timeout: float) -> None:
    """Waits (at most `timeout` seconds) until the parts the deletes replaced are removed from disk."""
    if not tables or timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = int(_query(client, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND "
                          "table IN {tables:Array(String)} AND NOT active AND "
                          "remove_time <= fromUnixTimestamp({s:Int64})",
                          {"tables": tables, "s": int(since) + 1})[0][0])
        if not left:
            return
        time.sleep(0.5)
