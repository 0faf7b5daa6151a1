-- GENERATED FILE: do not edit. The ClickHouse cluster form of schemas/clickhouse/*.sql, made by
-- schemas.clickhouse_cluster.cluster_ddl:
--     pixeltrack ddl --cluster pixeltrack --out deploy/clickhouse/cluster.sql
-- cluster pixeltrack, database pixeltrack, retention_days 395, dead_letter_retention_days 14; sources: 001_events.sql, 002_dead_letters.sql, 003_positions.sql, 004_sends_conversions.sql, 005_aggregates.sql, 006_views.sql, 007_privacy.sql, 008_deliveries.sql, 010_site.sql, 011_consent.sql, 013_origin.sql
-- Apply on any one node: clickhouse-client --queries-file cluster.sql (idempotent). The servers need
-- the cluster in remote_servers, the {shard} and {replica} macros and ClickHouse Keeper: see
-- deploy/clickhouse/README.md.

CREATE DATABASE IF NOT EXISTS pixeltrack ON CLUSTER 'pixeltrack';

-- 001_events.sql

CREATE TABLE IF NOT EXISTS pixeltrack.events_local ON CLUSTER 'pixeltrack'
(
    tenant        LowCardinality(String),
    hit_id        String,
    kind          LowCardinality(String),
    ts            DateTime64(3, 'UTC'),
    sent_at       DateTime64(3, 'UTC'),
    campaign      LowCardinality(String),
    variant       LowCardinality(String),
    message_id    String,
    recipient_id  String,
    link_url      String,
    link_id       String,
    link_flags    UInt8,
    method        LowCardinality(String),
    host          LowCardinality(String),
    ip            String,
    user_agent    String,
    edge          LowCardinality(String),
    verdict       LowCardinality(String),
    source        LowCardinality(String),
    reasons       Array(LowCardinality(String)),
    browser       LowCardinality(String),
    os            LowCardinality(String),
    device        LowCardinality(String),
    mail_client   LowCardinality(String),
    country       LowCardinality(String),
    city          String,
    asn           UInt32,
    as_org        LowCardinality(String),
    revision      UInt16,
    sign          Int8,
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64,
    click_hit_id  String,
    INDEX hit_id_bloom hit_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplicatedVersionedCollapsingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', sign, revision)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, kind, message_id, hit_id)
TTL toDateTime(ts) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.events ON CLUSTER 'pixeltrack'
AS pixeltrack.events_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'events_local', cityHash64(message_id));

CREATE OR REPLACE VIEW pixeltrack.hits ON CLUSTER 'pixeltrack'
AS SELECT * EXCEPT (sign, src_topic, src_partition, src_offset)
FROM pixeltrack.events FINAL
WHERE sign = 1;

-- 002_dead_letters.sql

CREATE TABLE IF NOT EXISTS pixeltrack.dead_letters_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (stage, reason, id)
TTL toDateTime(received_at) + INTERVAL 14 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.dead_letters ON CLUSTER 'pixeltrack'
AS pixeltrack.dead_letters_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'dead_letters_local', cityHash64(id));

CREATE TABLE IF NOT EXISTS pixeltrack.dead_letter_counts_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', (letters, stored))
PARTITION BY toYYYYMM(minute)
ORDER BY (stage, reason, edge, kind, minute)
TTL toDateTime(minute) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.dead_letter_counts ON CLUSTER 'pixeltrack'
AS pixeltrack.dead_letter_counts_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'dead_letter_counts_local', cityHash64(stage, reason, edge, kind, minute));

-- 003_positions.sql

CREATE TABLE IF NOT EXISTS pixeltrack.consumer_positions_local ON CLUSTER 'pixeltrack'
(
    src_topic     LowCardinality(String),
    src_partition Int32,
    max_offset    SimpleAggregateFunction(max, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (src_topic, src_partition)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.consumer_positions ON CLUSTER 'pixeltrack'
AS pixeltrack.consumer_positions_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'consumer_positions_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_events ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.events_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_dead_letters ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.dead_letters_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_dead_letter_counts ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.dead_letter_counts_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- 004_sends_conversions.sql

CREATE TABLE IF NOT EXISTS pixeltrack.sends_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(sent_at)
ORDER BY (tenant, campaign, variant, message_id)
TTL toDateTime(sent_at) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.sends ON CLUSTER 'pixeltrack'
AS pixeltrack.sends_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'sends_local', cityHash64(message_id));

CREATE TABLE IF NOT EXISTS pixeltrack.conversions_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, variant, idempotency_key)
TTL toDateTime(ts) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.conversions ON CLUSTER 'pixeltrack'
AS pixeltrack.conversions_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'conversions_local', cityHash64(message_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_sends ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.sends_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_conversions ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.conversions_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE TABLE IF NOT EXISTS pixeltrack.aggregate_sends_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(sent_at)
ORDER BY (tenant, campaign, variant, key)
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.aggregate_sends ON CLUSTER 'pixeltrack'
AS pixeltrack.aggregate_sends_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'aggregate_sends_local', cityHash64(tenant, campaign, variant, key));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_aggregate_sends ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.aggregate_sends_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- 005_aggregates.sql

CREATE TABLE IF NOT EXISTS pixeltrack.campaign_sends_hourly_local ON CLUSTER 'pixeltrack'
(
    tenant     LowCardinality(String),
    campaign   LowCardinality(String),
    variant    LowCardinality(String),
    hour       DateTime('UTC'),
    delivered  AggregateFunction(uniqExact, String),
    recipients AggregateFunction(uniqExact, String)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, variant, hour)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.campaign_sends_hourly ON CLUSTER 'pixeltrack'
AS pixeltrack.campaign_sends_hourly_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'campaign_sends_hourly_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.campaign_sends_hourly_mv ON CLUSTER 'pixeltrack'
TO pixeltrack.campaign_sends_hourly_local
AS SELECT tenant, campaign, variant, toStartOfHour(sent_at) AS hour,
       uniqExactState(message_id) AS delivered,
       uniqExactState(if(recipient_key != '', recipient_key, recipient_id)) AS recipients
FROM pixeltrack.sends_local
GROUP BY tenant, campaign, variant, hour;

CREATE TABLE IF NOT EXISTS pixeltrack.message_totals_local ON CLUSTER 'pixeltrack'
(
    tenant          LowCardinality(String),
    campaign        LowCardinality(String),
    message_id      String,
    variant         SimpleAggregateFunction(max, String),
    recipient_id    SimpleAggregateFunction(max, String),
    sent            SimpleAggregateFunction(max, UInt8),
    first_sent_at   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    opens_human     SimpleAggregateFunction(sum, Int64),
    opens_proxy     SimpleAggregateFunction(sum, Int64),
    opens_machine   SimpleAggregateFunction(sum, Int64),
    opens_duplicate SimpleAggregateFunction(sum, Int64),
    clicks_human    SimpleAggregateFunction(sum, Int64),
    clicks_filtered SimpleAggregateFunction(sum, Int64),
    conversions     SimpleAggregateFunction(sum, Int64),
    revenue         SimpleAggregateFunction(sum, Float64),
    deliveries      SimpleAggregateFunction(sum, Int64),
    last_delivery_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    hard_bounces    SimpleAggregateFunction(sum, Int64),
    soft_bounces    SimpleAggregateFunction(sum, Int64),
    last_soft_bounce_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    deferrals       SimpleAggregateFunction(sum, Int64),
    complaints      SimpleAggregateFunction(sum, Int64),
    unsubscribes    SimpleAggregateFunction(sum, Int64),
    platform_unsubscribes SimpleAggregateFunction(sum, Int64),
    replies         SimpleAggregateFunction(sum, Int64),
    downloads_human    SimpleAggregateFunction(sum, Int64),
    downloads_filtered SimpleAggregateFunction(sum, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, message_id)
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.message_totals ON CLUSTER 'pixeltrack'
AS pixeltrack.message_totals_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'message_totals_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.message_totals_from_sends ON CLUSTER 'pixeltrack'
TO pixeltrack.message_totals_local
AS SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(1) AS sent, min(sent_at) AS first_sent_at,
       toInt64(0) AS opens_human, toInt64(0) AS opens_proxy, toInt64(0) AS opens_machine,
       toInt64(0) AS opens_duplicate, toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue
FROM pixeltrack.sends_local
GROUP BY tenant, campaign, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.message_totals_from_events ON CLUSTER 'pixeltrack'
TO pixeltrack.message_totals_local
AS SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(0) AS sent, toDateTime64('2106-01-01 00:00:00', 3, 'UTC') AS first_sent_at,
       sumIf(sign, kind = 'open' AND verdict = 'human') AS opens_human,
       sumIf(sign, kind = 'open' AND verdict = 'proxy') AS opens_proxy,
       sumIf(sign, kind = 'open' AND verdict = 'machine') AS opens_machine,
       sumIf(sign, kind = 'open' AND verdict = 'duplicate') AS opens_duplicate,
       sumIf(sign, kind = 'click' AND verdict IN ('human', 'proxy') AND bitAnd(link_flags, 2) = 0) AS clicks_human,
       sumIf(sign, kind = 'click' AND verdict = 'machine' AND bitAnd(link_flags, 2) = 0) AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue,
       sumIf(sign, kind = 'download' AND verdict IN ('human', 'proxy')) AS downloads_human,
       sumIf(sign, kind = 'download' AND verdict = 'machine') AS downloads_filtered
FROM pixeltrack.events_local WHERE message_id != ''
GROUP BY tenant, campaign, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.message_totals_from_conversions ON CLUSTER 'pixeltrack'
TO pixeltrack.message_totals_local
AS SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(0) AS sent, toDateTime64('2106-01-01 00:00:00', 3, 'UTC') AS first_sent_at,
       toInt64(0) AS opens_human, toInt64(0) AS opens_proxy, toInt64(0) AS opens_machine,
       toInt64(0) AS opens_duplicate, toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered,
       count() AS conversions, sum(value) AS revenue
FROM pixeltrack.conversions_local WHERE message_id != ''
GROUP BY tenant, campaign, message_id;

CREATE TABLE IF NOT EXISTS pixeltrack.verdict_hourly_local ON CLUSTER 'pixeltrack'
(
    tenant   LowCardinality(String),
    campaign LowCardinality(String),
    variant  LowCardinality(String),
    hour     DateTime('UTC'),
    kind     LowCardinality(String),
    verdict  LowCardinality(String),
    source   LowCardinality(String),
    hits     Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, variant, hour, kind, verdict, source)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.verdict_hourly ON CLUSTER 'pixeltrack'
AS pixeltrack.verdict_hourly_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'verdict_hourly_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.verdict_hourly_mv ON CLUSTER 'pixeltrack'
TO pixeltrack.verdict_hourly_local
AS SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, source, sum(sign) AS hits
FROM pixeltrack.events_local
GROUP BY tenant, campaign, variant, hour, kind, verdict, source;

CREATE TABLE IF NOT EXISTS pixeltrack.link_totals_local ON CLUSTER 'pixeltrack'
(
    tenant          LowCardinality(String),
    campaign        LowCardinality(String),
    link            String,
    message_id      String,
    variant         SimpleAggregateFunction(max, String),
    clicks_human    SimpleAggregateFunction(sum, Int64),
    clicks_filtered SimpleAggregateFunction(sum, Int64),
    conversions     SimpleAggregateFunction(sum, Int64),
    revenue         SimpleAggregateFunction(sum, Float64),
    downloads_human    SimpleAggregateFunction(sum, Int64),
    downloads_filtered SimpleAggregateFunction(sum, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, link, message_id)
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.link_totals ON CLUSTER 'pixeltrack'
AS pixeltrack.link_totals_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'link_totals_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.link_totals_from_events ON CLUSTER 'pixeltrack'
TO pixeltrack.link_totals_local
AS SELECT tenant, campaign, if(link_id != '', link_id, link_url) AS link, message_id, max(variant) AS variant,
       sumIf(sign, kind = 'click' AND verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(sign, kind = 'click' AND verdict = 'machine') AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue,
       sumIf(sign, kind = 'download' AND verdict IN ('human', 'proxy')) AS downloads_human,
       sumIf(sign, kind = 'download' AND verdict = 'machine') AS downloads_filtered
FROM pixeltrack.events_local WHERE kind IN ('click', 'download') AND message_id != ''
GROUP BY tenant, campaign, link, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.link_totals_from_conversions ON CLUSTER 'pixeltrack'
TO pixeltrack.link_totals_local
AS SELECT tenant, campaign, link, message_id, max(variant) AS variant,
       toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered, count() AS conversions, sum(value) AS revenue
FROM pixeltrack.conversions_local WHERE link != '' AND message_id != ''
GROUP BY tenant, campaign, link, message_id;

CREATE TABLE IF NOT EXISTS pixeltrack.client_hourly_local ON CLUSTER 'pixeltrack'
(
    tenant      LowCardinality(String),
    campaign    LowCardinality(String),
    variant     LowCardinality(String),
    hour        DateTime('UTC'),
    kind        LowCardinality(String),
    verdict     LowCardinality(String),
    mail_client LowCardinality(String),
    device      LowCardinality(String),
    os          LowCardinality(String),
    country     LowCardinality(String),
    hits        Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.client_hourly ON CLUSTER 'pixeltrack'
AS pixeltrack.client_hourly_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'client_hourly_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.client_hourly_mv ON CLUSTER 'pixeltrack'
TO pixeltrack.client_hourly_local
AS SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, mail_client, device, os, country,
       sum(sign) AS hits
FROM pixeltrack.events_local
GROUP BY tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country;

CREATE TABLE IF NOT EXISTS pixeltrack.aggregate_hits_local ON CLUSTER 'pixeltrack'
(
    tenant     LowCardinality(String),
    campaign   LowCardinality(String),
    variant    LowCardinality(String),
    link       String,
    kind       LowCardinality(String),
    verdict    LowCardinality(String),
    link_flags UInt8,
    hits       Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, campaign, variant, kind, verdict, link, link_flags)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.aggregate_hits ON CLUSTER 'pixeltrack'
AS pixeltrack.aggregate_hits_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'aggregate_hits_local');

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.aggregate_hits_mv ON CLUSTER 'pixeltrack'
TO pixeltrack.aggregate_hits_local
AS SELECT tenant, campaign, variant, if(link_id != '', link_id, link_url) AS link, kind, verdict, link_flags,
       sum(sign) AS hits
FROM pixeltrack.events_local WHERE message_id = '' AND recipient_id = ''
GROUP BY tenant, campaign, variant, link, kind, verdict, link_flags;

-- 006_views.sql

CREATE OR REPLACE VIEW pixeltrack.campaign_summary ON CLUSTER 'pixeltrack'
AS SELECT
    tenant, campaign, variant, delivered, recipients, unique_opens, unique_human_opens, unique_proxy_only_opens,
    opens_human, opens_proxy, opens_machine, opens_duplicate, machine_only_messages, unique_clicks,
    unique_clicks_of_openers, clicks_human, clicks_filtered, converted_messages, conversions, revenue,
    unsent_engaged,
    unique_opens / nullIf(delivered, 0) AS open_rate,
    opens_machine / nullIf(opens_human + opens_proxy + opens_machine, 0) AS machine_open_share,
    unique_clicks / nullIf(delivered, 0) AS ctr,
    unique_clicks_of_openers / nullIf(unique_opens, 0) AS ctor,
    clicks_filtered / nullIf(clicks_human + clicks_filtered, 0) AS filtered_click_share,
    converted_messages / nullIf(delivered, 0) AS conversion_rate,
    sent_revenue / nullIf(recipients, 0) AS revenue_per_recipient,
    sent, bounced, hard_bounced, soft_bounced, deferred, confirmed_delivered, complained, unsubscribed, replied,
    unsent_reported,
    bounced / nullIf(sent, 0) AS bounce_rate,
    complained / nullIf(delivered, 0) AS complaint_rate,
    unsubscribed / nullIf(delivered, 0) AS unsubscribe_rate,
    replied / nullIf(delivered, 0) AS reply_rate,
    unique_downloads, downloads_human, downloads_filtered,
    unique_downloads / nullIf(delivered, 0) AS download_rate,
    aggregate_sends, aggregate_opens_human, aggregate_opens_proxy, aggregate_opens_machine, aggregate_clicks_human,
    aggregate_clicks_filtered, aggregate_conversions, aggregate_revenue,
    (aggregate_opens_human + aggregate_opens_proxy) / nullIf(aggregate_sends, 0) AS aggregate_opens_per_send,
    aggregate_clicks_human / nullIf(aggregate_sends, 0) AS aggregate_clicks_per_send,
    sent + aggregate_sends AS sends_all,
    (opens_human + opens_proxy + aggregate_opens_human + aggregate_opens_proxy)
        / nullIf(sent + aggregate_sends, 0) AS opens_per_send_all,
    (clicks_human + aggregate_clicks_human) / nullIf(sent + aggregate_sends, 0) AS clicks_per_send_all
FROM (
    SELECT
        tenant, campaign, variant,
        countIf(is_delivered) AS delivered,
        countIf(is_delivered AND oh + op > 0) AS unique_opens,
        countIf(is_delivered AND oh > 0) AS unique_human_opens,
        countIf(is_delivered AND op > 0 AND oh = 0) AS unique_proxy_only_opens,
        sum(oh) AS opens_human,
        sum(op) AS opens_proxy,
        sum(om) AS opens_machine,
        sum(od) AS opens_duplicate,
        countIf(is_delivered AND om > 0 AND oh + op = 0) AS machine_only_messages,
        countIf(is_delivered AND ch > 0) AS unique_clicks,
        countIf(is_delivered AND ch > 0 AND oh + op > 0) AS unique_clicks_of_openers,
        sum(ch) AS clicks_human,
        sum(cf) AS clicks_filtered,
        countIf(is_delivered AND cv > 0) AS converted_messages,
        sum(cv) AS conversions,
        sum(rev) AS revenue,
        sumIf(rev, is_sent) AS sent_revenue,
        countIf(NOT is_sent AND oh + op + ch + cv + dwh > 0) AS unsent_engaged,
        countIf(is_sent) AS sent,
        countIf(is_sent AND is_bounced) AS bounced,
        countIf(is_sent AND is_bounced AND hb > 0) AS hard_bounced,
        countIf(is_sent AND is_bounced AND hb = 0) AS soft_bounced,
        countIf(is_sent AND df > 0) AS deferred,
        countIf(is_delivered AND dl > 0) AS confirmed_delivered,
        countIf(is_delivered AND cp > 0) AS complained,
        countIf(is_delivered AND us > 0) AS unsubscribed,
        countIf(is_delivered AND rp > 0) AS replied,
        countIf(NOT is_sent AND dl + hb + sb + df + cp + us + rp > 0) AS unsent_reported,
        countIf(is_delivered AND dwh > 0) AS unique_downloads,
        sum(dwh) AS downloads_human,
        sum(dwf) AS downloads_filtered
    FROM (
        SELECT tenant, campaign, variant, sent > 0 AS is_sent,
               opens_human AS oh, opens_proxy AS op, opens_machine AS om, opens_duplicate AS od,
               clicks_human AS ch, clicks_filtered AS cf, conversions AS cv, revenue AS rev,
               downloads_human AS dwh, downloads_filtered AS dwf,
               deliveries AS dl, hard_bounces AS hb, soft_bounces AS sb, deferrals AS df, complaints AS cp,
               unsubscribes + platform_unsubscribes AS us, replies AS rp,
               (hb > 0 OR (sb > 0 AND last_soft_bounce_at > last_delivery_at))
                   AND oh + op + ch + rp + cp + us + dwh = 0 AS is_bounced,
               is_sent AND NOT is_bounced AS is_delivered
        FROM pixeltrack.message_totals FINAL
    )
    GROUP BY tenant, campaign, variant
) AS per_message
LEFT JOIN (
    SELECT tenant, campaign, variant, uniqExactMerge(recipients) AS recipients
    FROM pixeltrack.campaign_sends_hourly
    GROUP BY tenant, campaign, variant
) AS sent_to USING (tenant, campaign, variant)
FULL OUTER JOIN (
    SELECT tenant, campaign, variant, sum(sends) AS aggregate_sends,
           sum(opens_h) AS aggregate_opens_human, sum(opens_p) AS aggregate_opens_proxy,
           sum(opens_m) AS aggregate_opens_machine, sum(clicks_h) AS aggregate_clicks_human,
           sum(clicks_f) AS aggregate_clicks_filtered, sum(conv) AS aggregate_conversions,
           sum(rev) AS aggregate_revenue
    FROM (
        SELECT tenant, campaign, variant, sends, 0 AS opens_h, 0 AS opens_p, 0 AS opens_m, 0 AS clicks_h,
               0 AS clicks_f, 0 AS conv, toFloat64(0) AS rev
        FROM pixeltrack.aggregate_sends FINAL
        UNION ALL
        SELECT tenant, campaign, variant, 0,
               sumIf(hits, kind = 'open' AND verdict = 'human'), sumIf(hits, kind = 'open' AND verdict = 'proxy'),
               sumIf(hits, kind = 'open' AND verdict = 'machine'),
               sumIf(hits, kind = 'click' AND verdict IN ('human', 'proxy') AND bitAnd(link_flags, 2) = 0),
               sumIf(hits, kind = 'click' AND verdict = 'machine' AND bitAnd(link_flags, 2) = 0), 0, 0
        FROM pixeltrack.aggregate_hits
        GROUP BY tenant, campaign, variant
        UNION ALL
        SELECT tenant, campaign, variant, 0, 0, 0, 0, 0, 0, count(), sum(value)
        FROM pixeltrack.conversions FINAL
        WHERE message_id = ''
        GROUP BY tenant, campaign, variant
    )
    GROUP BY tenant, campaign, variant
) AS aggregate_part USING (tenant, campaign, variant);

CREATE OR REPLACE VIEW pixeltrack.link_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, link,
       sum(ch) AS clicks_human,
       countIf(ch > 0) AS unique_clicks,
       sum(cf) AS clicks_filtered,
       sum(cv) AS conversions,
       sum(rev) AS revenue,
       clicks_filtered / nullIf(clicks_human + clicks_filtered, 0) AS filtered_share,
       sum(dh) AS downloads_human,
       countIf(dh > 0) AS unique_downloads,
       sum(df) AS downloads_filtered
FROM (
    SELECT tenant, campaign, variant, link, clicks_human AS ch, clicks_filtered AS cf, conversions AS cv,
           revenue AS rev, downloads_human AS dh, downloads_filtered AS df
    FROM pixeltrack.link_totals FINAL
)
GROUP BY tenant, campaign, variant, link;

CREATE OR REPLACE VIEW pixeltrack.client_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, kind, verdict, mail_client, device, os, country, sum(h) AS hits
FROM (SELECT *, hits AS h FROM pixeltrack.client_hourly)
GROUP BY tenant, campaign, variant, kind, verdict, mail_client, device, os, country
HAVING hits != 0;

CREATE OR REPLACE VIEW pixeltrack.campaign_hourly ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, hour, kind, verdict, source, sum(h) AS hits
FROM (SELECT *, hits AS h FROM pixeltrack.verdict_hourly)
GROUP BY tenant, campaign, variant, hour, kind, verdict, source
HAVING hits != 0;

-- 007_privacy.sql

CREATE TABLE IF NOT EXISTS pixeltrack.erasures_local ON CLUSTER 'pixeltrack'
(
    tenant         LowCardinality(String),
    recipient_hash String,
    requested_at   DateTime64(3, 'UTC'),
    rows_deleted   Map(String, UInt64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, requested_at);

CREATE TABLE IF NOT EXISTS pixeltrack.erasures ON CLUSTER 'pixeltrack'
AS pixeltrack.erasures_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'erasures_local', cityHash64(recipient_hash));

CREATE TABLE IF NOT EXISTS pixeltrack.unsubscribes_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (tenant, recipient_hash, campaign)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS pixeltrack.unsubscribes ON CLUSTER 'pixeltrack'
AS pixeltrack.unsubscribes_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'unsubscribes_local', cityHash64(recipient_hash));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_unsubscribes ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.unsubscribes_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- 008_deliveries.sql

CREATE TABLE IF NOT EXISTS pixeltrack.deliveries_local ON CLUSTER 'pixeltrack'
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, message_id, type, event_id)
TTL toDateTime(ts) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.deliveries ON CLUSTER 'pixeltrack'
AS pixeltrack.deliveries_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'deliveries_local', cityHash64(message_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_deliveries ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.deliveries_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.message_totals_from_deliveries ON CLUSTER 'pixeltrack'
TO pixeltrack.message_totals_local
AS SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
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
FROM pixeltrack.deliveries_local WHERE message_id != ''
GROUP BY tenant, campaign, message_id;

-- 010_site.sql

CREATE TABLE IF NOT EXISTS pixeltrack.site_visits_local ON CLUSTER 'pixeltrack'
(
    tenant        LowCardinality(String),
    hit_id        String,
    ts            DateTime64(3, 'UTC'),
    site          LowCardinality(String),
    verdict       LowCardinality(String),
    source        LowCardinality(String),
    reasons       Array(LowCardinality(String)),
    asn           UInt32,
    as_org        LowCardinality(String),
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, site, hit_id)
TTL toDateTime(ts) + INTERVAL 395 DAY
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.site_visits ON CLUSTER 'pixeltrack'
AS pixeltrack.site_visits_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'site_visits_local', cityHash64(hit_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_site_visits ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.site_visits_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE OR REPLACE VIEW pixeltrack.visit_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, message_id, recipient_id, link_id AS link,
       uniqExactIf(click_hit_id, verdict = 'human') AS visits,
       countIf(verdict = 'human') AS pages,
       uniqExactIf(link_url, verdict = 'human') AS distinct_pages,
       countIf(verdict = 'machine') AS machine_pages,
       minIf(ts, verdict = 'human') AS first_visit_at,
       maxIf(ts, verdict = 'human') AS last_visit_at
FROM pixeltrack.events FINAL
WHERE sign = 1 AND kind = 'visit'
GROUP BY tenant, campaign, variant, message_id, recipient_id, link;

CREATE OR REPLACE VIEW pixeltrack.visit_link_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, link,
       countIf(v > 0) AS visitors,
       sum(v) AS visits,
       sum(p) AS pages,
       sum(mp) AS machine_pages,
       sum(p) / nullIf(sum(v), 0) AS pages_per_visit
FROM (
    SELECT tenant, campaign, variant, message_id, link_id AS link,
           uniqExactIf(click_hit_id, verdict = 'human') AS v, countIf(verdict = 'human') AS p,
           countIf(verdict = 'machine') AS mp
    FROM pixeltrack.events FINAL
    WHERE sign = 1 AND kind = 'visit'
    GROUP BY tenant, campaign, variant, message_id, link
)
GROUP BY tenant, campaign, variant, link;

CREATE OR REPLACE VIEW pixeltrack.conversion_timing ON CLUSTER 'pixeltrack'
AS SELECT c.tenant AS tenant, c.campaign AS campaign, c.variant AS variant, c.message_id AS message_id,
       c.recipient_id AS recipient_id, c.link AS link, c.idempotency_key AS idempotency_key,
       c.value AS value, c.currency AS currency, k.ts AS clicked_at, c.ts AS converted_at,
       dateDiff('millisecond', k.ts, c.ts) / 1000 AS seconds_to_convert,
       startsWith(c.idempotency_key, 'site:') AS from_site
FROM (SELECT * FROM pixeltrack.conversions FINAL WHERE click_hit_id != '') AS c
INNER JOIN (SELECT tenant, hit_id, ts FROM pixeltrack.events FINAL WHERE sign = 1 AND kind = 'click') AS k
    ON k.tenant = c.tenant AND k.hit_id = c.click_hit_id;

CREATE OR REPLACE VIEW pixeltrack.site_visit_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, site, toDate(ts) AS day, as_org,
       countIf(verdict = 'human') AS visits,
       countIf(verdict = 'machine') AS machine_visits
FROM pixeltrack.site_visits FINAL
GROUP BY tenant, site, day, as_org;

-- 011_consent.sql

CREATE TABLE IF NOT EXISTS pixeltrack.consents_local ON CLUSTER 'pixeltrack'
(
    tenant        LowCardinality(String),
    recipient_id  String,
    state         LowCardinality(String),
    ts            DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    text_version  String,
    src_topic     LowCardinality(String),
    src_partition Int32,
    src_offset    Int64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, recipient_id, ts, state, source, text_version)
SETTINGS replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE TABLE IF NOT EXISTS pixeltrack.consents ON CLUSTER 'pixeltrack'
AS pixeltrack.consents_local
ENGINE = Distributed('pixeltrack', 'pixeltrack', 'consents_local', cityHash64(tenant, recipient_id));

CREATE MATERIALIZED VIEW IF NOT EXISTS pixeltrack.consumer_positions_from_consents ON CLUSTER 'pixeltrack'
TO pixeltrack.consumer_positions_local
AS SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM pixeltrack.consents_local WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

CREATE OR REPLACE VIEW pixeltrack.consent_state ON CLUSTER 'pixeltrack'
AS SELECT tenant, recipient_id,
       argMax(state, (changed_at, src_offset)) AS state,
       max(changed_at) AS ts,
       argMax(source, (changed_at, src_offset)) AS source,
       argMax(text_version, (changed_at, src_offset)) AS text_version,
       count() AS changes
FROM (SELECT *, ts AS changed_at FROM pixeltrack.consents FINAL)
GROUP BY tenant, recipient_id;

CREATE OR REPLACE VIEW pixeltrack.aggregate_link_stats ON CLUSTER 'pixeltrack'
AS SELECT tenant, campaign, variant, link,
       sumIf(hits, verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(hits, verdict = 'machine') AS clicks_filtered,
       clicks_filtered / nullIf(clicks_human + clicks_filtered, 0) AS filtered_share
FROM pixeltrack.aggregate_hits
WHERE kind = 'click'
GROUP BY tenant, campaign, variant, link
HAVING clicks_human != 0 OR clicks_filtered != 0;

-- 013_origin.sql

ALTER TABLE pixeltrack.events_local ON CLUSTER 'pixeltrack' ADD COLUMN IF NOT EXISTS origin LowCardinality(String) DEFAULT '';

ALTER TABLE pixeltrack.events ON CLUSTER 'pixeltrack' ADD COLUMN IF NOT EXISTS origin LowCardinality(String) DEFAULT '';

CREATE OR REPLACE VIEW pixeltrack.hits ON CLUSTER 'pixeltrack'
AS SELECT * EXCEPT (sign, src_topic, src_partition, src_offset)
FROM pixeltrack.events FINAL
WHERE sign = 1;
