"""Prometheus metrics of the processors."""

from prometheus_client import Counter, Gauge, Histogram

HITS = Counter("pixeltrack_hits_total", "Hits classified and written.", ["kind", "verdict"])
REPEATS_DROPPED = Counter("pixeltrack_repeats_dropped_total",
                          "Hits dropped because their edge-made id was already counted.")
DO_NOT_TRACK = Counter("pixeltrack_do_not_track_dropped_total",
                       "Hits, sends and conversions of do-not-track or erased recipients, not stored.")
REVISIONS = Counter("pixeltrack_verdict_revisions_total", "Verdicts revised within the settle window.")
DEAD_LETTERS = Counter("pixeltrack_dead_letters_total", "Records sent to the dead-letter path.",
                       ["stage", "reason"])
INSERT_SECONDS = Histogram("pixeltrack_insert_seconds", "Time of one ClickHouse insert.", ["table"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
INSERT_ROWS = Counter("pixeltrack_insert_rows_total", "Rows inserted into ClickHouse.", ["table"])
BATCH_SECONDS = Histogram("pixeltrack_batch_seconds", "Time to process one batch, by stage.", ["stage"],
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
CONSUMER_LAG = Gauge("pixeltrack_consumer_lag", "Records behind the end of the partition.",
                     ["topic", "partition"])
