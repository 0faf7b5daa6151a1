"""HTML of the campaign list and of one campaign: pure functions from rows to escaped markup.

Longer than 400 lines because a campaign page is one page of a dozen panels (KPIs, funnel, A/B, charts,
sources, links, audience) and its drill-down, each a few lines over the same escaping and layout helpers.

A page is its panels inside the shell; the refresh endpoint returns the same panels by name, so what
the first render shows and what polling swaps in come from one function.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from pixeltrack.analytics.report import METRICS, Comparison, ab_verdict, names_a_winner
from pixeltrack.dashboard import charts
from pixeltrack.dashboard.format import DASH, count, money, p_value, pct, points, ratio, when
from pixeltrack.dashboard.funnel import funnel_panel
from pixeltrack.dashboard.queries import EXAMPLE_LIMIT
from pixeltrack.dashboard.rows import CampaignData, CampaignRow, ExampleHit, LinkRow, SourceRow
from pixeltrack.dashboard.templates import page
from schemas import reasons as meaning

AB_METRICS = ("open", "click", "conversion")  # the verdict on clicks leads, as in `pixeltrack report`


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def campaign_href(campaign: str) -> str:
    """Relative, so the dashboard works under any path prefix a reverse proxy gives it."""
    return "campaign?name=" + quote(campaign, safe="")


def panels_href(campaign: str | None) -> str:
    return "panels" if campaign is None else "campaign/panels?name=" + quote(campaign, safe="")


def _query(**params: str) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items() if v or k in ("name", "source"))


def examples_href(campaign: str, source: str, side: str, kind: str = "", reason: str = "") -> str:
    """The drill-down of a campaign's hits from one source, on its own page beside the campaign's."""
    return "hits?" + _query(name=campaign, source=source, side=side, kind=kind, reason=reason)


def examples_panels_href(campaign: str, source: str, side: str, kind: str = "", reason: str = "") -> str:
    """Relative, like every link: the drill-down is at hits?…, its panels at hits/panels?…"""
    return "hits/panels?" + _query(name=campaign, source=source, side=side, kind=kind, reason=reason)


def variant_name(v: Any) -> str:
    return str(v) if v else "(none)"


def updated_at(now: datetime) -> str:
    return now.strftime("%H:%M:%S UTC")


def _section(name: str, title: str, note: str, inner: str, span: int) -> str:
    """A card; `data-panel` names what the refresh endpoint swaps."""
    return (f'<section class="card span-{span}" aria-labelledby="h-{name}"><h2 id="h-{name}">{_e(title)}</h2>'
            f'<p class="sub">{_e(note)}</p><div data-panel="{name}">{inner}</div></section>')


def _table(name: str, headers: Sequence[str], body: str) -> str:
    """A table that scrolls sideways inside its card rather than overflow it."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    return (f'<div class="scroll"><table class="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


# ---- campaign list -------------------------------------------------------------------------------

def list_panels(rows: Sequence[CampaignRow]) -> dict[str, str]:
    if not rows:
        return {"campaigns": '<p class="empty">No campaigns yet: they appear here as their sends and hits '
                              "are processed.</p>"}
    body = "".join(
        f'<tr data-campaign="{_e(r.campaign)}"><td class="name"><a href="{_e(campaign_href(r.campaign))}">'
        f"{_e(r.campaign or '(no name)')}</a></td>"
        f'<td data-metric="delivered">{count(r.delivered)}</td>'
        f'<td data-metric="open_rate">{pct(r.open_rate)}</td>'
        f'<td data-metric="ctr">{pct(r.ctr)}</td>'
        f'<td data-metric="machine_share">{pct(r.machine_share)}</td>'
        f'<td data-metric="last_activity">{_e(when(r.last_activity))}</td></tr>'
        for r in rows)
    return {"campaigns": _table("campaigns", ("campaign", "delivered", "open rate", "CTR", "machine share",
                                               "last activity"), body)}


def list_page(rows: Sequence[CampaignRow], tenant: str, refresh_seconds: int, now: datetime) -> str:
    panels = list_panels(rows)
    note = ("Opens count people (human + proxied); machine share is machine open hits among all open hits. "
            "Rates are of delivered messages.")
    body = (f"<h1>Campaigns</h1><p class=\"sub\">{_tenant_note(tenant)}</p>"
            f'<div class="grid">{_section("campaigns", "All campaigns", note, panels["campaigns"], 12)}</div>')
    return page("Campaigns · pixeltrack", "<strong>Campaigns</strong>", body, panels_href(None), refresh_seconds,
                _e(updated_at(now)))


def _tenant_note(tenant: str) -> str:
    return f"Tenant {_e(tenant)}" if tenant else "Default tenant"


# ---- one campaign --------------------------------------------------------------------------------

def campaign_panels(data: CampaignData) -> dict[str, str]:
    return {"kpis": _kpis(data), "funnel": funnel_panel(data), "ab": _ab(data), "opens": _opens(data),
            "clicks": _clicks(data), "clients": _audience(data.clients, "clients", "Mail clients"),
            "devices": _audience(data.devices, "devices", "Devices"),
            "countries": _countries(data), "links": _links(data.links), "sources": _sources(data)}


def campaign_page(data: CampaignData, tenant: str, refresh_seconds: int, now: datetime) -> str:
    p = campaign_panels(data)
    t = data.totals
    variants = ", ".join(variant_name(v["variant"]) for v in data.variants)
    first = data.hourly[0].hour if data.hourly else None
    body = (
        f"<h1>{_e(data.campaign or '(no name)')}</h1>"
        f'<p class="sub">{_tenant_note(tenant)} · variants {_e(variants)} · {count(t.delivered)} delivered'
        f"{' · first hit ' + _e(when(first)) if first else ''}</p>"
        f'<div class="kpis" data-panel="kpis">{p["kpis"]}</div>'
        '<div class="grid">'
        + _section("ab", "A/B test", "Variants side by side; opens, clicks and conversions count unique messages. "
                   "Each comparison is the leading variant against another: the difference of rates with its "
                   "95% confidence interval and two-sided p-value.",
                   p["ab"], 8)
        + _section("funnel", "Funnel", "Unique messages at each step: sent (registered sends), delivered (sent "
                   "minus bounces), opened by people (human + proxy), clicked by people, converted; bounces and "
                   "complaints beside. A message can be clicked without its pixel loading, so clicked is not a "
                   "subset of opened.", p["funnel"], 4)
        + _section("sources", "Who fetched: machines and people by source",
                   "Machine opens and filtered clicks are not counted; each source with its most frequent reasons "
                   "(a hit can have several). Follow a source or a reason for example hits. A fast open alone is "
                   "no machine signal: people read at once too.", p["sources"], 12)
        + _section("opens", "Opens over time", f"Open hits per {charts.bucket_name(data.bucket_seconds)} by "
                   "verdict: human, proxied (a person behind Gmail's or Yahoo's image proxy) and machine (privacy "
                   "prefetch, scanners, bots).", p["opens"], 12)
        + _section("clicks", "Clicks over time", f"Click hits per {charts.bucket_name(data.bucket_seconds)}: "
                   "people's clicks against the ones filtered out as machines (link scanners, prefetch, honeypot "
                   "links).", p["clicks"], 12)
        + _section("clients", "Mail clients", "Opens by people, proxied ones included.", p["clients"], 4)
        + _section("devices", "Devices", "Opens by people where the device is known (never behind a proxy).",
                   p["devices"], 4)
        + _section("countries", "Countries", "Opens by people where the place is known: direct opens with a geo "
                   "database (never behind a proxy).", p["countries"], 4)
        + _section("links", "Links", "Clicks per link over all variants; filtered clicks are machines'.",
                   p["links"], 12)
        + "</div>")
    crumbs = f'<a href="./">Campaigns</a> / <strong>{_e(data.campaign or "(no name)")}</strong>'
    return page(f"{_e(data.campaign)} · pixeltrack", crumbs, body, _e(panels_href(data.campaign)), refresh_seconds,
                _e(updated_at(now)))


def error_page(title: str, message: str, refresh_seconds: int, now: datetime, panels_url: str = "panels",
               reload_when_back: bool = False) -> str:
    body = (f'<h1>{_e(title)}</h1><div class="error" role="alert"><p>{_e(message)}</p>'
            '<p><a href="./">All campaigns</a></p></div>')
    return page(f"{_e(title)} · pixeltrack", f"<strong>{_e(title)}</strong>", body, _e(panels_url),
                refresh_seconds, _e(updated_at(now)), reload_when_back)


def _kpi(metric: str, label: str, value: str, note: str) -> str:
    return (f'<div class="kpi"><div class="label">{_e(label)}</div>'
            f'<div class="value" data-metric="{metric}">{_e(value)}</div><div class="note">{note}</div></div>')


def _kpis(data: CampaignData) -> str:
    t = data.totals
    return "".join((
        _kpi("delivered", "Delivered", count(t.delivered), f'of <b data-metric="sent">{count(t.sent)}</b> sent · '
             f"{len(data.variants)} variant" + ("s" if len(data.variants) != 1 else "")),
        _kpi("unique_opens", "Unique opens", count(t.unique_opens),
             f'open rate <b data-metric="open_rate">{pct(t.open_rate)}</b>'),
        _kpi("unique_clicks", "Unique clicks", count(t.unique_clicks),
             f'CTR <b data-metric="ctr">{pct(t.ctr)}</b> · CTOR <b data-metric="ctor">{pct(t.ctor)}</b>'),
        _kpi("converted_messages", "Conversions", count(t.converted_messages),
             f'rate <b data-metric="conversion_rate">{pct(t.conversion_rate, 2)}</b> · revenue '
             f'<b data-metric="revenue">{money(t.revenue)}</b>'),
        _kpi("opens_machine", "Machine opens", count(t.opens_machine),
             f'<b data-metric="machine_share">{pct(t.machine_share)}</b> of open hits, not counted · '
             '<a href="#h-sources">who and why</a>'),
        _kpi("clicks_filtered", "Filtered clicks", count(t.clicks_filtered),
             f'<b data-metric="filtered_share">{pct(t.filtered_share)}</b> of click hits, not counted · '
             '<a href="#h-sources">who and why</a>'),
        _kpi("unique_downloads", "Unique downloads", count(t.unique_downloads), f'download rate <b data-metric='
             f'"download_rate">{pct(t.download_rate)}</b> · {count(t.downloads_filtered)} filtered, not counted'),
    ))


def _ab(data: CampaignData) -> str:
    rows = data.variants
    body = "".join(
        f'<tr data-variant="{_e(variant_name(r["variant"]))}"><th scope="row">{_e(variant_name(r["variant"]))}</th>'
        f'<td data-metric="delivered">{count(r["delivered"])}</td>'
        f'<td data-metric="unique_opens">{count(r["unique_opens"])}</td>'
        f'<td data-metric="open_rate">{pct(ratio(r["unique_opens"], r["delivered"]), 2)}</td>'
        f'<td data-metric="unique_clicks">{count(r["unique_clicks"])}</td>'
        f'<td data-metric="ctr">{pct(ratio(r["unique_clicks"], r["delivered"]), 2)}</td>'
        f'<td data-metric="ctor">{pct(r.get("ctor"), 2)}</td>'
        f'<td data-metric="converted_messages">{count(r["converted_messages"])}</td>'
        f'<td data-metric="conversion_rate">{pct(ratio(r["converted_messages"], r["delivered"]), 2)}</td></tr>'
        for r in rows)
    out = _table("variants", ("variant", "delivered", "opens", "open rate", "clicks", "CTR", "CTOR", "converted",
                              "conv. rate"), body)

    results = [(metric, *ab_verdict(rows, metric)) for metric in AB_METRICS]
    comps = [(metric, c) for metric, cs, _ in results for c in cs]
    if not comps and len({verdict for _, _, verdict in results}) == 1:  # one variant: said once, not per metric
        return out + f'<ul class="verdicts"><li class="open" data-verdict="all">{_e(results[0][2])}</li></ul>'

    if comps:
        span = max(max(abs(c.ci_low), abs(c.ci_high)) for _, c in comps)
        rows_html = "".join(_comparison_row(metric, c, span, i) for i, (metric, c) in enumerate(comps))
        out += "<h3>Comparisons</h3>" + _table("comparisons", ("metric", "rates", "difference", "CI (pts)", "",
                                                               "p-value"), rows_html)
    lines = "".join(
        f'<li class="{"win" if names_a_winner(verdict) else "open"}" data-verdict="{metric}">{_e(verdict)}</li>'
        for metric, _, verdict in sorted(results, key=lambda r: r[0] != "click"))
    return out + f'<ul class="verdicts">{lines}</ul>'


def _comparison_row(metric: str, c: Comparison, span: float, i: int) -> str:
    label = METRICS[metric][1]
    mark = charts.interval_mark(f"ci-{i}", f"{label}: {c.b} minus {c.a}", c.diff, c.ci_low, c.ci_high, span,
                                width=110)
    return (f'<tr data-metric="{metric}" data-a="{_e(c.a)}" data-b="{_e(c.b)}"><td>{_e(label)}</td>'
            f"<td>{_e(c.b)} {pct(c.p_b, 2)} vs {_e(c.a)} {pct(c.p_a, 2)}</td>"
            f'<td data-field="diff">{points(c.diff)}</td>'
            f'<td>{_pts(c.ci_low)} to {_pts(c.ci_high)} ({c.level * 100:.4g}%)</td>'
            f'<td>{mark}</td><td data-field="p_value">{p_value(c.p_value)}</td></tr>')


def _pts(x: float) -> str:
    return f"{x * 100:+.2f}"


def _opens(data: CampaignData) -> str:
    h = data.hourly
    per = charts.bucket_name(data.bucket_seconds)
    series = [charts.Series("human", [r.opens_human for r in h], charts.HUMAN),
              charts.Series("proxy", [r.opens_proxy for r in h], charts.PROXY),
              charts.Series("machine", [r.opens_machine for r in h], charts.MACHINE)]
    desc = f"Open hits per {per}, stacked: " + ", ".join(f"{s.name} {count(sum(s.values))} in all" for s in series)
    return charts.time_chart("opens-chart", f"Opens per {per} by verdict", desc, [r.hour for r in h], series,
                             stacked=True, y_label=f"open hits per {per}", x_label=_x_label(data.bucket_seconds),
                             width=1260, height=300, bucket_seconds=data.bucket_seconds)


def _clicks(data: CampaignData) -> str:
    h = data.hourly
    per = charts.bucket_name(data.bucket_seconds)
    series = [charts.Series("people", [r.clicks_human for r in h], charts.CLICK),
              charts.Series("filtered", [r.clicks_filtered for r in h], charts.FILTERED)]
    desc = f"Click hits per {per}: " + ", ".join(f"{s.name} {count(sum(s.values))} in all" for s in series)
    return charts.time_chart("clicks-chart", f"Clicks per {per}: people and filtered", desc, [r.hour for r in h],
                             series, y_label=f"click hits per {per}", x_label=_x_label(data.bucket_seconds),
                             width=1260, height=240, bucket_seconds=data.bucket_seconds)


def _x_label(bucket_seconds: int) -> str:
    return f"time (UTC), one point per {charts.bucket_name(bucket_seconds)}"


def _countries(data: CampaignData) -> str:
    why = data.places.why_empty() if not data.countries else ""
    chart = _audience(data.countries, "countries", "Countries", empty="No countries known.")
    return chart + (f'<p class="sub" data-field="countries-why">{_e(why)}</p>' if why else "")


def _reason_html(campaign: str, row: SourceRow, code: str, hits: int) -> str:
    verdict = "machine" if row.side == "machine" else "human"
    label = meaning.reason(code, verdict)
    href = examples_href(campaign, row.source, row.side, row.kind, code)
    return (f'<a class="reason" data-reason="{_e(code)}" href="{_e(href)}" title="{_e(label.explanation)}">'
            f"{_e(label.label)}</a> {count(hits)}")


SOURCE_GROUPS = (("open", "machine", "Machine opens", "not counted"),
                 ("click", "machine", "Filtered clicks", "not counted"),
                 ("download", "machine", "Filtered downloads", "not counted"),
                 ("open", "counted", "Opens by people", "counted"))


def _sources(data: CampaignData) -> str:
    body = []
    # A campaign without document links shows no empty group for them.
    for kind, side, title, counted in (g for g in SOURCE_GROUPS if g[0] != "download" or data.by_source(*g[:2])):
        rows = data.by_source(kind, side)
        total = sum(r.hits for r in rows)
        body.append(f'<tr class="group"><th scope="rowgroup" colspan="4">{_e(title)} '
                    f'<span class="muted">{count(total)} hits, {counted}</span></th></tr>')
        if not rows:
            body.append('<tr><td colspan="4" class="muted">None yet.</td></tr>')
        for r in rows:
            src = meaning.source(r.source)
            reasons = " · ".join(_reason_html(data.campaign, r, code, n) for code, n in r.reasons) or DASH
            href = examples_href(data.campaign, r.source, r.side, r.kind)
            body.append(
                f'<tr data-kind="{kind}" data-side="{side}" data-source="{_e(r.source)}">'
                f'<td class="name"><a href="{_e(href)}" title="{_e(src.explanation)}">{_e(src.label)}</a></td>'
                f'<td data-field="hits">{count(r.hits)}</td><td data-field="share">{pct(ratio(r.hits, total))}</td>'
                f'<td class="reasons" data-field="reasons">{reasons}</td></tr>')
    return _table("sources", ("source", "hits", "share", "top reasons (hits with each)"), "".join(body))



def _audience(items: list[tuple[str, int]], name: str, title: str, empty: str = "Nothing known yet.") -> str:
    total = sum(v for _, v in items)
    desc = (f"{title} of opens by people: " + ", ".join(f"{k} {count(v)}" for k, v in items)) if items else title
    return charts.bar_chart(f"{name}-chart", title, desc, items, total=total, x_label="opens by people", width=386,
                            label_width=104, empty=empty)


def _links(links: list[LinkRow]) -> str:
    if not links:
        return '<p class="empty">No clicks yet.</p>'
    top = max(link.clicks_human for link in links) or 1
    body = "".join(
        f'<tr><td class="name" title="{_e(link.link)}">{_e(link.link or DASH)}</td>'
        f"<td>{count(link.clicks_human)}{_minibar(link.clicks_human / top)}</td>"
        f"<td>{count(link.unique_clicks)}</td><td>{count(link.clicks_filtered)}</td>"
        f"<td>{pct(link.filtered_share)}</td><td>{count(link.conversions)}</td><td>{money(link.revenue)}</td>"
        f"<td>{count(link.downloads_human)}</td><td>{count(link.downloads_filtered)}</td></tr>"
        for link in links)
    return _table("links", ("link", "people's clicks", "unique clickers", "filtered", "filtered share", "conversions",
                            "revenue", "people's downloads", "filtered downloads"), body)


def _minibar(share: float) -> str:
    """A decorative bar beside a number (the number says it all, so screen readers skip it)."""
    w = max(0.0, min(1.0, share)) * 80
    return (f'<svg class="minibar" width="80" height="8" aria-hidden="true" focusable="false">'
            f'<rect width="80" height="8" rx="2" fill="#EEF1F4"/><rect width="{w:.1f}" height="8" rx="2" '
            f'fill="{charts.CLICK}"/></svg>')


# ---- a drill-down: example hits ------------------------------------------------------------------

def examples_panels(hits: list[ExampleHit]) -> dict[str, str]:
    if not hits:
        return {"hits": '<p class="empty">No such hits (yet).</p>'}
    body = "".join(
        f'<tr data-hit="{i}"><td data-field="ts">{_e(h.ts.strftime("%Y-%m-%d %H:%M:%S UTC"))}</td>'
        f'<td data-field="kind">{_e(h.kind)}</td>'
        f'<td data-field="verdict" title="{_e(meaning.verdict(h.verdict).explanation)}">'
        f"{_e(meaning.verdict(h.verdict).label)}</td>"
        f'<td class="name" data-field="link" title="{_e(h.link)}">{_e(h.link or DASH)}</td>'
        f'<td data-field="ip">{_e(h.ip or DASH)}</td>'
        f'<td class="ua" data-field="user_agent" title="{_e(h.user_agent)}">{_e(_cut(h.user_agent, 80) or DASH)}</td>'
        f'<td class="reasons" data-field="reasons">'
        + " · ".join(f'<span data-reason="{_e(code)}" title="{_e(meaning.reason(code, h.verdict).explanation)}">'
                     f"{_e(meaning.reason(code, h.verdict).label)}</span>" for code in h.reasons)
        + "</td></tr>"
        for i, h in enumerate(hits))
    return {"hits": _table("hits", ("time", "kind", "verdict", "link", "address (truncated)", "user agent",
                                    "reasons"), body)}


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def examples_page(campaign: str, source: str, side: str, kind: str, reason: str, hits: list[ExampleHit],
                  tenant: str, refresh_seconds: int, now: datetime) -> str:
    src = meaning.source(source)
    what = {"open": "opens", "click": "clicks", "download": "downloads"}.get(kind, "hits")
    whose = "machine" if side == "machine" else "people's"
    title = f"{src.label}: latest {whose} {what}"
    filters = f" with reason \u201c{meaning.reason(reason, 'machine' if side == 'machine' else 'human').label}\u201d" \
        if reason else ""
    note = (f"{_tenant_note(tenant)} · campaign {_e(campaign or '(no name)')} · {_e(src.explanation)}. "
            f"The {EXAMPLE_LIMIT} most recent{_e(filters)}; addresses are truncated.")
    section = _section("hits", "Example hits", "Newest first; hover a reason or a verdict for what it means.",
                       examples_panels(hits)["hits"], 12)
    body = (f"<h1>{_e(title)}</h1><p class=\"sub\">{note}</p>"
            f'<p class="sub"><a href="{_e(campaign_href(campaign))}">Back to the campaign</a></p>'
            f'<div class="grid">{section}</div>')
    crumbs = (f'<a href="./">Campaigns</a> / <a href="{_e(campaign_href(campaign))}">{_e(campaign or "(no name)")}'
              f"</a> / <strong>{_e(src.label)}</strong>")
    return page(f"{_e(title)} · pixeltrack", crumbs, body, _e(examples_panels_href(campaign, source, side, kind,
                                                                                    reason)),
                refresh_seconds, _e(updated_at(now)))
