-- Delivery events (POST /v1/events, the email platforms' webhooks): delivered, bounced (hard or soft,
-- with the SMTP code and the server's answer, addresses in it redacted), deferred, complained (a
-- feedback loop), unsubscribed (the platform's list-unsubscribe), replied. One row per (tenant,
-- message_id, type, event_id): the processor drops a repeated event before insert, so every row counts
-- once. Campaign, variant and recipient are the registered send's when the event did not say them.
-- The edge's one-click unsubscribes are here too (type 'unsubscribed', platform 'pixeltrack').
CREATE TABLE IF NOT EXISTS deliveries
(
    tenant        LowCardinality(String),
    message_id    String,
    type          LowCardinality(String),
    event_id      String,
    ts            DateTime64(3, 'UTC'),
    campaign      LowCardinality(String),
    variant       LowCardinality(String),
    recipient_id  String,
    bounce        LowCardinality(String),
    smtp_code     UInt16,
    diagnostic    String,
    platform      LowCardinality(String),
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64,
    INDEX message_bloom message_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, message_id, type, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_deliveries TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM deliveries WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- Per message: delivery reports, hard and soft bounces (with the latest soft bounce's and delivery's
-- times: a soft bounce followed by a delivery is delivered), deferrals, complaints, unsubscribes (our
-- own one-click ones, which the processors write here as platform 'pixeltrack' beside their row in
-- `unsubscribes`, and the platform's) and replies. campaign_summary says which messages count as delivered.
CREATE MATERIALIZED VIEW IF NOT EXISTS message_totals_from_deliveries TO message_totals AS
SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(0) AS sent, toDateTime64('2106-01-01 00:00:00', 3, 'UTC') AS first_sent_at,
       countIf(type = 'delivered') AS deliveries,
       maxIf(ts, type = 'delivered') AS last_delivery_at,
       countIf(type = 'bounced' AND bounce = 'hard') AS hard_bounces,
       countIf(type = 'bounced' AND bounce = 'soft') AS soft_bounces,
       maxIf(ts, type = 'bounced' AND bounce = 'soft') AS last_soft_bounce_at,
       countIf(type = 'deferred') AS deferrals,
       countIf(type = 'complained') AS complaints,
       countIf(type = 'unsubscribed' AND platform = 'pixeltrack') AS unsubscribes,
       countIf(type = 'unsubscribed' AND platform != 'pixeltrack') AS platform_unsubscribes,
       countIf(type = 'replied') AS replies
FROM deliveries WHERE message_id != ''
GROUP BY tenant, campaign, message_id;
