-- Views for analysts. They read the aggregates, never raw events. Rates count opens as human + proxy
-- (a proxy open is a person's open seen through Gmail's or Yahoo's image proxy); machine opens
-- (Apple MPP, prefetchers, scanners, bots) and duplicates are reported beside, never inside, a rate.
CREATE VIEW IF NOT EXISTS campaign_summary AS
WITH
per_message AS (
    -- A message's variant comes from its send when registered (a conversion posted by message id may be
    -- processed before its send), else from its tracked hits.
    SELECT tenant, campaign, if(s.send_variant != '', s.send_variant, e.hit_variant) AS variant, message_id,
           oh, op, om, od, ch, cf, cv, rev
    FROM (
        SELECT tenant, campaign, message_id, anyIf(variant, variant != '') AS hit_variant,
               sum(opens_human) AS oh, sum(opens_proxy) AS op, sum(opens_machine) AS om, sum(opens_duplicate) AS od,
               sum(clicks_human) AS ch, sum(clicks_filtered) AS cf, sum(conversions) AS cv, sum(revenue) AS rev
        FROM message_engagement
        GROUP BY tenant, campaign, message_id
    ) AS e
    LEFT JOIN (
        SELECT tenant, campaign, message_id, any(variant) AS send_variant
        FROM sends
        GROUP BY tenant, campaign, message_id
    ) AS s USING (tenant, campaign, message_id)
),
engaged AS (
    SELECT tenant, campaign, variant,
           countIf(oh + op > 0) AS unique_opens,
           countIf(oh > 0) AS unique_human_opens,
           countIf(op > 0 AND oh = 0) AS unique_proxy_only_opens,
           countIf(om > 0 AND oh + op = 0) AS machine_only_messages,
           sum(oh) AS opens_human, sum(op) AS opens_proxy, sum(om) AS opens_machine, sum(od) AS opens_duplicate,
           countIf(ch > 0) AS unique_clicks, sum(ch) AS clicks_human, sum(cf) AS clicks_filtered,
           countIf(ch > 0 AND oh + op > 0) AS unique_clicks_of_openers,
           countIf(cv > 0) AS converted_messages, sum(cv) AS conversions, sum(rev) AS revenue
    FROM per_message
    GROUP BY tenant, campaign, variant
),
sent AS (
    SELECT tenant, campaign, variant, uniqExactMerge(delivered) AS delivered, uniqExactMerge(recipients) AS recipients
    FROM campaign_sends_hourly
    GROUP BY tenant, campaign, variant
)
SELECT
    tenant, campaign, variant,
    s.delivered AS delivered,
    s.recipients AS recipients,
    e.unique_opens AS unique_opens,
    e.unique_human_opens AS unique_human_opens,
    e.opens_human AS opens_human,
    e.opens_proxy AS opens_proxy,
    e.opens_machine AS opens_machine,
    e.opens_duplicate AS opens_duplicate,
    e.machine_only_messages AS machine_only_messages,
    e.unique_clicks AS unique_clicks,
    e.clicks_human AS clicks_human,
    e.clicks_filtered AS clicks_filtered,
    e.converted_messages AS converted_messages,
    e.conversions AS conversions,
    e.revenue AS revenue,
    e.unique_opens / nullIf(s.delivered, 0) AS open_rate,
    e.opens_machine / nullIf(e.opens_human + e.opens_proxy + e.opens_machine, 0) AS machine_open_share,
    e.unique_clicks / nullIf(s.delivered, 0) AS ctr,
    e.unique_clicks_of_openers / nullIf(e.unique_opens, 0) AS ctor,
    e.clicks_filtered / nullIf(e.clicks_human + e.clicks_filtered, 0) AS filtered_click_share,
    e.converted_messages / nullIf(s.delivered, 0) AS conversion_rate,
    e.revenue / nullIf(s.delivered, 0) AS revenue_per_recipient
FROM sent AS s
FULL OUTER JOIN engaged AS e USING (tenant, campaign, variant);

CREATE VIEW IF NOT EXISTS link_stats AS
SELECT tenant, campaign, variant, link,
       sum(ch) AS clicks_human,
       countIf(ch > 0) AS unique_clicks,
       sum(cf) AS clicks_filtered,
       sum(cv) AS conversions,
       sum(rev) AS revenue,
       sum(cf) / nullIf(sum(ch) + sum(cf), 0) AS filtered_share
FROM (
    SELECT tenant, campaign, variant, link, message_id,
           sum(clicks_human) AS ch, sum(clicks_filtered) AS cf, sum(conversions) AS cv, sum(revenue) AS rev
    FROM link_engagement
    GROUP BY tenant, campaign, variant, link, message_id
)
GROUP BY tenant, campaign, variant, link;

CREATE VIEW IF NOT EXISTS client_stats AS
SELECT tenant, campaign, variant, kind, verdict, mail_client, device, os, country, sum(h) AS hits
FROM (SELECT *, hits AS h FROM client_hourly)
GROUP BY tenant, campaign, variant, kind, verdict, mail_client, device, os, country
HAVING hits != 0;

CREATE VIEW IF NOT EXISTS campaign_hourly AS
SELECT tenant, campaign, variant, hour, kind, verdict, source, sum(h) AS hits
FROM (SELECT *, hits AS h FROM verdict_hourly)
GROUP BY tenant, campaign, variant, hour, kind, verdict, source
HAVING hits != 0;
