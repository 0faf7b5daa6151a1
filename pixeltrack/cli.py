"""The `pixeltrack` command: serve, edge, process, link, query, classify, migrate, keygen."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import errno
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import native

native.activate_for(sys.argv)  # before the imports below load hot modules: serve, process, edge, classify choose here

from pixeltrack.errors import CommandError  # noqa: E402
from pixeltrack.instrument_cli import add_instrument_parser, add_sends_parser  # noqa: E402
from pixeltrack.networks_cli import add_networks_parser  # noqa: E402
from schemas.runtime import run, stop_on_signals  # noqa: E402
from schemas.settings import Settings  # noqa: E402


def _settings(**overrides: Any) -> Settings:
    try:
        base = Settings()
    except ValidationError as exc:
        raise SystemExit(f"pixeltrack: bad setting:\n{exc}") from None
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def _listening_on(host: str, port: int, what: str) -> Iterator[None]:
    """A server's bind that fails because the address is taken: one line naming it and what changes it."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise CommandError(f"port {port} on {host} is not free (Address already in use): stop what holds it, "
                           f"or give {what}") from None


def _run_on_kafka(coro: Coroutine[Any, Any, None], bootstrap: str) -> None:
    """run() for a command that needs Kafka at its start: a broker that does not answer is one line."""
    from aiokafka.errors import KafkaConnectionError

    try:
        run(coro)
    except KafkaConnectionError:
        raise CommandError(f"cannot reach Kafka at {bootstrap}: start it (`make kafka`, see docs/production.md) "
                           "or set PIXELTRACK_KAFKA_BOOTSTRAP") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from pixeltrack.serve import serve

    data = Path(args.data)
    settings = _settings(data_dir=data)
    run(serve(settings, data, args.host, args.port, args.api_port, args.dashboard_port))
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    """The public edge: one process, or --workers N processes on one port (SO_REUSEPORT, supervised)."""
    from ingest.workers import run_edge

    return run_edge(_settings(edge_host=args.host, edge_port=args.port), args.workers)


def _refuse_a_serves_chdb(dsn: str) -> None:
    """chDB is one process's at a time: a chdb:// folder a running `serve` holds is refused up front."""
    from pixeltrack.serve import ServeInfo

    if not dsn.startswith("chdb://"):
        return
    path = Path(dsn[len("chdb://"):]).expanduser()
    info = ServeInfo.read(path.parent) if path.name == "chdb" else None
    if info is not None:
        raise CommandError(f"{dsn} belongs to the running serve (pid {info.pid}, {info.dashboard_url}/): its own "
                           "processors write there; a separate processor needs a ClickHouse server (--clickhouse "
                           "http://HOST:8123, see docs/production.md)")


def cmd_process(args: argparse.Namespace) -> int:
    from pixeltrack.process import banner, run_processor
    from processors.clickhouse import connect, migrate

    settings = _settings(clickhouse_dsn=args.clickhouse)
    print(banner(settings), flush=True)
    settings.keyring()  # the missing-keys error first, before anything is opened or created
    _refuse_a_serves_chdb(settings.clickhouse_dsn)
    if settings.migrate_on_start:
        migrate(settings.clickhouse_dsn, settings.clickhouse_database, settings.retention_days,
                settings.dead_letter_retention_days)
    else:
        connect(settings.clickhouse_dsn, settings.clickhouse_database).close()  # unreachable: one line, now
    if settings.processor_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.processor_metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(asyncio.get_running_loop(), stop)
        await run_processor(settings, stop)

    _run_on_kafka(main(), settings.kafka_bootstrap)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from processors.clickhouse import migrate

    dsn = args.clickhouse or (f"chdb://{Path(args.data).resolve() / 'chdb'}" if args.data else None)
    settings = _settings(clickhouse_dsn=dsn)
    applied = migrate(settings.clickhouse_dsn, settings.clickhouse_database, settings.retention_days,
                      settings.dead_letter_retention_days)
    print("applied: " + (", ".join(applied) if applied else "nothing new"))
    return 0


def cmd_ddl(args: argparse.Namespace) -> int:
    """The ClickHouse cluster DDL (Replicated + Distributed), generated from the single-node schema."""
    from processors.clickhouse import migration_files
    from schemas.clickhouse_cluster import cluster_ddl

    settings = _settings()
    sql = cluster_ddl(args.cluster, migration_files(), settings.clickhouse_database,
                      retention_days=settings.retention_days,
                      dead_letter_retention_days=settings.dead_letter_retention_days)
    if args.out:
        Path(args.out).write_text(sql, encoding="utf-8")
    else:
        sys.stdout.write(sql)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from schemas.tokens import new_secret

    print(f"{args.kid}:{new_secret()}")
    return 0


def _serve_folder(data: str) -> Path:
    """--data as given, when it is a folder (commands that read it never create it)."""
    path = Path(data)
    if not path.is_dir():
        raise CommandError(f"--data {data}: no such folder; give the folder `pixeltrack serve --data` uses")
    return path


def cmd_link(args: argparse.Namespace) -> int:
    from pixeltrack.sdk import Message, Tracker
    from pixeltrack.wiring import minting_keyring

    settings = _settings()
    keyring = minting_keyring(settings, _serve_folder(args.data) if args.data else None, args.tenant or "",
                              create=False)
    tracker = Tracker(args.base_url, keyring, settings.token_ttl_days)
    m = Message(campaign=args.campaign, message=args.message, recipient=args.recipient,
                variant=args.variant or "", tenant=args.tenant or "")
    pixel = tracker.pixel_url(m)
    clicks = [tracker.click_url(m, url) for url in args.url or []]
    if args.json:
        print(json.dumps({"pixel": pixel, "clicks": clicks}))
    else:
        print(pixel)
        for c in clicks:
            print(c)
    return 0


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt in ("csv", "tsv"):
        w = csv.writer(sys.stdout, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    else:
        from pixeltrack.tables import print_rows

        print_rows(columns, rows)


class QueryError(RuntimeError):
    """ClickHouse's own message for a query that failed."""


def _admin_post(info: Any, path: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST to a running serve's admin endpoint (it owns the chDB folder); QueryError carries its message."""
    from pixeltrack.serve import ADMIN_HEADER

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


def _direct_dsn(args: argparse.Namespace, settings: Settings) -> str:
    """--clickhouse, else the chDB folder of --data, else the settings' DSN. A chDB folder that is not
    there is refused rather than created (a reader has nothing to read in a new one)."""
    from pixeltrack.serve import chdb_dsn

    if args.clickhouse:
        return str(args.clickhouse)
    if args.data:
        folder = _serve_folder(args.data)
        if not (folder / "chdb").is_dir():
            raise CommandError(f"--data {args.data}: not a serve data folder (no chdb/ in it); give the folder "
                               "`pixeltrack serve --data` uses")
        return chdb_dsn(folder)
    dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://") and not Path(dsn[len("chdb://"):]).expanduser().is_dir():
        raise CommandError(f"no pixeltrack data here ({dsn[len('chdb://'):]} does not exist): run it in the folder "
                           "`pixeltrack serve` runs in, or give --data FOLDER or --clickhouse DSN")
    return dsn


def _running_serve(args: argparse.Namespace, settings: Settings) -> Any:
    """The ServeInfo of the running serve that owns what a reader asked for (--data, else the settings'
    chDB folder when no --clickhouse is given), or None."""
    from pixeltrack.serve import ServeInfo

    if args.data:
        return ServeInfo.read(Path(args.data))
    dsn = settings.clickhouse_dsn
    if args.clickhouse or not dsn.startswith("chdb://"):
        return None
    path = Path(dsn[len("chdb://"):]).expanduser()
    return ServeInfo.read(path.parent) if path.name == "chdb" else None


def make_query(args: argparse.Namespace) -> Callable[[str, dict[str, Any]], tuple[list[str], list[Sequence[Any]]]]:
    """Read-only SQL through a running `serve` that owns --data's chDB folder, else a direct client
    (a chDB folder no process holds, or a ClickHouse server DSN)."""
    settings = _settings()
    info = _running_serve(args, settings)
    if info is not None:
        def through_serve(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
            assert info is not None
            body = _admin_post(info, "/query", {"sql": sql, "parameters": parameters}, timeout=120)
            return body["columns"], body["rows"]
        return through_serve

    from processors.clickhouse import connect, readonly_sql

    dsn = _direct_dsn(args, settings)

    def direct(sql: str, parameters: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        client = connect(dsn, settings.clickhouse_database)
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
    _print_rows(columns, rows, args.format)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pixeltrack.report import fetch, fetch_sources, render

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


def cmd_api(args: argparse.Namespace) -> int:
    from ingest.api import create_api_from_settings
    from ingest.app import edge_tenants
    from ingest.serving import ServerLimits, serve_until_stopped
    from schemas.topics import Topics

    settings = _settings(api_host=args.host, api_port=args.port)
    topics = Topics(settings.topic_prefix)
    print(f"pixeltrack api: Kafka {settings.kafka_bootstrap}, topics {topics.sends}, {topics.conversions} "
          f"(prefix {settings.topic_prefix!r})", flush=True)
    # The default keys check the operator's click ids; a tenants file alone is enough for tenants' ones.
    app = create_api_from_settings(settings, edge_tenants(settings))
    with _listening_on(settings.api_host, settings.api_port, "--port PORT (PIXELTRACK_API_PORT)"):
        _run_on_kafka(serve_until_stopped(app, settings.api_host, settings.api_port,
                                          limits=ServerLimits.from_settings(settings), server="api",
                                          announce=lambda s: print(s, flush=True)), settings.kafka_bootstrap)
    return 0


def cmd_triggers(args: argparse.Namespace) -> int:
    """Behaviour triggers: events.classified → rules → signed webhooks (production)."""
    from processors.triggers.rules import RuleError, load_rules
    from processors.triggers.runner import TriggerRunner
    from schemas.topics import Topics

    s = _settings()
    path = Path(args.rules) if args.rules else s.triggers_rules
    if path is None:
        print("pixeltrack triggers: give --rules FILE or set PIXELTRACK_TRIGGERS_RULES", file=sys.stderr)
        return 2
    secret = s.triggers_webhook_secret.get_secret_value() if s.triggers_webhook_secret else None
    try:
        rules = load_rules(path, secret)
    except RuleError as exc:
        raise SystemExit(f"pixeltrack triggers: {exc}") from None
    print(f"pixeltrack triggers: Kafka {s.kafka_bootstrap} (group {s.triggers_consumer_group}), topic "
          f"{Topics(s.topic_prefix).events_classified} (prefix {s.topic_prefix!r}), {len(rules.rules)} rules from "
          f"{path}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(asyncio.get_running_loop(), stop)
        runner = TriggerRunner(s.kafka_bootstrap, s.triggers_consumer_group, Topics(s.topic_prefix), rules,
                               settle_seconds=s.triggers_settle_seconds, max_attempts=s.triggers_max_attempts)
        await runner.run(stop)

    _run_on_kafka(main(), s.kafka_bootstrap)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pixeltrack.dashboard.run import run_dashboard
    from pixeltrack.serve import ServeInfo

    if args.data and (info := ServeInfo.read(Path(args.data))) is not None:
        print(f"pixeltrack dashboard: a running serve owns {args.data}; its dashboard is {info.dashboard_url}/",
              file=sys.stderr)
        return 1
    from ingest.serving import ServerLimits

    s = _settings(clickhouse_dsn=args.clickhouse)
    with _listening_on(args.host, args.port, "--port PORT"):
        run(run_dashboard(s.clickhouse_dsn, s.clickhouse_database, args.host, args.port, tenant=args.tenant,
                           refresh_seconds=args.refresh, limits=ServerLimits.from_settings(s)))
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase a recipient everywhere (through a running serve, or directly)."""
    from pixeltrack.serve import ServeInfo

    settings = _settings()
    info = ServeInfo.read(Path(args.data)) if args.data else None
    if args.tenant is None:
        from schemas.tenants import TenantRegistry

        # '' is a tenant of its own: erasing there would record a proof and delete nothing of theirs. The
        # tenants that count are those of the installation that erases: a running serve's own (its state
        # file says; a serve that does not say is taken to have some), else these settings' tenants file.
        if info is not None:
            has_tenants = info.tenants is None or bool(info.tenants)
        else:
            has_tenants = bool(TenantRegistry.load(settings.tenants_file).tenants)
        if has_tenants:
            print("pixeltrack forget: tenants are configured; give --tenant (--tenant '' for the default one)",
                  file=sys.stderr)
            return 2
    tenant = args.tenant or ""
    if info is not None:
        try:
            deleted = _admin_post(info, "/forget", {"recipient": args.recipient, "tenant": tenant}, 600)["deleted"]
        except QueryError as exc:
            print(f"pixeltrack forget: {exc}", file=sys.stderr)
            return 1
    else:
        from processors.clickhouse import connect
        from processors.privacy import forget

        client = connect(_direct_dsn(args, settings), settings.clickhouse_database)
        try:
            deleted = forget(client, args.recipient, tenant, _privacy_key(args, settings))
        finally:
            client.close()
    total = sum(deleted.values())
    print(f"erased {total} rows naming the recipient: " + ", ".join(f"{t}={n}" for t, n in deleted.items()))
    print("recorded in the erasures table under the recipient's hash")
    return 0


def _privacy_key(args: argparse.Namespace, settings: Settings) -> bytes:
    """The installation's key of recipient hashes: from the settings, else the data folder's keys."""
    from pixeltrack.wiring import keyring_for, privacy_key_for

    return privacy_key_for(settings, keyring_for(settings, Path(args.data) if args.data else None))


def cmd_dnt_hash(args: argparse.Namespace) -> int:
    from schemas.privacy import recipient_hash

    for r in args.recipient:
        print(recipient_hash(args.tenant, r))
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    from schemas.tenants import Tenant, TenantRegistry, validate
    from schemas.tokens import new_secret

    settings = _settings()
    path = Path(args.file) if args.file else settings.tenants_file
    if path is None:
        print("pixeltrack tenants: give --file or set PIXELTRACK_TENANTS_FILE", file=sys.stderr)
        return 2
    reg = TenantRegistry.load(path)
    if args.action == "list":
        for t in sorted(reg.tenants.values(), key=lambda t: t.name):
            kids = [k.split(":", 1)[0] for k in t.keys.split(",")]
            print(f"{t.name}\tdomains={','.join(t.domains)}\tkeys={','.join(kids)}\tcurrent={t.current_key or kids[0]}")
        return 0
    if not args.name:
        print("pixeltrack tenants: --name is required", file=sys.stderr)
        return 2
    old = reg.tenants.get(args.name)
    if args.action == "add":
        if old is not None:
            print(f"pixeltrack tenants: {args.name!r} exists", file=sys.stderr)
            return 2
        new = Tenant(args.name, tuple(args.domain or ()), f"k1:{new_secret()}", "k1", (new_secret(),))
    elif old is None:
        print(f"pixeltrack tenants: no tenant {args.name!r}", file=sys.stderr)
        return 2
    elif args.action == "add-domain":
        new = Tenant(old.name, old.domains + tuple(args.domain or ()), old.keys, old.current_key, old.api_keys)
    elif args.action == "rotate-key":
        kids = [k.split(":", 1)[0] for k in old.keys.split(",")]
        kid = f"k{max(int(k[1:]) for k in kids if k[1:].isdigit()) + 1}"
        new = Tenant(old.name, old.domains, f"{old.keys},{kid}:{new_secret()}", kid, old.api_keys)
    else:  # remove
        del reg.tenants[args.name]
        reg.save(path)
        print(f"removed {args.name}")
        return 0
    validate(new, f"tenant {new.name!r}")
    reg.tenants[new.name] = new
    TenantRegistry(reg.tenants)  # checks that no domain belongs to two tenants
    reg.save(path)
    print(f"{args.action}: {new.name} domains={','.join(new.domains)} current key={new.current_key}"
          + (f" api key={new.api_keys[0]}" if args.action == "add" else ""))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    import orjson

    from processors.classify_file import build_classifier, classify_lines
    from processors.geodata import HOSTING_ASNS

    settings = _settings()
    classifier = build_classifier(
        geoip_city_db=settings.geoip_city_db, geoip_asn_db=settings.geoip_asn_db,
        geoip_default=settings.geoip_default, hosting_asns=HOSTING_ASNS,
        networks_file=settings.networks_file, internal_networks=settings.internal_networks)
    src = sys.stdin.buffer if args.file in (None, "-") else open(args.file, "rb")  # noqa: SIM115
    try:
        out = sys.stdout.buffer
        for result in classify_lines(src, classifier):
            out.write(orjson.dumps(result) + b"\n")
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    return 0


def settings_table() -> str:
    """Markdown table of every setting: its variable, default and meaning (README's table)."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            shown = "host name" if name == "edge_id" else "(empty)"
        else:
            shown = "(none)" if field.default is None else f"`{field.default}`"
        lines.append(f"| {name} | `PIXELTRACK_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(lines)


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pixeltrack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="edge + processors + chDB in one process (embedded default)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080, help="edge port (0 = any free port)")
    s.add_argument("--api-port", type=int, default=8081, help="ingest API port (0 = any free port)")
    s.add_argument("--dashboard-port", type=int, default=8082, help="dashboard port on 127.0.0.1 (0 = any)")
    s.add_argument("--data", default=".pixeltrack", help="data folder: signing key, chDB, state")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("edge", help="the public edge, producing to Kafka (production)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (uvloop each)")
    s.set_defaults(fn=cmd_edge)

    s = sub.add_parser("process", help="a processor in the Kafka consumer group (production)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.set_defaults(fn=cmd_process)

    s = sub.add_parser("migrate", help="create or update the ClickHouse schema (idempotent)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.add_argument("--data", help="a serve data folder (its chDB) in place of a DSN")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("ddl", help="print the ClickHouse cluster DDL generated from the single-node schema")
    s.add_argument("--cluster", required=True, help="the ClickHouse cluster name (remote_servers)")
    s.add_argument("--out", help="write to this file instead of standard output")
    s.set_defaults(fn=cmd_ddl)

    s = sub.add_parser("keygen", help="print a new signing key (kid:secret)")
    s.add_argument("--kid", default="k1")
    s.set_defaults(fn=cmd_keygen)

    s = sub.add_parser("link", help="mint the pixel and click URLs of one message")
    s.add_argument("--data", help="serve data folder holding the signing key (else settings' keys)")
    s.add_argument("--base-url", required=True)
    s.add_argument("--campaign", required=True)
    s.add_argument("--message", required=True)
    s.add_argument("--recipient", required=True)
    s.add_argument("--variant")
    s.add_argument("--tenant")
    s.add_argument("--url", action="append", help="a destination to wrap (repeatable)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_link)

    s = sub.add_parser("query", help="run read-only SQL (through a running serve, or directly)")
    s.add_argument("sql")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.add_argument("--format", choices=["table", "json", "csv", "tsv"], default="table")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a query parameter, used in the SQL as {NAME:Type} (repeatable)")
    s.set_defaults(fn=cmd_query)

    s = sub.add_parser("settings", help="print every setting as a Markdown table")
    s.set_defaults(fn=cmd_settings)

    s = sub.add_parser("report", help="a campaign's summary, variants side by side, A/B verdict")
    s.add_argument("--campaign", required=True)
    s.add_argument("--tenant", default="")
    s.add_argument("--metric", choices=["open", "click", "conversion"], default="click",
                   help="what the A/B verdict is decided on")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("api", help="the authenticated ingest API: sends and conversions (production)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.set_defaults(fn=cmd_api)

    add_instrument_parser(sub)
    add_sends_parser(sub)

    s = sub.add_parser("dashboard", help="the live dashboard over a ClickHouse server (production)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.add_argument("--data", help="a serve data folder (refused while that serve runs: use its dashboard)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8082)
    s.add_argument("--tenant", default="")
    s.add_argument("--refresh", type=int, default=5, help="seconds between live refreshes")
    s.set_defaults(fn=cmd_dashboard)

    s = sub.add_parser("triggers", help="behaviour triggers: rules on settled events → signed webhooks")
    s.add_argument("--rules", help="rules file (TOML); default PIXELTRACK_TRIGGERS_RULES")
    s.set_defaults(fn=cmd_triggers)

    s = sub.add_parser("forget", help="erase a recipient from every table (recorded in `erasures`)")
    s.add_argument("--recipient", required=True)
    s.add_argument("--tenant", help="the recipient's tenant (required when tenants are configured)")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.set_defaults(fn=cmd_forget)

    s = sub.add_parser("dnt-hash", help="print recipient hashes for the do-not-track file")
    s.add_argument("recipient", nargs="+")
    s.add_argument("--tenant", default="")
    s.set_defaults(fn=cmd_dnt_hash)

    s = sub.add_parser("tenants", help="manage tenants: domains and signing keys (a JSON file, 0600)")
    s.add_argument("action", choices=["list", "add", "add-domain", "rotate-key", "remove"])
    s.add_argument("--name")
    s.add_argument("--domain", action="append", help="a tracking domain (repeatable)")
    s.add_argument("--file", help="tenants file (default PIXELTRACK_TENANTS_FILE)")
    s.set_defaults(fn=cmd_tenants)

    s = sub.add_parser("classify", help="classify hit v1 JSON lines (FILE or - for stdin)")
    s.add_argument("file", nargs="?")
    s.set_defaults(fn=cmd_classify)

    add_networks_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except (CommandError, ValueError, ConnectionError) as exc:
        # A mistake the user can fix (CommandError, a bad value) or no ClickHouse to talk to
        # (processors.clickhouse.ClickHouseUnavailable): one line, what and what to do.
        print(f"pixeltrack {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
