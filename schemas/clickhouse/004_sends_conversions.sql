-- Sends: one row per message and recipient, the denominator of every rate. recipient_key is the
-- recipient's keyed hash (schemas.privacy.keyed_recipient_hash), for distinct recipient counts. Repeats of a send (an API
-- retry) are harmless: delivered counts are exact distinct message counts (uniqExact states).
CREATE TABLE IF NOT EXISTS sends
(
    tenant         LowCardinality(String),
    campaign       LowCardinality(String),
    variant        LowCardinality(String),
    message_id     String,
    recipient_id   String,
    recipient_key  String,
    sent_at        DateTime64(3, 'UTC'),
    mailbox_domain LowCardinality(String),
    links          UInt16,
    src_topic      LowCardinality(String),
    src_partition  Int32,
    src_offset     Int64,
    INDEX message_bloom message_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(sent_at)
ORDER BY (tenant, campaign, variant, message_id)
TTL toDateTime(sent_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

-- Conversions: outcomes attributed to a campaign, variant, message and link (by click id or message).
-- The processor drops a repeated idempotency key before insert, so every row counts once.
CREATE TABLE IF NOT EXISTS conversions
(
    tenant          LowCardinality(String),
    idempotency_key String,
    ts              DateTime64(3, 'UTC'),
    campaign        LowCardinality(String),
    variant         LowCardinality(String),
    message_id      String,
    recipient_id    String,
    link            String,
    click_id        String,
    click_hit_id    String,
    value           Float64,
    currency        LowCardinality(String),
    src_topic       LowCardinality(String),
    src_partition   Int32,
    src_offset      Int64,
    INDEX key_bloom idempotency_key TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, variant, idempotency_key)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_sends TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM sends WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_conversions TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM conversions WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- Aggregate sends: emails sent with campaign-level tracking (a recipient who denied consent, or whose
-- unknown consent means aggregate, or everyone under PIXELTRACK_TRACKING=aggregate), counted per campaign,
-- variant and hour with no message or recipient id. `key` is the sender's idempotency key (random, never
-- derived from a recipient): a record posted twice is one row once merged, so read with FINAL. No TTL:
-- it holds counts only, and campaign_summary reads it as it reads message_totals, which stay too.
CREATE TABLE IF NOT EXISTS aggregate_sends
(
    tenant        LowCardinality(String),
    campaign      LowCardinality(String),
    variant       LowCardinality(String),
    sent_at       DateTime('UTC'),
    sends         UInt64,
    key           String,
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(sent_at)
ORDER BY (tenant, campaign, variant, key)
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_aggregate_sends TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM aggregate_sends WHERE src_partition >= 0
GROUP BY src_topic, src_partition;
