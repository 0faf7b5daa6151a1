-- Consent to individual tracking, per tenant and recipient, with its history: one row per change
-- (granted, denied, unknown), when, through what (api, csv, sdk, preferences) and the version of the
-- text the recipient saw. The same change posted twice (same time, state, source and text) is one row
-- once merged: read with FINAL (consent_state does). Kept without TTL: it is the record of consent.
CREATE TABLE IF NOT EXISTS consents
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, recipient_id, ts, state, source, text_version)
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_consents TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM consents WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- Each recipient's consent now: the latest change by time (then by arrival), and how many changes
-- the history holds.
CREATE OR REPLACE VIEW consent_state AS
SELECT tenant, recipient_id,
       argMax(state, (changed_at, src_offset)) AS state,
       max(changed_at) AS ts,
       argMax(source, (changed_at, src_offset)) AS source,
       argMax(text_version, (changed_at, src_offset)) AS text_version,
       count() AS changes
FROM (SELECT *, ts AS changed_at FROM consents FINAL)
GROUP BY tenant, recipient_id;

-- Clicks of campaign-level (aggregate) links per link, as link_stats counts individual ones (an
-- unsubscribe link's clicks included, per link); no unique clickers: there is no one to tell apart.
CREATE OR REPLACE VIEW aggregate_link_stats AS
SELECT tenant, campaign, variant, link,
       sumIf(hits, verdict IN ('human', 'proxy')) AS clicks_human,
       sumIf(hits, verdict = 'machine') AS clicks_filtered,
       clicks_filtered / nullIf(clicks_human + clicks_filtered, 0) AS filtered_share
FROM aggregate_hits
WHERE kind = 'click'
GROUP BY tenant, campaign, variant, link
HAVING clicks_human != 0 OR clicks_filtered != 0;
