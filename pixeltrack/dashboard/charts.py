"""Server-side SVG charts: hits over time (lines or stacked areas), horizontal bars, a funnel.

Every chart is one self-contained <svg> string, well-formed XML (it also embeds in HTML as it is), with
role="img", a <title> and <desc> for screen readers, axis labels and a legend in text, so colour is
never the only cue. Every piece of text is escaped here; callers pass plain strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from pixeltrack.dashboard.format import compact, count, pct, ratio, utc

# Okabe–Ito: tells apart for the common colour-vision deficiencies.
HUMAN = "#0072B2"
PROXY = "#56B4E9"
MACHINE = "#E69F00"
CLICK = "#009E73"
FILTERED = "#8C8C8C"
BAR = "#0072B2"
FUNNEL = ("#0B4F7A", "#0072B2", "#2A93CF", "#56B4E9", "#8FCFF0")

INK = "#1F2933"
MUTED = "#616E7C"
GRID = "#E4E7EB"
FONT = "system-ui, -apple-system, 'Segoe UI', 'Liberation Sans', 'DejaVu Sans', Arial, sans-serif"
MAX_HOVER_COLUMNS = 500  # per-point tooltips beyond this would only make the page heavy
HOUR_STEPS = (1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720, 1440, 2160, 4320, 8760)
# Tick steps in seconds: minutes for a fresh campaign's minute buckets, then whole hours and days.
TICK_STEPS = (60, 120, 300, 600, 900, 1800, *(h * 3600 for h in HOUR_STEPS))


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]
    color: str


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _n(x: float) -> str:
    """A coordinate: short, and no "-0"."""
    s = f"{x:.1f}".removesuffix(".0")
    return "0" if s == "-0" else s


def _id(chart_id: str) -> str:
    """A valid, predictable XML id from any string."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", chart_id).strip("-") or "chart"


def _open(chart_id: str, title: str, desc: str, width: float, height: float) -> str:
    cid = _id(chart_id)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" viewBox="0 0 {_n(width)} {_n(height)}" '
            f'width="{_n(width)}" height="{_n(height)}" role="img" aria-labelledby="{cid}-title {cid}-desc" '
            f'font-family="{_e(FONT)}" font-size="12" fill="{INK}">'
            f'<title id="{cid}-title">{_e(title)}</title><desc id="{cid}-desc">{_e(desc)}</desc>')


def _text(x: float, y: float, text: str, anchor: str = "start", size: int | None = None, color: str = INK,
          weight: str | None = None, extra: str = "") -> str:
    attrs = f' font-size="{size}"' if size else ""
    attrs += f' font-weight="{weight}"' if weight else ""
    attrs += f" {extra}" if extra else ""
    return (f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{color}"{attrs}>{_e(text)}</text>')


def empty_chart(chart_id: str, title: str, desc: str, message: str = "No data yet.",
                width: float = 960, height: float = 120) -> str:
    return (_open(chart_id, title, f"{desc} {message}", width, height)
            + f'<rect x="0.5" y="0.5" width="{_n(width - 1)}" height="{_n(height - 1)}" rx="6" fill="#F5F7FA" '
              f'stroke="{GRID}"/>'
            + _text(width / 2, height / 2 + 4, message, "middle", 13, MUTED) + "</svg>")


def nice_ticks(top: float, n: int = 5) -> list[float]:
    """0, step, ..., >= top with step 1, 2 or 5 × 10^k (at least 1: counts have no fractions)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _legend(x: float, y: float, series: Sequence[Series], totals: Sequence[float] | None) -> str:
    out = []
    for i, s in enumerate(series):
        label = s.name if totals is None else f"{s.name} ({count(totals[i])})"
        out.append(f'<g class="legend-item"><rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="12" rx="2" '
                   f'fill="{s.color}"/>' + _text(x + 17, y + 1, label) + "</g>")
        x += 17 + 7.2 * len(label) + 22  # ~7 px per character at 12 px: legends never overlap in practice
    return "".join(out)


def _time_ticks(t0: float, t1: float, max_ticks: int) -> tuple[list[float], int]:
    """UTC-aligned tick times (epoch seconds) between t0 and t1 and the step in seconds."""
    span = max(t1 - t0, 60)
    step = next((s for s in TICK_STEPS if span / s <= max_ticks), TICK_STEPS[-1])
    first = math.ceil(t0 / step) * step
    ticks = [float(first + i * step) for i in range(int((t1 - first) // step) + 1)]
    return (ticks or [t0]), step


def bucket_name(seconds: int) -> str:
    """"minute", "10 minutes", "hour", "day": what one point of a time chart covers."""
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return "minute" if seconds == 60 else f"{seconds // 60} minutes"


def time_chart(chart_id: str, title: str, desc: str, times: Sequence[datetime], series: Sequence[Series], *,
               stacked: bool = False, y_label: str = "hits per hour", x_label: str = "hour (UTC)",
               width: float = 960, height: float = 300, bucket_seconds: int = 3600) -> str:
    """Series over time, one value per time (each covering `bucket_seconds`). stacked=True draws areas on
    top of each other (the top edge is the total); otherwise lines over a light fill. The legend shows
    each series' total."""
    if not times or not series or all(not any(s.values) for s in series):
        return empty_chart(chart_id, title, desc, "No hits yet.", width, 120)
    if any(len(s.values) != len(times) for s in series):
        raise ValueError("every series needs one value per time")
    left, right, top, bottom = 64.0, 20.0, 40.0, 58.0
    pw, ph = width - left - right, height - top - bottom
    ts = [utc(t).timestamp() for t in times]
    t0, t1 = min(ts), max(ts)

    def x(t: float) -> float:
        return left + pw / 2 if t1 == t0 else left + (t - t0) / (t1 - t0) * pw

    bases = [[0.0] * len(times)]
    for s in series[:-1]:
        bases.append([b + (v if stacked else 0) for b, v in zip(bases[-1], s.values, strict=True)])
    if not stacked:
        bases = [[0.0] * len(times) for _ in series]
    tops = [[b + v for b, v in zip(base, s.values, strict=True)] for base, s in zip(bases, series, strict=True)]
    ticks = nice_ticks(max(max(t) for t in tops))
    ymax = ticks[-1]

    def y(v: float) -> float:
        return top + ph - v / ymax * ph

    out = [_open(chart_id, title, desc, width, height)]
    out.append(_legend(left, 20, series, [sum(s.values) for s in series]))
    # grid and y axis
    for v in ticks:
        out.append(f'<line x1="{_n(left)}" x2="{_n(left + pw)}" y1="{_n(y(v))}" y2="{_n(y(v))}" stroke="{GRID}"/>')
        out.append(_text(left - 8, y(v) + 4, compact(v), "end", 11, MUTED))
    out.append(_text(16, top + ph / 2, y_label, "middle", 11, MUTED,
                     extra=f'transform="rotate(-90 16 {_n(top + ph / 2)})"'))
    # x axis: ticks on whole UTC minutes, hours or days
    tick_ts, step = _time_ticks(t0, t1, max(2, int(pw // 90)))
    out.append(f'<line x1="{_n(left)}" x2="{_n(left + pw)}" y1="{_n(top + ph)}" y2="{_n(top + ph)}" stroke="{MUTED}"/>')
    previous_day = None
    for t in tick_ts:
        d = datetime.fromtimestamp(t, UTC)
        out.append(f'<line x1="{_n(x(t))}" x2="{_n(x(t))}" y1="{_n(top + ph)}" y2="{_n(top + ph + 5)}" '
                   f'stroke="{MUTED}"/>')
        if step < 86400:
            out.append(_text(x(t), top + ph + 18, d.strftime("%H:%M"), "middle", 11, MUTED))
            if d.date() != previous_day:
                out.append(_text(x(t), top + ph + 31, d.strftime("%d %b"), "middle", 11, MUTED))
        else:
            out.append(_text(x(t), top + ph + 18, d.strftime("%d %b"), "middle", 11, MUTED))
        previous_day = d.date()
    out.append(_text(left + pw / 2, height - 6, x_label, "middle", 11, MUTED))
    # series: stacked areas bottom-up, or lines with a light fill down to zero
    for s, base, tops_s in zip(series, bases, tops, strict=True):
        upper = [(x(t), y(v)) for t, v in zip(ts, tops_s, strict=True)]
        lower = [(x(t), y(v)) for t, v in zip(ts, base, strict=True)]
        if len(upper) == 1:  # one hour: a dot (and a bar for areas) instead of a line of no length
            px, py = upper[0]
            out.append(f'<circle class="series" data-series="{_e(s.name)}" cx="{_n(px)}" cy="{_n(py)}" r="4" '
                       f'fill="{s.color}"/>')
            continue
        area = " ".join(f"{_n(a)},{_n(b)}" for a, b in [*upper, *reversed(lower)])
        out.append(f'<polygon points="{area}" fill="{s.color}" fill-opacity="{0.85 if stacked else 0.12}"/>')
        line = " ".join(f"{_n(a)},{_n(b)}" for a, b in upper)
        out.append(f'<polyline class="series" data-series="{_e(s.name)}" points="{line}" fill="none" '
                   f'stroke="{s.color}" stroke-width="2" stroke-linejoin="round"/>')
    # one invisible column per time with the numbers as a tooltip
    if len(ts) <= MAX_HOVER_COLUMNS:
        half = pw / max(len(ts) - 1, 1) / 2
        for i, t in enumerate(ts):
            tip = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d" if bucket_seconds >= 86400 else
                                                          "%Y-%m-%d %H:%M UTC") + ": " + ", ".join(
                f"{s.name} {count(s.values[i])}" for s in series)
            out.append(f'<rect class="hover" x="{_n(max(left, x(t) - half))}" y="{_n(top)}" '
                       f'width="{_n(min(2 * half, pw))}" height="{_n(ph)}" fill="transparent">'
                       f"<title>{_e(tip)}</title></rect>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(chart_id: str, title: str, desc: str, items: Sequence[tuple[str, float]], *, color: str = BAR,
              value_label: Callable[[float], str] = count, total: float | None = None, x_label: str = "",
              width: float = 460, label_width: float = 128, empty: str = "Nothing known yet.") -> str:
    """Horizontal bars, largest first as given, each with its value (and share of `total`) at its end;
    `empty` is what it says when there are none."""
    if not items:
        return empty_chart(chart_id, title, desc, empty, width, 96)
    row, top = 30.0, 8.0
    value_room = 118.0
    height = top + row * len(items) + (30 if x_label else 8)
    pw = width - label_width - value_room
    vmax = max((v for _, v in items), default=0) or 1
    max_chars = max(4, int((label_width - 14) / 6.8))  # what fits left of the bars at 12 px
    out = [_open(chart_id, title, desc, width, height)]
    for i, (label, v) in enumerate(items):
        y0 = top + i * row
        bw = max(v / vmax * pw, 2 if v > 0 else 0)
        short = label if len(label) <= max_chars else label[: max_chars - 1] + "…"
        value = value_label(v) + (f" ({pct(ratio(v, total))})" if total else "")
        out.append(f'<g class="bar"><title>{_e(f"{label}: {value}")}</title>'
                   + _text(label_width - 8, y0 + row / 2 + 4, short, "end")
                   + f'<rect x="{_n(label_width)}" y="{_n(y0 + 5)}" width="{_n(bw)}" height="{_n(row - 10)}" '
                     f'rx="3" fill="{color}"/>'
                   + _text(label_width + bw + 6, y0 + row / 2 + 4, value, "start", 11, MUTED) + "</g>")
    out.append(f'<line x1="{_n(label_width)}" x2="{_n(label_width)}" y1="{_n(top)}" '
               f'y2="{_n(top + row * len(items))}" stroke="{MUTED}"/>')
    if x_label:
        out.append(_text(label_width + pw / 2, height - 8, x_label, "middle", 11, MUTED))
    out.append("</svg>")
    return "".join(out)


def funnel_chart(chart_id: str, title: str, desc: str, steps: Sequence[tuple[str, float]], *,
                 width: float = 386, notes: Sequence[str] | None = None) -> str:
    """One bar per step on a track as wide as the first step, each with its count and a note under it:
    `notes` (one per step, "" for none) or by default its share of the first step and (from the third
    step on) of the step before."""
    if not steps or not steps[0][1]:
        return empty_chart(chart_id, title, desc, "Nothing delivered yet.", width, 96)
    row, top = 66.0, 4.0
    pw = width - 2
    height = top + row * len(steps)
    first = steps[0][1]
    out = [_open(chart_id, title, desc, width, height)]
    for i, (label, v) in enumerate(steps):
        y0 = top + i * row
        bw = max(v / first * pw, 3 if v > 0 else 0)
        share = f"{pct(ratio(v, first))} of {steps[0][0].lower()}" if i else ""
        step_note = f"{pct(ratio(v, steps[i - 1][1]))} of {steps[i - 1][0].lower()}" if i > 1 else ""
        note = notes[i] if notes is not None else " · ".join(n for n in (share, step_note) if n)
        tip = f"{label}: {count(v)}" + (f", {note}" if note else "")
        out.append(f'<g class="step"><title>{_e(tip)}</title>'
                   + _text(1, y0 + 16, label, "start", 12, INK, "600")
                   + _text(width - 1, y0 + 16, count(v), "end", 14, INK, "650")
                   + f'<rect x="1" y="{_n(y0 + 24)}" width="{_n(pw)}" height="18" rx="4" fill="#EEF1F4"/>'
                   + f'<rect x="1" y="{_n(y0 + 24)}" width="{_n(bw)}" height="18" rx="4" '
                     f'fill="{FUNNEL[min(i, len(FUNNEL) - 1)]}"/>'
                   + (_text(1, y0 + 56, note, "start", 11, MUTED) if note else "")
                   + "</g>")
    out.append("</svg>")
    return "".join(out)


def interval_mark(chart_id: str, title: str, diff: float, low: float, high: float, span: float, *,
                  width: float = 170, height: float = 24) -> str:
    """A difference (dot) with its confidence interval (line) on a ±span scale around a zero line;
    coloured when the interval leaves zero out."""
    span = max(span, abs(low), abs(high), 1e-9)
    pad = 6.0
    mid = width / 2

    def x(v: float) -> float:
        return mid + v / span * (width / 2 - pad)

    color = CLICK if low > 0 else MACHINE if high < 0 else FILTERED
    desc = f"difference {diff * 100:+.2f} points, 95% interval {low * 100:+.2f} to {high * 100:+.2f} points"
    return (_open(chart_id, title, desc, width, height)
            + f'<line x1="{_n(pad)}" x2="{_n(width - pad)}" y1="{_n(height / 2)}" y2="{_n(height / 2)}" '
              f'stroke="{GRID}"/>'
            + f'<line x1="{_n(mid)}" x2="{_n(mid)}" y1="2" y2="{_n(height - 2)}" stroke="{MUTED}" '
              f'stroke-dasharray="2 2"/>'
            + f'<line class="interval" x1="{_n(x(low))}" x2="{_n(x(high))}" y1="{_n(height / 2)}" '
              f'y2="{_n(height / 2)}" stroke="{color}" stroke-width="3" stroke-linecap="round"/>'
            + f'<circle cx="{_n(x(diff))}" cy="{_n(height / 2)}" r="4.5" fill="{color}" stroke="#FFFFFF"/>'
            + "</svg>")
