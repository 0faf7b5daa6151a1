-- Input that could not be used, with the reason: bad tokens at the edge, undecodable records.
-- A sample, not every letter: the processors keep at most PIXELTRACK_DEAD_LETTER_SAMPLES bodies per
-- stage, reason, edge and minute (junk must not fill the disk), for PIXELTRACK_DEAD_LETTER_RETENTION_DAYS;
-- dead_letter_counts below counts every letter.
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
TTL toDateTime(received_at) + INTERVAL {dead_letter_retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

-- Every dead letter counted, stored as a body or not: letters per stage, reason, edge, kind and
-- minute (of the letter's received_at), and how many of them were kept in dead_letters. Summed when
-- parts merge: read with sum(letters) ... GROUP BY. The src_* columns carry the batch's highest
-- position for consumer_positions at insert time (a batch of letters all left out is still a batch
-- done); after merges they name one of the summed rows.
CREATE TABLE IF NOT EXISTS dead_letter_counts
(
    minute        DateTime64(3, 'UTC'),
    stage         LowCardinality(String),
    reason        LowCardinality(String),
    edge          LowCardinality(String),
    kind          LowCardinality(String),
    letters       UInt64,
    stored        UInt64,
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64
)
ENGINE = SummingMergeTree((letters, stored))
PARTITION BY toYYYYMM(minute)
ORDER BY (stage, reason, edge, kind, minute)
TTL toDateTime(minute) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
