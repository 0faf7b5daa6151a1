"""The long-running commands: serve, edge, process, api, triggers, dashboard (each built in pixeltrack/compose/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixeltrack.commands.common import listening_on, run_on_kafka, settings
from pixeltrack.errors import CommandError
from schemas.runtime import run


def cmd_serve(args: argparse.Namespace) -> int:
    from pixeltrack.compose.serve import serve

    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise CommandError(f"--data {args.data} is a file, not a folder: give a folder (it is created when missing)")
    s = settings(data_dir=data)
    run(serve(s, data, args.host, args.port, args.api_port, args.dashboard_port))
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    """The public edge: one process, or --workers N processes on one port (SO_REUSEPORT, supervised)."""
    from ingest.workers import run_edge
    from pixeltrack.compose.serve import refuse_taken_port

    s = settings(edge_host=args.host, edge_port=args.port)
    # Before the workers create their spools: a port that is taken leaves nothing behind.
    refuse_taken_port(s.edge_host, s.edge_port, "--port PORT (or PIXELTRACK_EDGE_PORT)")
    return run_edge(s, args.workers)


def cmd_process(args: argparse.Namespace) -> int:
    from pixeltrack.compose.process import banner, prepare, run_until_signalled

    s = settings(clickhouse_dsn=args.clickhouse)
    print(banner(s), flush=True)
    prepare(s)
    run_on_kafka(run_until_signalled(s), s.kafka_bootstrap)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from pixeltrack.compose.serve import refuse_taken_port
    from pixeltrack.compose.services import api_banner, run_api

    s = settings(api_host=args.host, api_port=args.port)
    change = "--port PORT (or PIXELTRACK_API_PORT)"
    refuse_taken_port(s.api_host, s.api_port, change)  # before Kafka is asked: the port is the user's to change
    print(api_banner(s), flush=True)
    with listening_on(s.api_host, s.api_port, change):
        run_on_kafka(run_api(s, announce=lambda line: print(line, flush=True)), s.kafka_bootstrap)
    return 0


def cmd_triggers(args: argparse.Namespace) -> int:
    """Behaviour triggers: events.classified → rules → signed webhooks (production)."""
    from pixeltrack.compose.reach import refuse_unreachable_kafka
    from pixeltrack.compose.services import run_triggers, trigger_rules, triggers_banner
    from processors.triggers.rules import RuleError

    s = settings()
    path = Path(args.rules) if args.rules else s.triggers_rules
    if path is None:
        raise CommandError("give --rules FILE or set PIXELTRACK_TRIGGERS_RULES")
    try:
        rules = trigger_rules(s, path)
    except RuleError as exc:
        raise SystemExit(f"pixeltrack triggers: {exc}") from None
    print(triggers_banner(s, rules, path), flush=True)
    refuse_unreachable_kafka(s.kafka_bootstrap)  # one line, before its runners log their own
    run_on_kafka(run_triggers(s, rules), s.kafka_bootstrap)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pixeltrack.serve_state import ServeInfo

    if args.data and (info := ServeInfo.read(Path(args.data))) is not None:
        print(f"pixeltrack dashboard: a running serve owns {args.data}; its dashboard is {info.dashboard_url}/",
              file=sys.stderr)
        return 1
    from ingest.serving import ServerLimits
    from pixeltrack.commands.data import direct_dsn
    from pixeltrack.compose.dashboard import run_dashboard

    s = settings()
    dsn = direct_dsn(args, s)  # a --data or chDB folder that is not there is refused, not served empty
    with listening_on(args.host, args.port, "--port PORT"):
        run(run_dashboard(dsn, s.clickhouse_database, args.host, args.port, tenant=args.tenant,
                          refresh_seconds=args.refresh, limits=ServerLimits.from_settings(s)))
    return 0
