"""Malformed requests to any of our servers (edge, API, dashboard, serve's admin): one DEBUG line
without traceback, the client's address truncated; real errors log as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import http_exceptions, web

from ingest.api import create_api_app
from ingest.app import create_app
from ingest.publisher import QueuePublisher
from ingest.serverlog import SERVER_LOGGER, QuietBadRequests, quiet_bad_requests
from pixeltrack.dashboard.app import create_dashboard_app
from pixeltrack.serve_admin import admin_app
from schemas.records import Record
from schemas.settings import Settings
from schemas.tokens import Keyring
from schemas.topics import Topics

# A header name with a control byte: aiohttp's parser refuses it (400) and logs the refusal.
MALFORMED = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad\x01Name: x\r\n\r\n"


def record(exc: BaseException, remote: object = "203.0.113.77") -> logging.LogRecord:
    """What aiohttp's handle_error logs."""
    return logging.LogRecord(SERVER_LOGGER, logging.ERROR, __file__, 1, "Error handling request from %s", (remote,),
                             (type(exc), exc, None))


@pytest.fixture
def no_filter_installed() -> Iterator[None]:
    """aiohttp's logger as a fresh process has it: the app factories must install the filter themselves."""
    logger = logging.getLogger(SERVER_LOGGER)
    before = list(logger.filters)
    for f in before:
        logger.removeFilter(f)
    yield
    for f in list(logger.filters):
        logger.removeFilter(f)
    for f in before:
        logger.addFilter(f)


def test_a_bad_request_becomes_one_debug_line_with_the_address_truncated() -> None:
    counted: list[int] = []
    quiet = QuietBadRequests(lambda: counted.append(1))
    logging.getLogger(SERVER_LOGGER).setLevel(logging.DEBUG)
    try:
        for exc, remote, shown in [(http_exceptions.LineTooLong("x", "8190"), "203.0.113.77", "203.0.113.0"),
                                   (http_exceptions.BadHttpMethod("BREW"), "2001:db8:1:2::7", "2001:db8:1::"),
                                   (http_exceptions.BadHttpMessage("bad"), None, "an unknown address")]:
            r = record(exc, remote)
            assert quiet.filter(r)
            assert (r.levelno, r.levelname, r.exc_info, r.exc_text) == (logging.DEBUG, "DEBUG", None, None)
            assert r.getMessage() == f"bad request from {shown}: 400 {type(exc).__name__}"
        logging.getLogger(SERVER_LOGGER).setLevel(logging.INFO)
        assert not quiet.filter(record(http_exceptions.BadHttpMessage("bad")))  # DEBUG is not shown: dropped
    finally:
        logging.getLogger(SERVER_LOGGER).setLevel(logging.NOTSET)
    assert len(counted) == 4
    real = record(RuntimeError("a real error"))
    assert quiet.filter(real)
    assert (real.levelno, real.exc_info is not None, real.getMessage()) == (
        logging.ERROR, True, "Error handling request from 203.0.113.77")
    assert quiet.filter(logging.LogRecord(SERVER_LOGGER, logging.INFO, __file__, 1, "hello", (), None))


def test_installing_twice_keeps_one_filter_and_takes_the_counter(no_filter_installed: None) -> None:
    first = quiet_bad_requests()
    count = lambda: None  # noqa: E731
    assert quiet_bad_requests(count) is first
    assert first.count is count
    assert quiet_bad_requests() is first
    assert first.count is count
    assert sum(isinstance(f, QuietBadRequests) for f in logging.getLogger(SERVER_LOGGER).filters) == 1


async def _no_rows(sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    return []


def _edge() -> web.Application:
    settings = Settings(_env_file=None, edge_id="test-edge", spool_dir=None)  # type: ignore[call-arg]
    return create_app(settings, publisher=QueuePublisher(asyncio.Queue()), keyring=KEYRING)


KEYRING = Keyring({"t1": b"test-secret-0123456789abcdef"}, "t1")
SERVERS: dict[str, Callable[[], web.Application]] = {
    "edge": _edge,
    "api": lambda: create_api_app(KEYRING, ["k"], Topics(), QueuePublisher(asyncio.Queue[Record]()),
                                  own_publisher=False),
    "dashboard": lambda: create_dashboard_app(_no_rows),
    "serve-admin": lambda: admin_app(None, "token"),  # type: ignore[arg-type]  # the writer is not reached
}


@pytest.fixture
def bad_request_logs(caplog: pytest.LogCaptureFixture) -> Callable[[web.Application], Any]:
    """Serves an app on 127.0.0.1, sends it one malformed request, and gives aiohttp's log records."""
    async def send(app: web.Application) -> list[logging.LogRecord]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        caplog.clear()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(MALFORMED)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            assert status.split()[1:2] == [b"400"], status
            await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()
        return [r for r in caplog.records if r.name == SERVER_LOGGER]

    caplog.set_level(logging.DEBUG, logger=SERVER_LOGGER)
    return send


@pytest.mark.parametrize("server", SERVERS)
async def test_every_server_logs_a_malformed_request_as_one_quiet_line(
        server: str, no_filter_installed: None, bad_request_logs: Callable[[web.Application], Any]) -> None:
    logs = await bad_request_logs(SERVERS[server]())
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in logs] == [
        ("DEBUG", "bad request from 127.0.0.0: 400 BadHttpMessage", None)]
