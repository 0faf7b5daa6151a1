"""Erasure: `pixeltrack forget` removes a recipient from every table that can name them."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.privacy import PATH_SEPARATORS, keyed_recipient_hash

# Tables whose rows name a recipient directly (recipient_id), and those keyed by the recipient's
# message ids. Hourly aggregates hold counts (and keyed hashes) only and stay.
BY_RECIPIENT = ("events", "sends", "conversions", "message_totals", "deliveries", "consents")
BY_MESSAGE = ("link_totals",)
# No query of forget is logged with its text (where the server logs queries at all): the two that
# fill the pending table name the recipient.
QUIET = {"log_queries": 0, "log_query_threads": 0, "log_profile_events": 0}


def _dead_letters_naming(pending: str) -> str:
    """Dead letters naming a pending recipient: a token in the path (the edge's letters; percent-encoding
    undone, twice, as the edge's router would) or in the record kept in `raw` (the processors' letters
    of hits) whose payload says tenant and recipient, signed or not, or a send's or conversion's record
    that does. Exact: the token's payload is decoded and compared field by field (payload fields:
    kind, tenant, campaign, variant, message, recipient, ...)."""
    path = "decodeURLComponent(decodeURLComponent(path))"
    in_path = "'/[a-z]/([A-Za-z0-9_-]{1,16}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+)'"
    in_raw = "'([A-Za-z0-9_-]{1,16}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]+)'"
    token = (f"if(extract({path}, {in_path}) != '', extract({path}, {in_path}), "
             f"if(JSONExtractString(raw, 'token') != '', JSONExtractString(raw, 'token'), extract(raw, {in_raw})))")
    payload = f"tryBase64URLDecode(splitByChar('.', {token})[2])"
    who = f"(SELECT tenant, recipient FROM {pending})"
    # An id typed into a path by hand (junk such as /o/<recipient>.gif) is one of the path's words, split at
    # the characters schemas.privacy.PATH_SEPARATORS names (the processors drop later ones by the same rule).
    words = f"splitByRegexp('[{PATH_SEPARATORS}]', decodeURLComponent(decodeURLComponent(decodeURLComponent(path))))"
    return (f"(JSONExtractString({payload}, 2), JSONExtractString({payload}, 6)) IN {who} "
            f"OR (JSONExtractString(raw, 'tenant'), JSONExtractString(raw, 'recipient')) IN {who} "
            f"OR hasAny({words}, (SELECT groupArray(recipient) FROM {pending}))")


def forget(client: Client, recipient: str, tenant: str, key: bytes, settle_seconds: float = 30.0) -> dict[str, int]:
    """Deletes every row naming the recipient (synchronously: mutations_sync=2), records the erasure
    under the recipient's keyed hash (schemas.privacy.keyed_recipient_hash with `key`), and returns rows
    deleted per table.

    Nothing kept names the recipient: the tenant, id and message ids go into a Memory table of this
    forget's own (never on disk, dropped at the end), and the deletes read it (`… IN (SELECT … FROM
    forget_…)`), so the delete commands ClickHouse keeps (system.mutations, mutation_*.txt) hold no id
    nor hash; `erasures` holds the keyed hash only. The copies of the parts a delete rewrote stay on
    disk until ClickHouse's cleanup removes them: this waits up to `settle_seconds` for that (seconds
    on chDB; a server keeps them for its old_parts_lifetime)."""
    pending = f"forget_{os.urandom(8).hex()}"
    client.command(f"CREATE TABLE {pending} (tenant String, recipient String, message String) ENGINE = Memory",
                   settings=QUIET)
    try:
        client.command(f"INSERT INTO {pending} VALUES ({{t:String}}, {{r:String}}, '')",
                       parameters={"t": tenant, "r": recipient}, settings=QUIET)
        who = f"(tenant, recipient_id) IN (SELECT tenant, recipient FROM {pending})"
        naming = dict.fromkeys(BY_RECIPIENT, who)
        naming.update(dict.fromkeys(
            BY_MESSAGE, f"(tenant, message_id) IN (SELECT tenant, message FROM {pending} WHERE message != '')"))
        naming["dead_letters"] = _dead_letters_naming(pending)
        deleted = dict.fromkeys(naming, 0)
        for _ in range(3):  # again if rows arrived while deleting (a processor not yet told of the erasure)
            client.command(f"INSERT INTO {pending} SELECT DISTINCT tenant, recipient_id, message_id FROM ("
                           f"SELECT tenant, recipient_id, message_id FROM sends WHERE {who} UNION ALL "
                           f"SELECT tenant, recipient_id, message_id FROM events WHERE {who} UNION ALL "
                           f"SELECT tenant, recipient_id, message_id FROM message_totals WHERE {who}) "
                           "WHERE message_id != ''", settings=QUIET)
            found = 0
            for table, where in naming.items():
                n = int(client.query(f"SELECT count() FROM {table} WHERE {where}", settings=QUIET).result_rows[0][0])
                if n:
                    client.command(f"ALTER TABLE {table} DELETE WHERE {where}",
                                   settings={"mutations_sync": 2, **QUIET})
                found += n
                deleted[table] += n
            if not found:
                break
    finally:
        client.command(f"DROP TABLE IF EXISTS {pending} SYNC", settings=QUIET)
    done = time.time()
    client.insert("erasures", [[tenant, keyed_recipient_hash(key, tenant, recipient), datetime.now(UTC), deleted]],
                  column_names=["tenant", "recipient_hash", "requested_at", "rows_deleted"])
    _settle(client, [t for t, n in deleted.items() if n], done, settle_seconds)
    return deleted


def _settle(client: Client, tables: list[str], since: float, timeout: float) -> None:
    """Waits (at most `timeout` seconds) until the parts the deletes replaced are removed from disk."""
    if not tables or timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = int(client.query("SELECT count() FROM system.parts WHERE database = currentDatabase() AND "
                                "table IN {tables:Array(String)} AND NOT active AND "
                                "remove_time <= fromUnixTimestamp({s:Int64})",
                                parameters={"tables": tables, "s": int(since) + 1}, settings=QUIET).result_rows[0][0])
        if not left:
            return
        time.sleep(0.5)
