-- Aggregates fed by materialized views at insert time. Every counter sums `sign`, so a verdict
-- revision (a -1 row for the old verdict, a +1 row for the new) moves a hit from one counter to the
-- other: the aggregates always equal a recount of final verdicts from raw events. Unique counts come
-- from per-message rows (a message counts once if its summed counter is > 0), which stays exact
-- under revisions where uniq states could not subtract.

-- Delivered per campaign, variant and send hour: exact distinct messages and recipients.
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
ORDER BY (tenant, campaign, variant, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_sends_hourly_mv TO campaign_sends_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(sent_at) AS hour,
       uniqExactState(message_id) AS delivered, uniqExactState(recipient_id) AS recipients
FROM sends
GROUP BY tenant, campaign, variant, hour;

-- Engagement per message and hour: opens by verdict, clicks, conversions, revenue.
CREATE TABLE IF NOT EXISTS message_engagement
(
    tenant          LowCardinality(String),
    campaign        LowCardinality(String),
    variant         LowCardinality(String),
    message_id      String,
    recipient_id    String,
    hour            DateTime('UTC'),
    opens_human     Int64,
    opens_proxy     Int64,
    opens_machine   Int64,
    opens_duplicate Int64,
    clicks_human    Int64,
    clicks_filtered Int64,
    conversions     Int64,
    revenue         Float64
)
ENGINE = SummingMergeTree
ORDER BY (tenant, campaign, variant, message_id, recipient_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS message_engagement_from_events TO message_engagement AS
SELECT tenant, campaign, variant, message_id, recipient_id, toStartOfHour(ts) AS hour,
       sumIf(sign, kind = 'open' AND verdict = 'human') AS opens_human,
       sumIf(sign, kind = 'open' AND verdict = 'proxy') AS opens_proxy,
       sumIf(sign, kind = 'open' AND verdict = 'machine') AS opens_machine,
       sumIf(sign, kind = 'open' AND verdict = 'duplicate') AS opens_duplicate,
       sumIf(sign, kind = 'click' AND verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(sign, kind = 'click' AND verdict = 'machine') AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue
FROM events
GROUP BY tenant, campaign, variant, message_id, recipient_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_engagement_from_conversions TO message_engagement AS
SELECT tenant, campaign, variant, message_id, recipient_id, toStartOfHour(ts) AS hour,
       toInt64(0) AS opens_human, toInt64(0) AS opens_proxy, toInt64(0) AS opens_machine,
       toInt64(0) AS opens_duplicate, toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered,
       count() AS conversions, sum(value) AS revenue
FROM conversions
GROUP BY tenant, campaign, variant, message_id, recipient_id, hour;

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
ORDER BY (tenant, campaign, variant, hour, kind, verdict, source);

CREATE MATERIALIZED VIEW IF NOT EXISTS verdict_hourly_mv TO verdict_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, source, sum(sign) AS hits
FROM events
GROUP BY tenant, campaign, variant, hour, kind, verdict, source;

-- Clicks per link and message: totals, unique clickers, filtered clicks.
CREATE TABLE IF NOT EXISTS link_engagement
(
    tenant          LowCardinality(String),
    campaign        LowCardinality(String),
    variant         LowCardinality(String),
    link            String,
    message_id      String,
    clicks_human    Int64,
    clicks_filtered Int64,
    conversions     Int64,
    revenue         Float64
)
ENGINE = SummingMergeTree
ORDER BY (tenant, campaign, variant, link, message_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS link_engagement_from_events TO link_engagement AS
SELECT tenant, campaign, variant, if(link_id != '', link_id, link_url) AS link, message_id,
       sumIf(sign, verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(sign, verdict = 'machine') AS clicks_filtered,
       toInt64(0) AS conversions, toFloat64(0) AS revenue
FROM events WHERE kind = 'click'
GROUP BY tenant, campaign, variant, link, message_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_engagement_from_conversions TO link_engagement AS
SELECT tenant, campaign, variant, link, message_id,
       toInt64(0) AS clicks_human, toInt64(0) AS clicks_filtered, count() AS conversions, sum(value) AS revenue
FROM conversions WHERE link != ''
GROUP BY tenant, campaign, variant, link, message_id;

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
ORDER BY (tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country);

CREATE MATERIALIZED VIEW IF NOT EXISTS client_hourly_mv TO client_hourly AS
SELECT tenant, campaign, variant, toStartOfHour(ts) AS hour, kind, verdict, mail_client, device, os, country,
       sum(sign) AS hits
FROM events
GROUP BY tenant, campaign, variant, hour, kind, verdict, mail_client, device, os, country;
