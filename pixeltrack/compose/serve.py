"""`pixeltrack serve`: edge, processors and chDB in one process, for trying pixeltrack out (its composition).

Its state file is pixeltrack/serve_state.py, its admin HTTP API pixeltrack/serve_admin.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.api import create_api_app, esp_settings
from ingest.app import create_app
from ingest.fastpath import EdgeSite
from ingest.publisher import Publisher, QueuePublisher
from ingest.serving import SERVE_FD_RESERVE, ServerLimits
from pixeltrack.compose.build import (
    API_KEY_FILE,
    build_processor,
    data_dir_secret,
    keyring_for,
    privacy_key_for,
    tenants_for,
)
from pixeltrack.dashboard import query_with, start_dashboard
from pixeltrack.errors import CommandError
from pixeltrack.serve_admin import admin_app
from pixeltrack.serve_state import TRIGGER_FOLDERS, ServeInfo, chdb_dsn
from processors.clickhouse import migrate
from processors.local_runner import LocalRunner
from processors.writer import ClickHouseWriter
from schemas.records import Record
from schemas.runtime import stop_on_signals, tune_gc_for_batches
from schemas.settings import Settings
from schemas.topics import Topics

if TYPE_CHECKING:
    from processors.triggers.recipient_service import RecipientEventService
    from processors.triggers.rules import RuleSet
    from processors.triggers.service import TriggerService

log = logging.getLogger(__name__)


def refuse_to_start(data_dir: Path, ports: list[tuple[str, int, str]]) -> None:
    """CommandError when this serve cannot run, checked before it creates anything (key, chDB, state):
    another serve owns the folder, or a port of `ports` (host, port, the flag that changes it) is taken."""
    running = ServeInfo.read(data_dir)
    if running is not None:
        raise CommandError(f"a serve already runs on {data_dir} (pid {running.pid}, dashboard "
                           f"{running.dashboard_url}/, edge {running.edge_url}): use it, or stop it first")
    for host, port, flag in ports:
        refuse_taken_port(host, port, f"{flag} PORT (0 = any)")


def refuse_taken_port(host: str, port: int, change: str) -> None:
    """CommandError when host:port cannot be listened on (port 0: any, never taken); `change` says what
    picks another port."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port} ({exc}); check --host") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As the servers bind: SO_REUSEADDR, so only a listening socket (not TIME_WAIT) refuses.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise CommandError(f"port {port} on {host} is not free ({exc.strerror or exc}): stop what holds "
                                   f"it, or give {change}") from None


def _port_taken(host: str, port: int, flag: str, exc: OSError) -> str:
    return (f"port {port} on {host} is not free ({exc.strerror or exc}): stop what holds it, or give {flag} PORT "
            "(0 = any)")


@contextlib.contextmanager
def _port_of(host: str, port: int, flag: str) -> Iterator[None]:
    """A bind that fails after refuse_to_start's check (taken in between) says the same one line."""
    try:
        yield
    except OSError as exc:
        raise CommandError(_port_taken(host, port, flag, exc)) from None


async def serve(settings: Settings, data_dir: Path, host: str, port: int, api_port: int = 8081,
                dashboard_port: int = 8082, stop: asyncio.Event | None = None, announce: bool = True) -> None:
    """Runs until SIGINT/SIGTERM (or `stop`), then stops in order: edge (drains its queue onto the
    bus) and API, runner (writes what is on the bus), writer."""
    stop = stop or asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop)

    refuse_to_start(data_dir, [(host, port, "--port"), (host, api_port, "--api-port"),
                               ("127.0.0.1", dashboard_port, "--dashboard-port")])
    keyring = keyring_for(settings, data_dir)
    dsn = chdb_dsn(data_dir)
    await asyncio.to_thread(migrate, dsn, "pixeltrack", settings.retention_days, settings.dead_letter_retention_days)
    writer = ClickHouseWriter(dsn)
    bus: asyncio.Queue[Record] = asyncio.Queue()
    rules = None
    if settings.triggers_rules is not None:
        from processors.triggers.rules import load_rules

        secret = settings.triggers_webhook_secret.get_secret_value() if settings.triggers_webhook_secret else None
        rules = load_rules(settings.triggers_rules, secret)
        if rules.rules:
            settings = settings.model_copy(update={"publish_classified": True})
    processor = build_processor(settings, keyring)
    # Every erasure known before anything is taken: the trigger services ask the processor too.
    processor.forget_recipients((await writer.erasures(0.0))[0])
    triggers, recipients = (trigger_services(rules, settings, data_dir, processor.erased) if rules is not None
                            else (None, None))
    runner = LocalRunner(bus, processor, writer,
                         settings.batch_max_records, settings.batch_max_ms,
                         on_classified=triggers.feed if triggers is not None else None,
                         gc_schedule=tune_gc_for_batches(collect_young=True))  # the edge is here too
    triggers_stop = asyncio.Event()
    triggers_task = (asyncio.create_task(triggers.run(triggers_stop), name="pixeltrack-triggers")
                     if triggers is not None else None)
    recipients_task = (asyncio.create_task(recipients.run(triggers_stop), name="pixeltrack-recipient-events")
                       if recipients is not None else None)
    runner_stop = asyncio.Event()  # set once the edge and the API have put their last records on the bus
    runner_task = asyncio.create_task(runner.run(runner_stop), name="pixeltrack-local-runner")
    runner_task.add_done_callback(lambda task: _runner_ended(task, stop))

    # The whole process is the unit of failure: no spool here. The bus is bounded for the edge and the
    # API (their publishes wait; the edge's own queue then fills and counts what it drops).
    edge_settings = settings.model_copy(update={"spool_dir": None})
    onto_bus: Publisher = QueuePublisher(bus, settings.queue_size)
    if recipients is not None:  # consents, unsubscribes and complaints also go to the sender's webhook
        onto_bus = TeePublisher(onto_bus, recipients.take)
    # One set of deadlines and one connection cap for every server of the process (ingest/serving.py).
    limits = ServerLimits.from_settings(settings, reserve=SERVE_FD_RESERVE)
    edge = limits.runner(create_app(edge_settings, publisher=onto_bus, keyring=keyring))
    await edge.setup()
    edge_site = (EdgeSite(edge, host, port, reuse_address=True, limits=limits) if settings.edge_fast_path
                 else limits.site(edge, host, port, server="edge", reuse_address=True))
    with _port_of(host, port, "--port"):
        await edge_site.start()
    api_key = (settings.api_keys.get_secret_value().split(",")[0].strip() if settings.api_keys
               else data_dir_secret(data_dir, API_KEY_FILE))
    api_app = create_api_app(tenants_for(settings, keyring), [api_key], Topics(settings.topic_prefix), onto_bus,
                             own_publisher=False, esp=esp_settings(settings))
    api = limits.runner(api_app)
    await api.setup()
    with _port_of(host, api_port, "--api-port"):
        await limits.site(api, host, api_port, server="api", reuse_address=True).start()
    token = secrets.token_urlsafe(24)
    admin = limits.runner(admin_app(writer, token, lambda h: processor.forget_recipients([h]),
                                    privacy_key_for(settings, keyring), tenants_for(settings, keyring),
                                    lambda t, r: forget_in_journals(data_dir, [triggers, recipients], t, r)))
    await admin.setup()
    admin_site = limits.site(admin, "127.0.0.1", 0, server="admin")
    await admin_site.start()

    # The dashboard reads through the writer's thread, like every other reader of this chDB folder.
    with _port_of("127.0.0.1", dashboard_port, "--dashboard-port"):
        dashboard = await start_dashboard(query_with(writer), "127.0.0.1", dashboard_port, limits=limits)

    edge_port, api_bound, admin_port = edge.addresses[0][1], api.addresses[0][1], admin.addresses[0][1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    info = ServeInfo(f"http://{shown_host}:{edge_port}", f"http://127.0.0.1:{dashboard.addresses[0][1]}",
                     f"http://{shown_host}:{api_bound}", api_key,
                     f"http://127.0.0.1:{admin_port}", token, os.getpid(),
                     sorted(tenants_for(settings, keyring).tenants))
    state = info.write(data_dir)
    if announce:
        _announce(info, data_dir)
    try:
        await stop.wait()
    finally:
        state.unlink(missing_ok=True)
        await edge.cleanup()  # stops accepting, then the forwarder drains onto the bus (the runner reads on)
        await api.cleanup()
        runner_stop.set()
        failed: BaseException | None = None
        try:
            await runner_task
        except Exception as exc:
            failed = exc
        if failed is None:
            await runner.drain()
        else:
            log.error("%d records on the bus were not written", bus.qsize())
        triggers_stop.set()  # after the drain, so the drained events reach the triggers too
        if triggers_task is not None:
            await triggers_task
        if recipients_task is not None:
            await recipients_task
        await dashboard.cleanup()
        await admin.cleanup()
        await writer.close()
        log.info("stopped; %d rows written", runner.rows_written)
        if failed is not None:
            raise failed


def trigger_services(rules: RuleSet, settings: Settings, data_dir: Path, erased: Callable[[str, str], bool]
                     ) -> tuple[TriggerService | None, RecipientEventService | None]:
    """The trigger service (when the rules file has rules) and the recipient-event service (when it has a
    [recipient_events] table), their files in `data_dir`. `erased(tenant, recipient)`: whether `forget`
    erased someone (the processor's, which reads `erasures`): the services write no line naming them."""
    from processors.triggers.recipient_service import RecipientEventService
    from processors.triggers.service import TriggerService
    from processors.triggers.webhook import RetryPolicy

    triggers = recipients = None
    if rules.rules:
        triggers = TriggerService(rules, state_dir=data_dir / TRIGGER_FOLDERS[0],
                                  settle_seconds=settings.triggers_settle_seconds,
                                  max_attempts=settings.triggers_max_attempts, erased=erased)
    if rules.recipient_events is not None:
        recipients = RecipientEventService(rules, Topics(settings.topic_prefix),
                                           state_dir=data_dir / TRIGGER_FOLDERS[1],
                                           retry=RetryPolicy(max_attempts=settings.triggers_max_attempts),
                                           erased=erased)
    return triggers, recipients


async def forget_in_journals(data_dir: Path, services: Sequence[TriggerService | RecipientEventService | None],
                             tenant: str, recipient: str) -> int:
    """Erases a recipient from the files of serve's triggers (DATA/triggers/, DATA/recipient-events/): a
    running service purges its own, under its write lock, and drops what it holds of them in memory (see
    TriggerService.forget); the folder of a service not running now (an earlier run's rules) is purged
    here, since this serve owns the folder and nothing else writes there. Returns the lines removed."""
    from processors.triggers.service import purge_journals

    removed = 0
    for folder, service in zip(TRIGGER_FOLDERS, services, strict=True):
        if service is not None:
            removed += await service.forget(tenant, recipient)
        else:
            removed += await asyncio.to_thread(purge_journals, data_dir / folder, tenant, recipient)
    return removed


class TeePublisher:
    """A publisher that awaits `also(records)` (the recipient events' journal, which skips keys it holds)
    before `inner` takes the batch: what the edge and the API publish reaches both the webhooks and the
    runner, and a batch published again after a failure is not journalled twice."""

    def __init__(self, inner: Publisher, also: Callable[[Sequence[Record]], Awaitable[None]]) -> None:
        self._inner = inner
        self._also = also

    async def start(self) -> None:
        await self._inner.start()

    async def publish(self, records: Sequence[Record]) -> None:
        await self._also(records)
        await self._inner.publish(records)

    async def stop(self) -> None:
        await self._inner.stop()

    async def reset(self) -> None:
        await self._inner.reset()

    def healthy(self) -> bool:
        return self._inner.healthy()


def _runner_ended(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """The runner ends on its own only on an error: the process stops then, loudly, rather than answer
    hits that nothing writes."""
    if not task.cancelled() and task.exception() is not None and not stop.is_set():
        log.error("the processor failed (%r): stopping", task.exception())
        stop.set()


def _announce(info: ServeInfo, data_dir: Path) -> None:
    from rich.console import Console

    c = Console(highlight=False, soft_wrap=True)
    c.print(f"[bold]pixeltrack serve[/] — edge, processors and chDB in one process (data: {data_dir})")
    c.print(f"  [bold]dashboard {info.dashboard_url}/[/]")
    c.print(f"  pixels   {info.edge_url}/o/<token>.gif")
    c.print(f"  clicks   {info.edge_url}/c/<token>   downloads /d/<token>   images /i/<token>")
    c.print(f"  health   {info.edge_url}/healthz   metrics {info.edge_url}/metrics")
    c.print(f"  api      {info.api_url}/v1/sends  /v1/conversions  /v1/events  (Authorization: Bearer "
            f"<key in {data_dir}/{API_KEY_FILE}>)")
    c.print(f"  mint     pixeltrack link --data {data_dir} --base-url {info.edge_url} "
            "--campaign C --message M --recipient R --url https://example.com/")
    c.print(f"  query    pixeltrack query --data {data_dir} \"SELECT kind, verdict, count() FROM hits "
            "GROUP BY ALL\"")
    c.print("  stop     Ctrl-C")
