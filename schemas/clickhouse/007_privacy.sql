-- Erasures: what `pixeltrack forget` removed, kept as proof. The recipient is named by its hash only.
CREATE TABLE IF NOT EXISTS erasures
(
    tenant         LowCardinality(String),
    recipient_hash String,
    requested_at   DateTime64(3, 'UTC'),
    rows_deleted   Map(String, UInt64)
)
ENGINE = MergeTree
ORDER BY (tenant, requested_at);

-- Unsubscribes taken by the edge's one-click endpoint (RFC 8058 POST); a GET never writes here.
-- Kept as a suppression list by recipient hash, so `forget` does not undo an opt-out.
CREATE TABLE IF NOT EXISTS unsubscribes
(
    tenant         LowCardinality(String),
    recipient_hash String,
    campaign       LowCardinality(String),
    message_id     String,
    ts             DateTime64(3, 'UTC'),
    src_topic      LowCardinality(String),
    src_partition  Int32,
    src_offset     Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, recipient_hash, campaign)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_unsubscribes TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM unsubscribes WHERE src_partition >= 0
GROUP BY src_topic, src_partition;
