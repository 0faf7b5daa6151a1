"""The `pixeltrack` command: serve, edge, process, link, query, classify, migrate, keygen.

This module is the parser and main; the handlers are pixeltrack/commands/ (by area) and
pixeltrack/sender/instrument_cli.py, and the processes they start are put together in pixeltrack/compose/.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from schemas import native

native.activate_for(sys.argv)  # before the imports below load hot modules: serve, process, edge, classify choose here

from pixeltrack.commands import data, run, setup  # noqa: E402
from pixeltrack.commands.networks import add_networks_parser  # noqa: E402
from pixeltrack.errors import CommandError  # noqa: E402
from pixeltrack.sender.instrument_cli import add_instrument_parser, add_sends_parser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pixeltrack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="edge + processors + chDB in one process (embedded default)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080, help="edge port (0 = any free port)")
    s.add_argument("--api-port", type=int, default=8081, help="ingest API port (0 = any free port)")
    s.add_argument("--dashboard-port", type=int, default=8082, help="dashboard port on 127.0.0.1 (0 = any)")
    s.add_argument("--data", default=".pixeltrack", help="data folder: signing key, chDB, state")
    s.set_defaults(fn=run.cmd_serve)

    s = sub.add_parser("edge", help="the public edge, producing to Kafka (production)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (uvloop each)")
    s.set_defaults(fn=run.cmd_edge)

    s = sub.add_parser("process", help="a processor in the Kafka consumer group (production)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.set_defaults(fn=run.cmd_process)

    s = sub.add_parser("migrate", help="create or update the ClickHouse schema (idempotent)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.add_argument("--data", help="a serve data folder (its chDB) in place of a DSN")
    s.set_defaults(fn=setup.cmd_migrate)

    s = sub.add_parser("ddl", help="print the ClickHouse cluster DDL generated from the single-node schema")
    s.add_argument("--cluster", required=True, help="the ClickHouse cluster name (remote_servers)")
    s.add_argument("--out", help="write to this file instead of standard output")
    s.set_defaults(fn=setup.cmd_ddl)

    s = sub.add_parser("keygen", help="print a new signing key (kid:secret)")
    s.add_argument("--kid", default="k1")
    s.set_defaults(fn=setup.cmd_keygen)

    s = sub.add_parser("link", help="mint the pixel, click and download URLs of one message")
    s.add_argument("--data", help="serve data folder holding the signing key (else settings' keys)")
    s.add_argument("--base-url", required=True)
    s.add_argument("--campaign", required=True)
    s.add_argument("--message", required=True)
    s.add_argument("--recipient", required=True)
    s.add_argument("--variant")
    s.add_argument("--tenant")
    s.add_argument("--url", action="append", help="a destination to wrap (repeatable)")
    s.add_argument("--download", action="append", metavar="URL",
                   help="a document's address to make a download link of (repeatable)")
    s.add_argument("--preferences", action="store_true",
                   help="also the recipient's tracking preferences link (/p/: give or withdraw consent)")
    s.add_argument("--text-version", default="", help="with --preferences: the disclosure text's version")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=setup.cmd_link)

    s = sub.add_parser("query", help="run read-only SQL (through a running serve, or directly)")
    s.add_argument("sql")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.add_argument("--format", choices=["table", "json", "csv", "tsv"], default="table")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a query parameter, used in the SQL as {NAME:Type} (repeatable)")
    s.set_defaults(fn=data.cmd_query)

    s = sub.add_parser("settings", help="print every setting as a Markdown table")
    s.set_defaults(fn=setup.cmd_settings)

    s = sub.add_parser("report", help="a campaign's summary, variants side by side, A/B verdict")
    s.add_argument("--campaign", required=True)
    s.add_argument("--tenant", default="")
    s.add_argument("--metric", choices=["open", "click", "conversion", "download"], default="click",
                   help="what the A/B verdict is decided on")
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.set_defaults(fn=data.cmd_report)

    s = sub.add_parser("api", help="the authenticated ingest API: sends and conversions (production)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.set_defaults(fn=run.cmd_api)

    add_instrument_parser(sub)
    add_sends_parser(sub)

    s = sub.add_parser("dashboard", help="the live dashboard over a ClickHouse server (production)")
    s.add_argument("--clickhouse", help="DSN; default PIXELTRACK_CLICKHOUSE_DSN")
    s.add_argument("--data", help="a serve data folder (refused while that serve runs: use its dashboard)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8082)
    s.add_argument("--tenant", default="")
    s.add_argument("--refresh", type=int, default=5, help="seconds between live refreshes")
    s.set_defaults(fn=run.cmd_dashboard)

    s = sub.add_parser("triggers", help="behaviour triggers: rules on settled events → signed webhooks")
    s.add_argument("--rules", help="rules file (TOML); default PIXELTRACK_TRIGGERS_RULES")
    s.set_defaults(fn=run.cmd_triggers)

    s = sub.add_parser("forget", help="erase a recipient from every table (recorded in `erasures`)")
    s.add_argument("--recipient", required=True)
    s.add_argument("--tenant", help="the recipient's tenant (required when tenants are configured)")
    s.add_argument("--data", help="serve data folder")
    s.add_argument("--clickhouse", help="DSN of a ClickHouse server or chdb://PATH")
    s.set_defaults(fn=data.cmd_forget)

    s = sub.add_parser("dnt-hash", help="print recipient hashes for the do-not-track file")
    s.add_argument("recipient", nargs="+")
    s.add_argument("--tenant", default="")
    s.set_defaults(fn=setup.cmd_dnt_hash)

    s = sub.add_parser("tenants", help="manage tenants: domains and signing keys (a JSON file, 0600)")
    s.add_argument("action", choices=["list", "add", "add-domain", "rotate-key", "site-visit-org", "remove"])
    s.add_argument("--name")
    s.add_argument("--domain", action="append", help="a tracking domain (repeatable)")
    s.add_argument("--set", choices=["on", "off"], dest="setting",
                   help="site-visit-org: count site visits without a click id by visitor organisation (docs/site.md)")
    s.add_argument("--file", help="tenants file (default PIXELTRACK_TENANTS_FILE)")
    s.set_defaults(fn=setup.cmd_tenants)

    s = sub.add_parser("classify", help="classify hit v1 JSON lines (FILE or - for stdin)")
    s.add_argument("file", nargs="?")
    s.set_defaults(fn=data.cmd_classify)

    add_networks_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Runs a parsed command: its exit code; a mistake the user can fix (CommandError, a bad value) or no
    ClickHouse to talk to (processors.clickhouse.ClickHouseUnavailable) is one line and exit code 2."""
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except (CommandError, ValueError, ConnectionError) as exc:
        print(f"pixeltrack {getattr(args, 'command_name', args.command)}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
