"""Reading and erasing what ClickHouse holds: query, report, forget, classify (through a running serve, or directly)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeltrack.commands.common import serve_folder, settings
from pixeltrack.errors import CommandError
from pixeltrack.serve_admin import QueryError, admin_post
from pixeltrack.serve_state import TRIGGER_FOLDERS, ServeInfo, chdb_dsn, serve_owning
from schemas.settings import Settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

Query = Callable[[str, dict[str, Any]], tuple[list[str], list[Sequence[Any]]]]


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt in ("csv", "tsv"):
        w = csv.writer(sys.stdout, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    else:
        from pixeltrack.analytics.tables import print_rows as print_table

        print_table(columns, rows)


def direct_dsn(args: argparse.Namespace, s: Settings) -> str:
    """--clickhouse, else the chDB folder of --data, else the settings' DSN. A chDB folder that is not
    there is refused rather than created (a reader has nothing to read in a new one)."""
    if args.clickhouse:
        dsn = str(args.clickhouse)
        if dsn.startswith("chdb://") and not Path(dsn[len("chdb://"):]).expanduser().is_dir():
            raise CommandError(f"--clickhouse {dsn}: {dsn[len('chdb://'):]} does not exist (a chDB folder is "
                               "made by `pixeltrack serve` or `pixeltrack migrate --clickhouse DSN`)")
        return dsn
    if args.data:
        folder = serve_folder(args.data)
        if not (folder / "chdb").is_dir():
            raise CommandError(f"--data {args.data}: not a serve data folder (no chdb/ in it); give the folder "
                               "`pixeltrack serve --data` uses")
        return chdb_dsn(folder)
    dsn = s.clickhouse_dsn
    if dsn.startswith("chdb://") and not Path(dsn[len("chdb://"):]).expanduser().is_dir():
        raise CommandError(f"no pixeltrack data here ({dsn[len('chdb://'):]} does not exist): run it in the folder "
                           "`pixeltrack serve` runs in, or give --data FOLDER or --clickhouse DSN")
    return dsn


def running_serve(args: argparse.Namespace, s: Settings) -> ServeInfo | None:
    """The ServeInfo of the running serve that owns what a reader asked for (--data, else the chDB folder
    of --clickhouse or the settings), or None. Its chDB is read through it, never opened beside it: that
    would take the folder from the serve's own writes (chDB is one process's at a time)."""
    if args.data:
        return ServeInfo.read(Path(args.data))
    return serve_owning(args.clickhouse or s.clickhouse_dsn)


def connect_migrated(dsn: str, s: Settings) -> Client:
    """A client of the settings' database at `dsn`; CommandError when that database is not there (a chDB
    folder or server `pixeltrack migrate` never set up), rather than the engine's UNKNOWN_DATABASE."""
    from processors.clickhouse import connect, public_dsn

    try:
        return connect(dsn, s.clickhouse_database)
    except Exception as exc:
        if "UNKNOWN_DATABASE" not in str(exc):
            raise
        raise CommandError(f"no pixeltrack database {s.clickhouse_database!r} at {public_dsn(dsn)}: create it "
                           "with `pixeltrack migrate` (same --clickhouse), or read the DSN `pixeltrack serve` "
                           "or `pixeltrack process` writes to") from None


def make_query(args: argparse.Namespace) -> Query:
    """Read-only SQL through a running `serve` that owns --data's chDB folder, else a direct client
    (a chDB folder no process holds, or a ClickHouse server DSN)."""
    s = settings()
    info = running_serve(args, s)
    if info is not None:
        def through_serve(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
            assert info is not None
            body = admin_post(info, "/query", {"sql": sql, "parameters": parameters}, timeout=120)
            return body["columns"], body["rows"]
        return through_serve

    from processors.clickhouse import readonly_sql

    dsn = direct_dsn(args, s)

    def direct(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        client = connect_migrated(dsn, s)
        try:
            result = client.query(readonly_sql(sql), parameters=parameters or None, settings={"readonly": 1})
        except Exception as exc:
            raise QueryError(str(exc).strip()) from None
        finally:
            client.close()
        return list(result.column_names), [list(r) for r in result.result_rows]
    return direct


def cmd_query(args: argparse.Namespace) -> int:
    params = {}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"pixeltrack query: --param {item!r} must be NAME=VALUE (used as {{NAME:Type}} in the SQL)",
                  file=sys.stderr)
            return 2
        params[name] = value
    try:
        columns, rows = make_query(args)(args.sql, params)
    except QueryError as exc:
        print(f"pixeltrack query: {exc}", file=sys.stderr)
        return 1
    print_rows(columns, rows, args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pixeltrack.analytics.report import fetch, fetch_sources, render

    try:
        query = make_query(args)
        rows = fetch(query, args.campaign, args.tenant or "")
        sources = fetch_sources(query, args.campaign, args.tenant or "") if rows else []
    except QueryError as exc:
        print(f"pixeltrack report: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"pixeltrack report: no campaign {args.campaign!r} (no sends and no hits yet)", file=sys.stderr)
        return 1
    print(render(rows, args.campaign, args.format, args.metric, sources=sources), end="")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase a recipient everywhere (through a running serve, or directly)."""
    s = settings()
    info = running_serve(args, s)
    if args.tenant is None:
        from schemas.tenants import TenantRegistry

        # '' is a tenant of its own: erasing there would record a proof and delete nothing of theirs. The
        # tenants that count are those of the installation that erases: a running serve's own (its state
        # file says; a serve that does not say is taken to have some), else these settings' tenants file.
        if info is not None:
            has_tenants = info.tenants is None or bool(info.tenants)
        else:
            has_tenants = bool(TenantRegistry.load(s.tenants_file).tenants)
        if has_tenants:
            print("pixeltrack forget: tenants are configured; give --tenant (--tenant '' for the default one)",
                  file=sys.stderr)
            return 2
    tenant = args.tenant or ""
    if info is not None:
        try:
            deleted = admin_post(info, "/forget", {"recipient": args.recipient, "tenant": tenant}, 600)["deleted"]
        except QueryError as exc:
            print(f"pixeltrack forget: {exc}", file=sys.stderr)
            return 1
    else:
        from processors.privacy import ClusterRefused

        try:
            deleted = _forget_directly(args, s, tenant)
        except ClusterRefused as exc:
            print(f"pixeltrack forget: {exc}", file=sys.stderr)
            return 1
    lines = deleted.pop("trigger_journal_lines", None)
    total = sum(deleted.values())
    print(f"erased {total} rows naming the recipient: " + ", ".join(f"{t}={n}" for t, n in deleted.items()))
    if lines is not None:
        print(f"removed {lines} lines naming the recipient from serve's trigger files")
    print("recorded in the erasures table under the recipient's hash")
    return 0


def _forget_directly(args: argparse.Namespace, s: Settings, tenant: str) -> dict[str, int]:
    """forget without a running serve: ClickHouse (processors.privacy.forget, with the tenants of these
    settings deciding which letters name the recipient), then the trigger files of the serve data folder
    the DSN is in (--data, or chdb://DATA/chdb), which no one writes while no serve runs there."""
    from pixeltrack.compose.build import keyring_for, privacy_key_for, tenants_for
    from processors.privacy import forget
    from processors.triggers.service import purge_journals

    dsn = direct_dsn(args, s)
    keyring = keyring_for(s, Path(args.data) if args.data else None)
    client = connect_migrated(dsn, s)
    try:
        deleted = forget(client, args.recipient, tenant, privacy_key_for(s, keyring),
                         tenants=tenants_for(s, keyring))
    finally:
        client.close()
    folder = Path(args.data) if args.data else _chdb_parent(dsn)
    if folder is not None:
        deleted["trigger_journal_lines"] = sum(purge_journals(folder / name, tenant, args.recipient)
                                               for name in TRIGGER_FOLDERS)
    return deleted


def _chdb_parent(dsn: str) -> Path | None:
    """DATA of a chdb://DATA/chdb DSN (a serve data folder's), else None."""
    if not dsn.startswith("chdb://"):
        return None
    path = Path(dsn[len("chdb://"):]).expanduser()
    return path.parent if path.name == "chdb" else None


def cmd_classify(args: argparse.Namespace) -> int:
    import orjson

    from processors.classify_file import build_classifier, classify_lines
    from processors.geodata import HOSTING_ASNS

    s = settings()
    classifier = build_classifier(
        geoip_city_db=s.geoip_city_db, geoip_asn_db=s.geoip_asn_db,
        geoip_default=s.geoip_default, hosting_asns=HOSTING_ASNS,
        networks_file=s.networks_file, internal_networks=s.internal_networks)
    src = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")  # noqa: SIM115
    try:
        out = sys.stdout.buffer
        for result in classify_lines(src, classifier):
            out.write(orjson.dumps(result) + b"\n")
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    return 0
