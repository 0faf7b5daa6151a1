"""Prometheus metrics of the edge.

With several workers (`ingest.workers`), prometheus_client runs in multiprocess mode: each worker
writes its values to files in PROMETHEUS_MULTIPROC_DIR and any worker's /metrics shows the sum, so one
scrape of the shared port sees the whole edge. Counters and histograms add up across workers (a
restarted worker's earlier counts included); the gauges say how they combine across the live workers.
"""

from prometheus_client import Counter, Gauge, Histogram

HITS = Counter("pixeltrack_edge_hits_total", "Fetches answered by the edge, by kind and result "
               "(ok, dropped, error, or the token's rejection reason).", ["kind", "result"])
QUEUE_DEPTH = Gauge("pixeltrack_edge_queue_depth", "Records waiting in the edge's in-memory queue.",
                    multiprocess_mode="livesum")
QUEUE_OVERFLOW = Counter("pixeltrack_edge_queue_overflow_total",
                         "Records that found the in-memory queue full.")
PUBLISHED = Counter("pixeltrack_edge_published_total", "Records acknowledged by the transport.", ["topic"])
PUBLISH_ERRORS = Counter("pixeltrack_edge_publish_errors_total", "Failed publish attempts.")
PUBLISH_SECONDS = Histogram("pixeltrack_edge_publish_seconds", "Time to publish one batch (produce "
                            "latency: from send to acks=all acknowledgement).",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SPOOL_BYTES = Gauge("pixeltrack_edge_spool_bytes", "Bytes in the spool not yet acknowledged by Kafka.",
                    multiprocess_mode="livesum")
SPOOL_SEGMENTS = Gauge("pixeltrack_edge_spool_segments", "Segment files in the spool.",
                       multiprocess_mode="livesum")
SPOOL_DROPPED = Counter("pixeltrack_edge_spool_dropped_total", "Hits dropped because the spool was full.")
REPLAYED = Counter("pixeltrack_edge_replayed_total", "Records re-sent from the spool.")
FORWARDER_MODE = Gauge("pixeltrack_edge_forwarder_direct", "1 when publishing from memory, 0 in catch-up "
                       "(with several workers: the lowest, so 0 while any worker catches up).",
                       multiprocess_mode="livemin")
BAD_REQUESTS = Counter("pixeltrack_edge_bad_requests_total",
                       "Requests aiohttp's parser refused (4xx: too long, bad bytes, bad method).")
LOOP_LAG = Histogram("pixeltrack_edge_loop_lag_seconds", "How late the event loop ran a timer due every "
                     "100 ms: time every request waited for whatever held the loop.",
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
HANDED_OVER = Counter("pixeltrack_edge_handed_over_total", "Connections the fast path handed to aiohttp (a "
                      "request other than a plain pixel or click fetch: another route, a body, a parse error).")
ESP_REQUESTS = Counter("pixeltrack_esp_requests_total", "Email platforms' webhook requests to the ingest API, by "
                       "platform and result (ok; bad_signature, stale, unknown_tenant, not_configured, bad_request, "
                       "too_large, unavailable: refused, nothing stored).", ["platform", "result"])
ESP_EVENTS = Counter("pixeltrack_esp_events_total", "Events in email platforms' webhooks, by platform and outcome "
                     "(delivery, hit, ignored, not_ours, dead_letter).", ["platform", "outcome"])
