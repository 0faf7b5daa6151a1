-- Raw events: one row per classified hit, with revisions written as collapsing pairs.
-- A verdict revision writes (-1, old revision) and (+1, new revision): sum(sign) counts only final
-- verdicts, and `FINAL` (or the `hits` view) shows one row per hit. src_* locate the Kafka record
-- the row came from, so a restarted processor resumes after what ClickHouse already holds.
CREATE TABLE IF NOT EXISTS events
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
    -- A site visit's (kind 'visit', docs/site.md): the hit id of the click that brought the visitor.
    click_hit_id  String,
    -- Lets a processor check cheaply whether a re-sent hit id is already stored.
    INDEX hit_id_bloom hit_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = VersionedCollapsingMergeTree(sign, revision)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, campaign, kind, message_id, hit_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

-- One row per hit with its final verdict: what analysts query for raw events.
CREATE OR REPLACE VIEW hits AS
SELECT * EXCEPT (sign, src_topic, src_partition, src_offset)
FROM events FINAL
WHERE sign = 1;
