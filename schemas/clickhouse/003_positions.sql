-- Highest Kafka offset per topic-partition whose rows ClickHouse holds, fed by the same inserts.
-- A processor that takes over a partition seeks past this, so a batch inserted but not committed
-- to Kafka before a crash is not inserted again, whatever the new batch boundaries are.
CREATE TABLE IF NOT EXISTS consumer_positions
(
    src_topic     LowCardinality(String),
    src_partition Int32,
    max_offset    SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (src_topic, src_partition)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_events TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM events WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_dead_letters TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM dead_letters WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_dead_letter_counts TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM dead_letter_counts WHERE src_partition >= 0
GROUP BY src_topic, src_partition;
