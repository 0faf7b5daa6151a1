-- The site after the click (docs/site.md). A page view on the sender's site with a click id is an event
-- of kind 'visit' in `events` (link_url: the page, origin and path; link_id: the link of the click;
-- click_hit_id: the click's hit id), classified like any hit. A conversion the site script reports is a
-- row of `conversions` whose idempotency key starts with 'site:'. A page view without a click id is a
-- row here, per site only: no address, no user agent, no page; the visitor's organisation (AS name)
-- only where the tenant turns it on.
CREATE TABLE IF NOT EXISTS site_visits
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, site, hit_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000,
    cleanup_delay_period = 5, max_cleanup_delay_period = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS consumer_positions_from_site_visits TO consumer_positions AS
SELECT src_topic, src_partition, max(src_offset) AS max_offset
FROM site_visits WHERE src_partition >= 0
GROUP BY src_topic, src_partition;

-- Visits and pages per message and link: a visit is one click's stay on the site (its pages share the
-- click's id), pages are page views by people; repeats within seconds (a reload) are duplicates, and
-- machines (headless browsers, bots, scanners running the page's scripts) are counted apart.
CREATE OR REPLACE VIEW visit_stats AS
SELECT tenant, campaign, variant, message_id, recipient_id, link_id AS link,
       uniqExactIf(click_hit_id, verdict = 'human') AS visits,
       countIf(verdict = 'human') AS pages,
       uniqExactIf(link_url, verdict = 'human') AS distinct_pages,
       countIf(verdict = 'machine') AS machine_pages,
       minIf(ts, verdict = 'human') AS first_visit_at,
       maxIf(ts, verdict = 'human') AS last_visit_at
FROM events FINAL
WHERE sign = 1 AND kind = 'visit'
GROUP BY tenant, campaign, variant, message_id, recipient_id, link;

-- The same per campaign, variant and link: visitors are the messages with a person's visit.
CREATE OR REPLACE VIEW visit_link_stats AS
SELECT tenant, campaign, variant, link,
       countIf(v > 0) AS visitors,
       sum(v) AS visits,
       sum(p) AS pages,
       sum(mp) AS machine_pages,
       sum(p) / nullIf(sum(v), 0) AS pages_per_visit
FROM (
    SELECT tenant, campaign, variant, message_id, link_id AS link,
           uniqExactIf(click_hit_id, verdict = 'human') AS v, countIf(verdict = 'human') AS p,
           countIf(verdict = 'machine') AS mp
    FROM events FINAL
    WHERE sign = 1 AND kind = 'visit'
    GROUP BY tenant, campaign, variant, message_id, link
)
GROUP BY tenant, campaign, variant, link;

-- Time from click to conversion, for every conversion that names its click (the site script's always
-- do; the API's when posted with a click id). from_site: reported by the site script.
CREATE OR REPLACE VIEW conversion_timing AS
SELECT c.tenant AS tenant, c.campaign AS campaign, c.variant AS variant, c.message_id AS message_id,
       c.recipient_id AS recipient_id, c.link AS link, c.idempotency_key AS idempotency_key,
       c.value AS value, c.currency AS currency, k.ts AS clicked_at, c.ts AS converted_at,
       dateDiff('millisecond', k.ts, c.ts) / 1000 AS seconds_to_convert,
       startsWith(c.idempotency_key, 'site:') AS from_site
FROM (SELECT * FROM conversions FINAL WHERE click_hit_id != '') AS c
INNER JOIN (SELECT tenant, hit_id, ts FROM events FINAL WHERE sign = 1 AND kind = 'click') AS k
    ON k.tenant = c.tenant AND k.hit_id = c.click_hit_id;

-- Page views without a click id, per site and day (and organisation where the tenant turns it on).
CREATE OR REPLACE VIEW site_visit_stats AS
SELECT tenant, site, toDate(ts) AS day, as_org,
       countIf(verdict = 'human') AS visits,
       countIf(verdict = 'machine') AS machine_visits
FROM site_visits FINAL
GROUP BY tenant, site, day, as_org;
