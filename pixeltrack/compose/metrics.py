"""A /metrics endpoint for a process that serves nothing else (`pixeltrack process`): aiohttp under the
process's ServerLimits (ingest/serving.py: a whole request head within header_timeout_seconds, an idle
keep-alive connection closed after keepalive_timeout_seconds, a connection cap), on the configured host,
loopback unless told otherwise.

It replaces prometheus_client's start_http_server, which listened on every interface with a thread per
connection and no deadline: a client that connected and sent nothing held a thread and a descriptor for
as long as it liked, and enough of them would take the descriptors the process needs for Kafka and
ClickHouse.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from ingest.serving import ServerLimits
from schemas.settings import Settings

SERVER = "metrics"  # the server label of pixeltrack_connections_* and pixeltrack_head_timeouts_total
# Connections the endpoint keeps open at once unless max_connections says otherwise: a scraper or two and
# someone with curl. A process that serves only /metrics needs its descriptors for Kafka and ClickHouse.
METRICS_CONNECTIONS = 32
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[REGISTRY_KEY]), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app(registry: CollectorRegistry = REGISTRY) -> web.Application:
    """GET /metrics: `registry` in Prometheus' text format."""
    app = web.Application()
    app[REGISTRY_KEY] = registry
    app.router.add_get("/metrics", _metrics)
    return app


def metrics_limits(settings: Settings) -> ServerLimits:
    """The settings' deadlines, and max_connections when set, else METRICS_CONNECTIONS."""
    return ServerLimits(settings.header_timeout_seconds, settings.keepalive_timeout_seconds,
                        settings.max_connections or METRICS_CONNECTIONS)


async def start_metrics(host: str, port: int, limits: ServerLimits,
                        registry: CollectorRegistry = REGISTRY) -> web.AppRunner:
    """Serves metrics_app on host:port under `limits` until the runner returned is cleaned up (port 0: any
    free port, in runner.addresses)."""
    runner = limits.runner(metrics_app(registry))
    await runner.setup()
    try:
        await limits.site(runner, host, port, server=SERVER).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
