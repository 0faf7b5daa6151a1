"""A live campaign dashboard over ClickHouse's views: server-rendered HTML and SVG, polled panels."""

from pixeltrack.dashboard.app import create_dashboard_app, query_with, start_dashboard
from pixeltrack.dashboard.queries import Query

__all__ = ["Query", "create_dashboard_app", "query_with", "start_dashboard"]
