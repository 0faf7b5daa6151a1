"""The `pixeltrack instrument` command: one HTML email in, one tracked email per recipient out."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from pixeltrack.errors import CommandError
from pixeltrack.sender.campaign import JsonlSends, decode_record, file_names, instrument_campaign, read_recipients
from pixeltrack.sender.instrument import EmailPlan
from pixeltrack.sender.recipient_ids import MESSAGE_WARNING, WARNING, Pseudonyms, email_like, holds_email, redacted
from pixeltrack.sender.sdk import Record


def add_instrument_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `instrument` to the `pixeltrack` command's subparsers; its handler is `args.fn`."""
    s = subparsers.add_parser(
        "instrument", help="add the signed pixel and wrapped links to an HTML email, per recipient",
        description="Writes OUT/<recipient>.html per recipient and OUT/manifest.jsonl (with each email's one-click "
                    "List-Unsubscribe headers), and registers one send per recipient (--api, --sends-out, else "
                    "OUT/sends.jsonl).")
    s.add_argument("email", metavar="EMAIL.html", help="the email's HTML")
    s.add_argument("--campaign", required=True)
    s.add_argument("--variant", default="", help="default variant (a recipients 'variant' column wins)")
    s.add_argument("--tenant", default="")
    s.add_argument("--recipients", required=True, metavar="LIST.csv",
                   help="CSV with columns recipient (required), email, message, variant, consent (granted, denied, "
                        "unknown: denied gets campaign-level tracking), consent_version")
    s.add_argument("--out", required=True, metavar="DIR", help="folder of the instrumented emails")
    s.add_argument("--base-url", required=True, help="tracking base URL, e.g. https://t.example.com")
    s.add_argument("--data", help="serve data folder holding the signing key (else settings' keys)")
    s.add_argument("--honeypot", action="store_true", help="add an invisible honeypot link for scanners")
    s.add_argument("--honeypot-url", help="where the honeypot redirects (default: the first link's site)")
    s.add_argument("--track-images", action="store_true",
                   help="route the email's own images through the edge (/i/): loading them counts as the open, "
                        "where a 1x1 pixel alone is blocked")
    s.add_argument("--encoding", help="the email's encoding (default: BOM, UTF-8, else <meta charset>)")
    s.add_argument("--keep-relative", action="store_true",
                   help="leave relative links alone even when the email has a <base href>")
    sink = s.add_mutually_exclusive_group()
    sink.add_argument("--api", metavar="URL", help="register the sends with this ingest API (POST /v1/sends)")
    sink.add_argument("--sends-out", metavar="FILE.jsonl", help="write the sends here (default OUT/sends.jsonl)")
    key = s.add_mutually_exclusive_group()
    key.add_argument("--api-key", metavar="KEY", help="bearer key for --api")
    key.add_argument("--api-key-file", metavar="FILE", help="file holding the bearer key for --api")
    s.add_argument("--hash-recipients", action="store_true",
                   help="use a keyed pseudonym of each recipient id in URLs, files and rows (the manifest maps "
                        "them back); advised when ids are email addresses")
    s.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is no terminal")
    s.set_defaults(fn=cmd_instrument)
    return s


def add_sends_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Adds `sends post` (register what `instrument` wrote to a file) to the `pixeltrack` command."""
    s = subparsers.add_parser("sends", help="register sends written to a file (by instrument) with the ingest API")
    sub = s.add_subparsers(dest="sends_command", required=True)
    post = sub.add_parser("post", help="POST FILE.jsonl's sends to the ingest API (safe to repeat: idempotent)")
    post.add_argument("file", metavar="FILE.jsonl", help="sends, one JSON object a line (instrument's sends.jsonl)")
    post.add_argument("--api", required=True, metavar="URL", help="the ingest API, e.g. http://127.0.0.1:8081")
    key = post.add_mutually_exclusive_group(required=True)
    key.add_argument("--api-key", metavar="KEY", help="bearer key")
    key.add_argument("--api-key-file", metavar="FILE", help="file holding the bearer key")
    post.add_argument("--batch", type=int, default=5000, help="sends per request (default 5000)")
    post.set_defaults(fn=cmd_sends_post, command_name="sends post")
    return s


def cmd_sends_post(args: argparse.Namespace) -> int:
    """Reads FILE.jsonl, checks every line as the API would, then posts them in batches."""
    from pixeltrack.sender.sdk import ApiClient, ApiError

    path = Path(args.file)
    sends: list[Record] = []
    try:
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        sends.append(decode_record(line))
                    except ValueError as exc:
                        raise CommandError(f"{path}, line {n}: {exc}") from None
        api_key = args.api_key or Path(args.api_key_file).read_text().strip()
    except OSError as exc:
        raise CommandError(str(exc)) from None
    if not sends:
        raise CommandError(f"{path} holds no sends")
    try:
        accepted = ApiClient(args.api, api_key).register_sends(sends, batch=max(1, args.batch))
    except ApiError as exc:
        print(f"pixeltrack sends post: the API refused the sends: {exc}", file=sys.stderr)
        return 1
    print(f"{accepted} of {len(sends)} sends registered with {args.api}", file=sys.stderr)
    return 0 if accepted == len(sends) else 1


def cmd_instrument(args: argparse.Namespace) -> int:
    try:
        return _instrument(args)
    except OSError as exc:
        print(f"pixeltrack instrument: {exc}", file=sys.stderr)
        return 2


def _instrument(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pixeltrack.commands.common import serve_folder
    from pixeltrack.compose.build import minting_keyring
    from pixeltrack.sender.sdk import ApiClient, ApiError, Tracker
    from schemas.settings import Settings

    if args.api and not (args.api_key or args.api_key_file):
        raise ValueError("--api needs --api-key KEY or --api-key-file FILE")
    if (args.api_key or args.api_key_file) and not args.api:
        raise ValueError("--api-key is used with --api URL")
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"pixeltrack: bad setting:\n{exc}") from None

    email_path = Path(args.email)
    out_dir = Path(args.out)
    plan = EmailPlan.parse(email_path.read_bytes(), encoding=args.encoding, resolve_base=not args.keep_relative,
                           tracker_base=args.base_url)
    recipients = read_recipients(Path(args.recipients))
    # As `link`: --data is a folder serve made, with its key; a key made up here would verify at no edge.
    keyring = minting_keyring(settings, serve_folder(args.data) if args.data else None, args.tenant, create=False)
    if args.hash_recipients:
        pseudonyms = Pseudonyms(keyring)
        recipients = [replace(r, recipient=pseudonyms.of(r.recipient), source_id=r.recipient) for r in recipients]
    else:
        count, total, example = email_like(r.recipient for r in recipients)
        if count:  # (the message ids made from these ids hold them too: this says it for both)
            print("pixeltrack instrument: warning: " + WARNING.format(count=count, total=total, example=example),
                  file=sys.stderr)
    # The list's own message ids: --hash-recipients leaves them as they are.
    given = next((r.message for r in recipients if r.message and holds_email(r.message)), None)
    if given is not None:
        print("pixeltrack instrument: warning: " + MESSAGE_WARNING.format(example=redacted(given)), file=sys.stderr)
    targets = {(out_dir / name).resolve() for name in file_names(recipients)}
    if email_path.resolve() in targets:
        raise ValueError(f"{email_path} would be overwritten by a recipient's email; choose another --out")
    from schemas.tenants import TenantRegistry

    unknown = TenantRegistry.load(settings.tenants_file).unknown_means(args.tenant, settings.unknown_consent)
    tracker = Tracker(args.base_url, keyring, settings.token_ttl_days, unknown_consent=unknown,
                      tracking=settings.tracking, warn_addresses=False)  # said above, once
    _describe(plan, args.track_images)

    jsonl: JsonlSends | None = None
    register: Callable[[list[Record]], object]
    if args.api:
        api_key = args.api_key or Path(args.api_key_file).read_text().strip()
        register = ApiClient(args.api, api_key).register_sends
        where = args.api
    else:
        jsonl = JsonlSends(Path(args.sends_out) if args.sends_out else out_dir / "sends.jsonl")
        register, where = jsonl, str(jsonl.path)
    try:
        with _progress_bar(len(recipients), args.progress or sys.stderr.isatty()) as progress:
            result = instrument_campaign(plan, tracker, recipients, out_dir, campaign=args.campaign,
                                         variant=args.variant, tenant=args.tenant, honeypot=args.honeypot,
                                         honeypot_url=args.honeypot_url, register=register, progress=progress,
                                         track_images=args.track_images)
    except ApiError as exc:
        print(f"pixeltrack instrument: the API refused the sends: {exc}", file=sys.stderr)
        return 1
    finally:
        if jsonl is not None:
            jsonl.close()
    if args.api:
        done = f"{result.registered} sends registered with {where}"
    else:
        done = (f"{result.emails} sends written to {where}, not registered: post them with "
                f"`pixeltrack sends post {where} --api URL --api-key KEY`, or pass --api next time")
    print(f"wrote {result.emails} emails to {out_dir} ({result.manifest.name}: each one's file and its one-click "
          f"List-Unsubscribe headers to send it with); {done}", file=sys.stderr)
    if result.aggregate or result.consents:
        print(f"{result.aggregate} of them tracked in aggregate (campaign-level URLs, counted without an id); "
              f"{result.consents} consent records from the recipients file", file=sys.stderr)
    return 0


def _describe(plan: EmailPlan, track_images: bool = False) -> None:
    """What will be tracked and what is left alone (links with merge tags deserve a look)."""
    left = Counter(s.reason for s in plan.skipped)
    alone = ", ".join(f"{n} {reason}" for reason, n in sorted(left.items())) or "none"
    images = f"; {len(plan.images)} images tracked" if track_images else ""
    downloads = f", {plan.download_links} downloads" if plan.download_links else ""
    print(f"{len(plan.links)} links wrapped ({plan.unsubscribe_links} unsubscribe{downloads}), left alone: "
          f"{alone}{images}"
          + (f"; relative links resolved against <base href={plan.base_href}>" if plan.base_href else ""),
          file=sys.stderr)
    for s in plan.skipped:
        if s.reason in ("placeholder", "too_long", "invalid") and s.href.lower().startswith(("http:", "https:")):
            print(f"  line {s.line}, column {s.column}: <{s.tag}> {s.href[:80]!r} not wrapped ({s.reason})",
                  file=sys.stderr)


@contextmanager
def _progress_bar(total: int, show: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("instrumenting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("instrument", total=total)
        yield lambda done, _total: bar.update(task, completed=done)
