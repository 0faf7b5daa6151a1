"""The `pixeltrack networks` command: build the shipped network lists from providers' feeds, show their age."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Kept here, not imported, so that `pixeltrack --help` loads no processor module.
DEFAULT_MANIFEST = "deploy/networks/feeds.toml"


def _shipped_path() -> Path:
    import processors

    return Path(processors.__file__).parent / "data" / "networks.json"


def add_networks_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `networks build` and `networks status` to the `pixeltrack` command; the handler is `args.fn`."""
    s = subparsers.add_parser("networks", help="network lists: build them from providers' feeds, show their age")
    sub = s.add_subparsers(dest="networks_command", required=True)
    b = sub.add_parser(
        "build", help="build the network lists (networks.json) from a manifest of providers' feeds",
        description="Reads every feed a manifest names (AWS, Google, Azure, Microsoft 365 and Oracle JSON, RFC 8805 "
                    "geofeeds, Apple's egress CSV, plain CIDR lists) and writes the network lists with each "
                    "entry's vendor, category, source, date and counts. The same files give the same bytes.")
    b.add_argument("manifest", nargs="?", default=DEFAULT_MANIFEST, help=f"build manifest (default {DEFAULT_MANIFEST})")
    b.add_argument("--out", help="file to write (default: the shipped processors/data/networks.json)")
    b.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the file differs from what the feeds build")
    b.set_defaults(fn=cmd_networks_build)
    st = sub.add_parser("status", help="the network lists' date, age, totals and sources")
    st.add_argument("--file", help="a network lists file (default: the shipped one)")
    st.add_argument("--max-age-days", type=int, help="age that counts as stale (default: networks_max_age_days)")
    st.add_argument("--sources", action="store_true", help="add each entry's source (the official feed) to the table")
    st.set_defaults(fn=cmd_networks_status)
    return s


def cmd_networks_build(args: argparse.Namespace) -> int:
    from processors.netfeeds import build_snapshot, snapshot_status

    out = Path(args.out) if args.out else _shipped_path()
    data = build_snapshot(args.manifest)
    if args.check:
        try:
            same = out.read_bytes() == data
        except OSError:
            same = False
        print(f"{out}: {'up to date with' if same else 'differs from'} {args.manifest}")
        return 0 if same else 1
    out.write_bytes(data)
    status = snapshot_status(out)
    print(f"wrote {out}: {status.ipv4:,} IPv4 + {status.ipv6:,} IPv6 networks in {len(status.sources)} entries, "
          f"data of {status.date}")
    return 0


def cmd_networks_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from processors.netfeeds import snapshot_status

    if args.max_age_days is not None:
        max_age = int(args.max_age_days)
    else:
        from schemas.settings import Settings

        max_age = Settings().networks_max_age_days
    status = snapshot_status(args.file)
    age = status.age_seconds(time.time())
    days = "unknown" if age == float("inf") else f"{int(age // 86400)}"
    stale = age > max_age * 86400
    console = Console(file=sys.stdout, highlight=False)
    shown = str(args.file or "shipped (processors/data/networks.json)")
    console.print(Text.assemble(("network lists ", "bold"), shown))
    console.print(f"date of data  {status.date or 'unknown'} ({days} days old; stale after {max_age})"
                  + (" [bold red]STALE: rebuild with `pixeltrack networks build`[/bold red]" if stale else ""))
    if status.built_from:
        console.print(f"built from    {status.built_from}")
    console.print(f"networks      {status.ipv4:,} IPv4 + {status.ipv6:,} IPv6 in {len(status.sources)} entries")
    table = Table(show_edge=False)
    table.add_column("vendor")
    table.add_column("product")
    table.add_column("category")
    table.add_column("date")
    table.add_column("IPv4", justify="right")
    table.add_column("IPv6", justify="right")
    if args.sources:
        table.add_column("source")
    for src in status.sources:
        cells = [src.vendor, src.product, src.category, src.date or "-", f"{src.ipv4:,}", f"{src.ipv6:,}"]
        # Text, not markup: a vendor's text may hold brackets.
        table.add_row(*(Text(v) for v in (*cells, src.source)[: len(table.columns)]))
    console.print(table)
    return 0
