"""Logging shared by every HTTP server (edge, API, dashboard, serve): malformed requests are one quiet line."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import http_exceptions

from schemas.privacy import truncate_ip

SERVER_LOGGER = "aiohttp.server"  # where aiohttp logs a request it could not parse, for every server
BAD_REQUEST_LEVEL = logging.DEBUG


class QuietBadRequests(logging.Filter):
    """aiohttp logs every malformed request (too long, bad bytes, bad method) at ERROR with a traceback
    and the client's full address. That is the client's mistake, not ours, a cheap way to fill a disk,
    and an address the rest of the project never keeps whole: such a record becomes one DEBUG line
    without traceback, the address truncated as stored hits are (IPv4 /24, IPv6 /48), and is counted
    by `count` when given. Real errors still log as they were."""

    def __init__(self, count: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.count = count

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, http_exceptions.HttpProcessingError) and 400 <= (exc.code or 0) < 500):
            return True
        if self.count is not None:
            self.count()
        # aiohttp's record: ("Error handling request from %s", request.remote)
        args = record.args if isinstance(record.args, tuple) else ()
        remote = args[0] if args and isinstance(args[0], str) else ""
        record.msg = "bad request from %s: %d %s"
        record.args = (truncate_ip(remote) or "an unknown address", exc.code, type(exc).__name__)
        record.levelno, record.levelname = BAD_REQUEST_LEVEL, logging.getLevelName(BAD_REQUEST_LEVEL)
        record.exc_info, record.exc_text = None, None
        # The logger let the record through at ERROR; at its new level it is shown only where enabled.
        return logging.getLogger(record.name).isEnabledFor(BAD_REQUEST_LEVEL)


def quiet_bad_requests(count: Callable[[], object] | None = None) -> QuietBadRequests:
    """Installs the filter on aiohttp's server logger once per process (every server building its app
    calls this); `count`, when given, replaces the counter of the one installed."""
    logger = logging.getLogger(SERVER_LOGGER)
    for f in logger.filters:
        if isinstance(f, QuietBadRequests):
            if count is not None:
                f.count = count
            return f
    installed = QuietBadRequests(count)
    logger.addFilter(installed)
    return installed
