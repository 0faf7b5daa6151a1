"""HTML of the campaign list and of one campaign: pure functions from rows to escaped markup.

A page is its panels inside the shell; the refresh endpoint returns the same panels by name, so what
the first render shows and what polling swaps in come from one function.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from pixeltrack.dashboard import charts
from pixeltrack.dashboard.format import DASH, count, money, p_value, pct, points, ratio, when
from pixeltrack.dashboard.queries import CampaignData, CampaignRow, LinkRow
from pixeltrack.dashboard.templates import page
from pixeltrack.report import METRICS, Comparison, ab_verdict, names_a_winner

AB_METRICS = ("open", "click", "conversion")  # the verdict on clicks leads, as in `pixeltrack report`


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def campaign_href(campaign: str) -> str:
    """Relative, so the dashboard works under any path prefix a reverse proxy gives it."""
    return "campaign?name=" + quote(campaign, safe="")


def panels_href(campaign: str | None) -> str:
    return "panels" if campaign is None else "campaign/panels?name=" + quote(campaign, safe="")


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
    return {"kpis": _kpis(data), "funnel": _funnel(data), "ab": _ab(data), "opens": _opens(data),
            "clicks": _clicks(data), "clients": _audience(data.clients, "clients", "Mail clients"),
            "devices": _audience(data.devices, "devices", "Devices"),
            "countries": _audience(data.countries, "countries", "Countries"), "links": _links(data.links)}


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
        + _section("funnel", "Funnel", "Unique messages at each step: opened by people (human + proxy), "
                   "clicked by people, converted.", p["funnel"], 4)
        + _section("opens", "Opens over time", "Open hits per hour by verdict: human, proxied (a person behind "
                   "Gmail's or Yahoo's image proxy) and machine (privacy prefetch, scanners, bots).",
                   p["opens"], 12)
        + _section("clicks", "Clicks over time", "Click hits per hour: people's clicks against the ones "
                   "filtered out as machines (link scanners, prefetch, honeypot links).", p["clicks"], 12)
        + _section("clients", "Mail clients", "Opens by people, proxied ones included.", p["clients"], 4)
        + _section("devices", "Devices", "Opens by people where the device is known (never behind a proxy).",
                   p["devices"], 4)
        + _section("countries", "Countries", "Opens by people where the place is known (never behind a proxy).",
                   p["countries"], 4)
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
        _kpi("delivered", "Delivered", count(t.delivered), f"{len(data.variants)} variant"
             + ("s" if len(data.variants) != 1 else "")),
        _kpi("unique_opens", "Unique opens", count(t.unique_opens),
             f'open rate <b data-metric="open_rate">{pct(t.open_rate)}</b>'),
        _kpi("unique_clicks", "Unique clicks", count(t.unique_clicks),
             f'CTR <b data-metric="ctr">{pct(t.ctr)}</b> · CTOR <b data-metric="ctor">{pct(t.ctor)}</b>'),
        _kpi("converted_messages", "Conversions", count(t.converted_messages),
             f'rate <b data-metric="conversion_rate">{pct(t.conversion_rate, 2)}</b> · revenue '
             f'<b data-metric="revenue">{money(t.revenue)}</b>'),
        _kpi("opens_machine", "Machine opens", count(t.opens_machine),
             f'<b data-metric="machine_share">{pct(t.machine_share)}</b> of open hits, not counted'),
        _kpi("clicks_filtered", "Filtered clicks", count(t.clicks_filtered),
             f'<b data-metric="filtered_share">{pct(t.filtered_share)}</b> of click hits, not counted'),
    ))


def _funnel(data: CampaignData) -> str:
    t = data.totals
    steps = [("Delivered", t.delivered), ("Opened", t.unique_opens), ("Clicked", t.unique_clicks),
             ("Converted", t.converted_messages)]
    desc = "; ".join(f"{name} {count(v)}" for name, v in steps)
    return charts.funnel_chart("funnel-chart", "Funnel: delivered, opened, clicked, converted", desc, steps,
                               width=386)


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
    series = [charts.Series("human", [r.opens_human for r in h], charts.HUMAN),
              charts.Series("proxy", [r.opens_proxy for r in h], charts.PROXY),
              charts.Series("machine", [r.opens_machine for r in h], charts.MACHINE)]
    desc = "Open hits per hour, stacked: " + ", ".join(f"{s.name} {count(sum(s.values))} in all" for s in series)
    return charts.time_chart("opens-chart", "Opens per hour by verdict", desc, [r.hour for r in h], series,
                             stacked=True, y_label="open hits per hour", width=1260, height=300)


def _clicks(data: CampaignData) -> str:
    h = data.hourly
    series = [charts.Series("people", [r.clicks_human for r in h], charts.CLICK),
              charts.Series("filtered", [r.clicks_filtered for r in h], charts.FILTERED)]
    desc = "Click hits per hour: " + ", ".join(f"{s.name} {count(sum(s.values))} in all" for s in series)
    return charts.time_chart("clicks-chart", "Clicks per hour: people and filtered", desc, [r.hour for r in h],
                             series, y_label="click hits per hour", width=1260, height=240)


def _audience(items: list[tuple[str, int]], name: str, title: str) -> str:
    total = sum(v for _, v in items)
    desc = (f"{title} of opens by people: " + ", ".join(f"{k} {count(v)}" for k, v in items)) if items else title
    return charts.bar_chart(f"{name}-chart", title, desc, items, total=total, x_label="opens by people", width=386,
                            label_width=104)


def _links(links: list[LinkRow]) -> str:
    if not links:
        return '<p class="empty">No clicks yet.</p>'
    top = max(link.clicks_human for link in links) or 1
    body = "".join(
        f'<tr><td class="name" title="{_e(link.link)}">{_e(link.link or DASH)}</td>'
        f"<td>{count(link.clicks_human)}{_minibar(link.clicks_human / top)}</td>"
        f"<td>{count(link.unique_clicks)}</td><td>{count(link.clicks_filtered)}</td>"
        f"<td>{pct(link.filtered_share)}</td><td>{count(link.conversions)}</td><td>{money(link.revenue)}</td></tr>"
        for link in links)
    return _table("links", ("link", "people's clicks", "unique clickers", "filtered", "filtered share", "conversions",
                            "revenue"), body)


def _minibar(share: float) -> str:
    """A decorative bar beside a number (the number says it all, so screen readers skip it)."""
    w = max(0.0, min(1.0, share)) * 80
    return (f'<svg class="minibar" width="80" height="8" aria-hidden="true" focusable="false">'
            f'<rect width="80" height="8" rx="2" fill="#EEF1F4"/><rect width="{w:.1f}" height="8" rx="2" '
            f'fill="{charts.CLICK}"/></svg>')
