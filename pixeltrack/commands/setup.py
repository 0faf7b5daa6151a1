"""Keys, tenants, schema and settings: keygen, link, tenants, dnt-hash, migrate, ddl, settings."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pixeltrack.commands.common import serve_folder, settings
from pixeltrack.errors import CommandError
from schemas.settings import KAFKA_DEFAULT, Settings


def cmd_keygen(args: argparse.Namespace) -> int:
    from schemas.tokens import new_secret

    print(f"{args.kid}:{new_secret()}")
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from pixeltrack.compose.build import minting_keyring
    from pixeltrack.sender.sdk import Message, Tracker

    s = settings()
    keyring = minting_keyring(s, serve_folder(args.data) if args.data else None, args.tenant or "", create=False)
    tracker = Tracker(args.base_url, keyring, s.token_ttl_days)
    m = Message(campaign=args.campaign, message=args.message, recipient=args.recipient,
                variant=args.variant or "", tenant=args.tenant or "")
    pixel = tracker.pixel_url(m)
    clicks = [tracker.click_url(m, url) for url in args.url or []]
    try:
        downloads = [tracker.download_url(m, url) for url in args.download or []]
    except ValueError as exc:
        raise CommandError(f"--download: {exc}") from None
    preferences = tracker.preferences_url(m, args.text_version) if args.preferences else None
    if args.json:
        print(json.dumps({"pixel": pixel, "clicks": clicks, "downloads": downloads}
                         | ({"preferences": preferences} if preferences else {})))
    else:
        print(pixel)
        for c in clicks + downloads:
            print(c)
        if preferences:
            print(preferences)
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    from schemas.tenants import TenantRegistry, key_ids, new_tenant, validate, with_domains, with_next_key

    s = settings()
    path = Path(args.file) if args.file else s.tenants_file
    if path is None:
        raise CommandError("give --file or set PIXELTRACK_TENANTS_FILE")
    reg = TenantRegistry.load(path)
    if args.action == "list":
        for t in sorted(reg.tenants.values(), key=lambda t: t.name):
            kids = key_ids(t)
            print(f"{t.name}\tdomains={','.join(t.domains)}\tkeys={','.join(kids)}\tcurrent={t.current_key or kids[0]}"
                  + ("\tsite_visit_org=on" if t.site_visit_org else ""))
        return 0
    if not args.name:
        raise CommandError("--name is required")
    old = reg.tenants.get(args.name)
    if args.action == "add":
        if old is not None:
            raise CommandError(f"{args.name!r} exists")
        new = new_tenant(args.name, args.domain or ())
    elif old is None:
        raise CommandError(f"no tenant {args.name!r}")
    elif args.action == "add-domain":
        new = with_domains(old, args.domain or ())
    elif args.action == "rotate-key":
        new = with_next_key(old)
    elif args.action == "site-visit-org":
        if args.setting is None:
            raise CommandError("site-visit-org needs --set on or --set off")
        new = dataclasses.replace(old, site_visit_org=args.setting == "on")
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
          + (f" site_visit_org={args.setting}" if args.action == "site-visit-org" else "")
          + (f" api key={new.api_keys[0]}" if args.action == "add" else ""))
    return 0


def cmd_dnt_hash(args: argparse.Namespace) -> int:
    from schemas.privacy import recipient_hash

    for r in args.recipient:
        print(recipient_hash(args.tenant, r))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from processors.clickhouse import migrate

    # --data must be there (a fresh one migrates: its chdb/ is made); a mistyped folder is not created.
    dsn = args.clickhouse or (f"chdb://{serve_folder(args.data).resolve() / 'chdb'}" if args.data else None)
    s = settings(clickhouse_dsn=dsn)
    applied = migrate(s.clickhouse_dsn, s.clickhouse_database, s.retention_days, s.dead_letter_retention_days)
    print("applied: " + (", ".join(applied) if applied else "nothing new"))
    return 0


def cmd_ddl(args: argparse.Namespace) -> int:
    """The ClickHouse cluster DDL (Replicated + Distributed), generated from the single-node schema."""
    from processors.clickhouse import migration_files
    from schemas.clickhouse_cluster import cluster_ddl

    s = settings()
    sql = cluster_ddl(args.cluster, migration_files(), s.clickhouse_database,
                      retention_days=s.retention_days,
                      dead_letter_retention_days=s.dead_letter_retention_days)
    if args.out:
        Path(args.out).write_text(sql, encoding="utf-8")
    else:
        sys.stdout.write(sql)
    return 0


def settings_table() -> str:
    """Markdown table of every setting: its variable, default and meaning (README's table)."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if name == "kafka_bootstrap":  # else what `make kafka` wrote to .kafka/bootstrap (docs/production.md)
            shown = f"`{KAFKA_DEFAULT}`"
        elif field.default_factory is not None:
            shown = "host name" if name == "edge_id" else "(empty)"
        else:
            shown = "(none)" if field.default is None else f"`{field.default}`"
        lines.append(f"| {name} | `PIXELTRACK_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(lines)


def cmd_settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0
