"""Prometheus metrics of the edge."""

from prometheus_client import Counter, Gauge, Histogram

HITS = Counter("pixeltrack_edge_hits_total", "Fetches answered by the edge.", ["kind", "result"])
QUEUE_DEPTH = Gauge("pixeltrack_edge_queue_depth", "Records waiting in the edge's in-memory queue.")
QUEUE_OVERFLOW = Counter("pixeltrack_edge_queue_overflow_total",
                         "Records that found the in-memory queue full.")
PUBLISHED = Counter("pixeltrack_edge_published_total", "Records acknowledged by the transport.", ["topic"])
PUBLISH_ERRORS = Counter("pixeltrack_edge_publish_errors_total", "Failed publish attempts.")
PUBLISH_SECONDS = Histogram("pixeltrack_edge_publish_seconds", "Time to publish one batch.",
                            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
