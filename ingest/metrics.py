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
SPOOL_BYTES = Gauge("pixeltrack_edge_spool_bytes", "Bytes in the spool not yet acknowledged by Kafka.")
SPOOL_SEGMENTS = Gauge("pixeltrack_edge_spool_segments", "Segment files in the spool.")
SPOOL_DROPPED = Counter("pixeltrack_edge_spool_dropped_total", "Hits dropped because the spool was full.")
REPLAYED = Counter("pixeltrack_edge_replayed_total", "Records re-sent from the spool.")
FORWARDER_MODE = Gauge("pixeltrack_edge_forwarder_direct", "1 when publishing from memory, 0 in catch-up.")
