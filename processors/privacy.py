"""Erasure: `pixeltrack forget` removes a recipient from every table that can name them."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from schemas.privacy import keyed_recipient_hash, letter_recipients
from schemas.tenants import TenantRegistry

# Tables whose rows name a recipient directly (recipient_id), and those keyed by the recipient's
# message ids. Hourly aggregates hold counts (and keyed hashes) only and stay.
BY_RECIPIENT = ("events", "sends", "conversions", "message_totals", "deliveries", "consents")
BY_MESSAGE = ("link_totals",)
# No query of forget is logged with its text (where the server logs queries at all): the two that
# fill the pending table name the recipient.
QUIET = {"log_queries": 0, "log_query_threads": 0, "log_profile_events": 0}


PAGE = 5000  # dead letters read per query while looking for the recipient's


class ClusterRefused(RuntimeError):
    """`forget` was pointed at a ClickHouse cluster (Distributed tables), where its deletes cannot run."""


def letters_naming(client: Client, tenant: str, recipient: str,
                   tenants: TenantRegistry | None = None) -> list[tuple[str, str, str]]:
    """The keys (stage, reason, id) of the dead letters naming the recipient, decided in Python by
    schemas.privacy.letter_recipients: the rule the processors drop later letters by, so what forget
    deletes and what is dropped afterwards are the same letters (a token anywhere in the path or the
    record, percent-encoded or not, the record's recipient, the id as a word of the path). A word of the
    path names a recipient of the default tenant and of the tenant whose domain the letter's host is,
    as in the processors; without `tenants` (who serves which host) any host is taken to be `tenant`'s.

    Every letter is read, a page at a time in key order: a token's payload is base64 at any alignment
    and may be percent-encoded, so no SQL filter finds them all. Letters are a sample (a few per
    reason, edge and minute) kept days, not months: a few hundred thousand rows at most."""
    keys: list[tuple[str, str, str]] = []
    after: tuple[str, str, str] | None = None
    while True:
        where = "" if after is None else "WHERE (stage, reason, id) > ({s:String}, {r:String}, {i:String})"
        params = {} if after is None else {"s": after[0], "r": after[1], "i": after[2]}
        rows = client.query(f"SELECT stage, reason, id, host, path, raw FROM dead_letters {where} "
                            f"ORDER BY stage, reason, id LIMIT {PAGE} WITH TIES", parameters=params,
                            settings=QUIET).result_rows
        for stage, reason, id_, host, path, raw in rows:
            if tenants is None:
                word_tenants: tuple[str, ...] = (tenant,)
            else:
                host_tenant = tenants.for_host(str(host))
                word_tenants = ("", host_tenant[0]) if host_tenant is not None else ("",)
            if (tenant, recipient) in letter_recipients(str(path), str(raw), word_tenants):
                keys.append((str(stage), str(reason), str(id_)))
        if len(rows) < PAGE:
            return keys
        after = (str(rows[-1][0]), str(rows[-1][1]), str(rows[-1][2]))


def _refuse_a_cluster(client: Client) -> None:
    """ClusterRefused when `events` is a Distributed table: ClickHouse takes no mutations through one,
    and the Memory table the deletes read would exist on this node only (docs/deploy.md says what to do
    on a cluster). Checked before anything is written."""
    engine = client.query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'events'",
                          settings=QUIET).result_rows
    if engine and str(engine[0][0]) == "Distributed":
        raise ClusterRefused("forget erases on one ClickHouse server or chDB; this database's tables are "
                             "Distributed (a cluster): see docs/deploy.md, \"Erasure on a cluster\"")


def forget(client: Client, recipient: str, tenant: str, key: bytes, settle_seconds: float = 30.0,
           tenants: TenantRegistry | None = None) -> dict[str, int]:
    """Deletes every row naming the recipient (synchronously: mutations_sync=2), records the erasure
    under the recipient's keyed hash (schemas.privacy.keyed_recipient_hash with `key`), and returns rows
    deleted per table. Dead letters are found by letters_naming (`tenants`: see there).

    Nothing kept names the recipient: the tenant, id and message ids go into a Memory table of this
    forget's own (never on disk, dropped at the end), and the deletes read it (`… IN (SELECT … FROM
    forget_…)`), as they read the dead letters' keys from another, so the delete commands ClickHouse
    keeps (system.mutations, mutation_*.txt) hold no id nor hash; `erasures` holds the keyed hash only.
    The copies of the parts a delete rewrote stay on disk until ClickHouse's cleanup removes them: this
    waits up to `settle_seconds` for that (seconds on chDB; a server keeps them for its
    old_parts_lifetime). The files of `serve`'s triggers are not ClickHouse's: processors/triggers/erasure.py."""
    _refuse_a_cluster(client)
    pending = f"forget_{os.urandom(8).hex()}"
    letters = f"{pending}_letters"
    client.command(f"CREATE TABLE {pending} (tenant String, recipient String, message String) ENGINE = Memory",
                   settings=QUIET)
    client.command(f"CREATE TABLE {letters} (stage String, reason String, id String) ENGINE = Memory", settings=QUIET)
    try:
        client.command(f"INSERT INTO {pending} VALUES ({{t:String}}, {{r:String}}, '')",
                       parameters={"t": tenant, "r": recipient}, settings=QUIET)
        who = f"(tenant, recipient_id) IN (SELECT tenant, recipient FROM {pending})"
        naming = dict.fromkeys(BY_RECIPIENT, who)
        naming.update(dict.fromkeys(
            BY_MESSAGE, f"(tenant, message_id) IN (SELECT tenant, message FROM {pending} WHERE message != '')"))
        naming["dead_letters"] = f"(stage, reason, id) IN (SELECT stage, reason, id FROM {letters})"
        deleted = dict.fromkeys(naming, 0)
        for _ in range(3):  # again if rows arrived while deleting (a processor not yet told of the erasure)
            client.command(f"INSERT INTO {pending} SELECT DISTINCT tenant, recipient_id, message_id FROM ("
                           f"SELECT tenant, recipient_id, message_id FROM sends WHERE {who} UNION ALL "
                           f"SELECT tenant, recipient_id, message_id FROM events WHERE {who} UNION ALL "
                           f"SELECT tenant, recipient_id, message_id FROM message_totals WHERE {who}) "
                           "WHERE message_id != ''", settings=QUIET)
            client.command(f"TRUNCATE TABLE {letters}", settings=QUIET)
            found_letters = letters_naming(client, tenant, recipient, tenants)
            if found_letters:
                client.insert(letters, found_letters, column_names=["stage", "reason", "id"], settings=QUIET)
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
        client.command(f"DROP TABLE IF EXISTS {letters} SYNC", settings=QUIET)
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
