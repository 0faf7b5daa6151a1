-- Input that could not be used, with the reason: bad tokens at the edge, undecodable records.
CREATE TABLE IF NOT EXISTS dead_letters
(
    id            String,
    received_at   DateTime64(3, 'UTC'),
    stage         LowCardinality(String),
    reason        LowCardinality(String),
    detail        String,
    kind          LowCardinality(String),
    method        LowCardinality(String),
    host          String,
    path          String,
    ip            String,
    user_agent    String,
    edge          LowCardinality(String),
    raw           String,
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (stage, reason, id)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
