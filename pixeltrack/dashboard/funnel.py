"""The dashboard's funnel panel: from sent to converted, with the list-health numbers beside it."""

from __future__ import annotations

from pixeltrack.dashboard import charts
from pixeltrack.dashboard.format import count, pct, ratio
from pixeltrack.dashboard.rows import CampaignData


def funnel_panel(data: CampaignData) -> str:
    """The chart of sent → delivered → opened → clicked → converted, what each share is of, the bounces,
    complaints, unsubscribes and replies beside it (their rates over sent and delivered), and CTOR."""
    t = data.totals
    steps = [("Sent", t.sent), ("Delivered", t.delivered), ("Opened", t.unique_opens), ("Clicked", t.unique_clicks),
             ("Converted", t.converted_messages)]
    notes = ["", f"{pct(ratio(t.delivered, t.sent))} of sent · {count(t.bounced)} bounced",
             f"{pct(t.open_rate)} of delivered (open rate)",
             f"{pct(t.ctr)} of delivered (CTR) · as many as {pct(ratio(t.unique_clicks, t.unique_opens))} "
             "of opened",
             f"{pct(t.conversion_rate, 2)} of delivered · as many as "
             f"{pct(ratio(t.converted_messages, t.unique_clicks))} of clicked"]
    desc = "; ".join(f"{name} {count(v)}" for name, v in steps)
    chart = charts.funnel_chart("funnel-chart", "Funnel: sent, delivered, opened, clicked, converted", desc, steps,
                                width=386, notes=notes)
    beside = (f'<p class="sub" data-field="beside">Bounced <b data-metric="bounced">{count(t.bounced)}</b> '
              f'(<b data-metric="bounce_rate">{pct(t.bounce_rate, 2)}</b> of sent) · complaints '
              f'<b data-metric="complained">{count(t.complained)}</b> '
              f'(<b data-metric="complaint_rate">{pct(t.complaint_rate, 3)}</b> of delivered) · unsubscribes '
              f'<b data-metric="unsubscribed">{count(t.unsubscribed)}</b> '
              f'(<b data-metric="unsubscribe_rate">{pct(t.unsubscribe_rate, 2)}</b>) · replies '
              f'<b data-metric="replied">{count(t.replied)}</b> '
              f'(<b data-metric="reply_rate">{pct(t.reply_rate, 2)}</b>)</p>')
    ctor_note = (f'<p class="sub" data-field="ctor-note">CTOR <b>{pct(t.ctor)}</b>: of the messages opened, '
                 "the share also clicked. \u201cAs many as x% of opened\u201d compares the two counts; it is "
                 "higher than CTOR when people click without loading images.</p>")
    return chart + beside + ctor_note
