-- Aggregates fed by materialized views at insert time. Every counter sums `sign`, so a verdict
-- revision (a -1 row for the old verdict, a +1 row for the new) moves a hit from one counter to the
-- other: the aggregates always equal a recount of final verdicts from raw events. Unique counts come
-- from per-message rows (a message counts once if its summed counter is > 0), which stays exact
-- under revisions where uniq states could not subtract.

-- Delivered per campaign, variant and send hour: exact distinct messages and recipients. Recipients are
-- counted by their keyed hash (the processors fill sends.recipient_key): a uniqExact state keeps a hash of
-- what it counts, and a hash of the id itself would let anyone test whether an erased id was ever sent to.
-- (A send inserted without recipient_key, by hand, counts by its id.)
CREATE TABLE IF NOT EXISTS campaign_sends_hourly
(
    tenant     LowCardinality(String),
    campaign   LowCardinality(String),
    variant    LowCardinality(String),
    hour       DateTime('UTC'),
    delivered  AggregateFunction(uniqExact, String),
    recipients AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, campaign, variant, hour)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_sends_hourly_mv TO campaign_sends_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(sent_at) AS hour,
       uniqExactState(message_id) AS delivered,
       uniqExactState(if(recipient_key != '', recipient_key, recipient_id)) AS recipients
FROM sends
GROUP BY tenant, campaign, variant, hour;

-- One row per message once merged: was it sent (and in which variant), its opens by verdict, clicks,
-- conversions and revenue. Sends, events and conversions all feed it; the variant is the max() of what
-- they carry, so a conversion processed before its send (variant unknown then) still lands in the
-- message's variant. Read it with FINAL (or GROUP BY message and sum/max): campaign_summary does.
-- Delivery events (unsubscribes among them) feed its last columns (008_deliveries.sql; a view leaving
-- a column out writes its zero).
CREATE TABLE IF NOT EXISTS message_totals
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
ENGINE = AggregatingMergeTree
ORDER BY (tenant, campaign, message_id)
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_totals_from_sends TO message_totals AS
SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(1) AS sent, min(sent_at) AS first_sent_at,
       toInt64(0) AS opens_human, toInt64(0) AS opens_proxy, toInt64(0) AS opens_machine,
       toInt64(0) AS opens_duplicate, toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue
FROM sends
GROUP BY tenant, campaign, message_id;

-- Clicks on a wrapped unsubscribe link (link flag 2) are not engagement: link_totals and the hourly
-- tables keep them (per link, per kind), the per-message click counters leave them out. Opens through
-- the email's own images are kind 'open' (link flag 8): one reading is one open, however many it loads.
-- Downloads (/d/ links to documents) are counted apart from clicks, judged as clicks are. Hits of
-- campaign-level tokens (no message id) are counted in aggregate_hits instead.
CREATE MATERIALIZED VIEW IF NOT EXISTS message_totals_from_events TO message_totals AS
SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
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
FROM events WHERE message_id != ''
GROUP BY tenant, campaign, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_totals_from_conversions TO message_totals AS
SELECT tenant, campaign, message_id, max(variant) AS variant, max(recipient_id) AS recipient_id,
       toUInt8(0) AS sent, toDateTime64('2106-01-01 00:00:00', 3, 'UTC') AS first_sent_at,
       toInt64(0) AS opens_human, toInt64(0) AS opens_proxy, toInt64(0) AS opens_machine,
       toInt64(0) AS opens_duplicate, toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered,
       count() AS conversions, sum(value) AS revenue
FROM conversions WHERE message_id != ''
GROUP BY tenant, campaign, message_id;

-- Machine opens by source (apple_mpp, gmail_prefetch, scanner, ...) and everything by hour.
CREATE TABLE IF NOT EXISTS verdict_hourly
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
ENGINE = SummingMergeTree
ORDER BY (tenant, campaign, variant, hour, kind, verdict, source)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS verdict_hourly_mv TO verdict_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, source, sum(sign) AS hits
FROM events
GROUP BY tenant, campaign, variant, hour, kind, verdict, source;

-- Clicks per link and message: totals, unique clickers, filtered clicks, conversions on the link; and
-- downloads of a document link (kind 'download'), people's and filtered.
CREATE TABLE IF NOT EXISTS link_totals
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
ENGINE = AggregatingMergeTree
ORDER BY (tenant, campaign, link, message_id)
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_totals_from_events TO link_totals AS
SELECT tenant, campaign, if(link_id != '', link_id, link_url) AS link, message_id, max(variant) AS variant,
       sumIf(sign, kind = 'click' AND verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(sign, kind = 'click' AND verdict = 'machine') AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue,
       sumIf(sign, kind = 'download' AND verdict IN ('human', 'proxy')) AS downloads_human,
       sumIf(sign, kind = 'download' AND verdict = 'machine') AS downloads_filtered
FROM events WHERE kind IN ('click', 'download') AND message_id != ''
GROUP BY tenant, campaign, link, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_totals_from_conversions TO link_totals AS
SELECT tenant, campaign, link, message_id, max(variant) AS variant,
       toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered, count() AS conversions, sum(value) AS revenue
FROM conversions WHERE link != '' AND message_id != ''
GROUP BY tenant, campaign, link, message_id;

-- Hits by mail client, device, OS and country (device and place are unknown behind proxies).
CREATE TABLE IF NOT EXISTS client_hourly
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
ENGINE = SummingMergeTree
ORDER BY (tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS client_hourly_mv TO client_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, mail_client, device, os, country,
       sum(sign) AS hits
FROM events
GROUP BY tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country;

-- Hits of campaign-level (aggregate) tokens: no message, no recipient. They count here, per campaign,
-- variant, link (empty for opens), kind, verdict and link flags, and in verdict_hourly and client_hourly
-- like any hit; never in message_totals or link_totals, which are per message.
CREATE TABLE IF NOT EXISTS aggregate_hits
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
ENGINE = SummingMergeTree
ORDER BY (tenant, campaign, variant, kind, verdict, link, link_flags)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS aggregate_hits_mv TO aggregate_hits AS
SELECT tenant, campaign, variant, if(link_id != '', link_id, link_url) AS link, kind, verdict, link_flags,
       sum(sign) AS hits
FROM events WHERE message_id = '' AND recipient_id = ''
GROUP BY tenant, campaign, variant, link, kind, verdict, link_flags;
