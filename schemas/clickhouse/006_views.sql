-- Views for analysts. They read the aggregates, never raw events. Rates count opens as human + proxy
-- (a proxy open is a person's open seen through Gmail's or Yahoo's image proxy); machine opens
-- (Apple MPP, prefetchers, scanners, bots) and duplicates are reported beside, never inside, a rate.
-- Views are replaced on every migration (they hold no data), so an upgrade's new definitions land.
--
-- Per-message counts come from message_totals FINAL (one row per message, exact under revisions);
-- distinct recipients from campaign_sends_hourly's uniqExact states, merged per variant (hashing a
-- million-message campaign's recipient ids again at every read cost more than the rest together).
-- Unique counts (and hence every rate) count the messages of registered sends only, so a rate never
-- passes 100%: engagement of messages whose send is not (yet) registered is counted apart, in
-- unsent_engaged, and its hits stay in the totals (opens_*, clicks_*, conversions, revenue).
--
-- sent: registered sends. delivered: sent minus bounced, where a message is bounced when it has a hard
-- bounce, or a soft bounce with no delivery reported at or after it (a soft bounce followed by a
-- delivery is delivered), and no person's open, click, download, reply, complaint or unsubscribe shows it
-- arrived. Every unique count and rate but bounce_rate (bounced / sent) is over delivered messages.
CREATE OR REPLACE VIEW campaign_summary AS
SELECT
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
        -- FINAL merges each message's rows at read time: one row per message, exact under revisions.
        SELECT tenant, campaign, variant, sent > 0 AS is_sent,
               opens_human AS oh, opens_proxy AS op, opens_machine AS om, opens_duplicate AS od,
               clicks_human AS ch, clicks_filtered AS cf, conversions AS cv, revenue AS rev,
               downloads_human AS dwh, downloads_filtered AS dwf,
               deliveries AS dl, hard_bounces AS hb, soft_bounces AS sb, deferrals AS df, complaints AS cp,
               unsubscribes + platform_unsubscribes AS us, replies AS rp,
               (hb > 0 OR (sb > 0 AND last_soft_bounce_at > last_delivery_at))
                   AND oh + op + ch + rp + cp + us + dwh = 0 AS is_bounced,
               is_sent AND NOT is_bounced AS is_delivered
        FROM message_totals FINAL
    )
    GROUP BY tenant, campaign, variant
) AS per_message
LEFT JOIN (
    SELECT tenant, campaign, variant, uniqExactMerge(recipients) AS recipients
    FROM campaign_sends_hourly
    GROUP BY tenant, campaign, variant
) AS sent_to USING (tenant, campaign, variant)
-- The campaign-level (aggregate) part: emails and hits without a message or recipient id (docs/consent.md).
-- A FULL JOIN: a variant may be tracked in aggregate only.
FULL OUTER JOIN (
    SELECT tenant, campaign, variant, sum(sends) AS aggregate_sends,
           sum(opens_h) AS aggregate_opens_human, sum(opens_p) AS aggregate_opens_proxy,
           sum(opens_m) AS aggregate_opens_machine, sum(clicks_h) AS aggregate_clicks_human,
           sum(clicks_f) AS aggregate_clicks_filtered, sum(conv) AS aggregate_conversions,
           sum(rev) AS aggregate_revenue
    FROM (
        SELECT tenant, campaign, variant, sends, 0 AS opens_h, 0 AS opens_p, 0 AS opens_m, 0 AS clicks_h,
               0 AS clicks_f, 0 AS conv, toFloat64(0) AS rev
        FROM aggregate_sends FINAL
        UNION ALL
        SELECT tenant, campaign, variant, 0,
               sumIf(hits, kind = 'open' AND verdict = 'human'), sumIf(hits, kind = 'open' AND verdict = 'proxy'),
               sumIf(hits, kind = 'open' AND verdict = 'machine'),
               sumIf(hits, kind = 'click' AND verdict IN ('human', 'proxy') AND bitAnd(link_flags, 2) = 0),
               sumIf(hits, kind = 'click' AND verdict = 'machine' AND bitAnd(link_flags, 2) = 0), 0, 0
        FROM aggregate_hits
        GROUP BY tenant, campaign, variant
        UNION ALL
        -- Conversions without a message (of an aggregate click, or any under PIXELTRACK_TRACKING=aggregate).
        SELECT tenant, campaign, variant, 0, 0, 0, 0, 0, 0, count(), sum(value)
        FROM conversions FINAL
        WHERE message_id = ''
        GROUP BY tenant, campaign, variant
    )
    GROUP BY tenant, campaign, variant
) AS aggregate_part USING (tenant, campaign, variant);

CREATE OR REPLACE VIEW link_stats AS
SELECT tenant, campaign, variant, link,
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
    FROM link_totals FINAL
)
GROUP BY tenant, campaign, variant, link;

CREATE OR REPLACE VIEW client_stats AS
SELECT tenant, campaign, variant, kind, verdict, mail_client, device, os, country, sum(h) AS hits
FROM (SELECT *, hits AS h FROM client_hourly)
GROUP BY tenant, campaign, variant, kind, verdict, mail_client, device, os, country
HAVING hits != 0;

CREATE OR REPLACE VIEW campaign_hourly AS
SELECT tenant, campaign, variant, hour, kind, verdict, source, sum(h) AS hits
FROM (SELECT *, hits AS h FROM verdict_hourly)
GROUP BY tenant, campaign, variant, hour, kind, verdict, source
HAVING hits != 0;
