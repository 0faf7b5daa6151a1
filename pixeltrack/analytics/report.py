"""`pixeltrack report`: a campaign's summary, its variants side by side, and an A/B verdict."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

QueryFn = Callable[[str, dict[str, Any]], tuple[list[str], list[Sequence[Any]]]]

SUMMARY_SQL = (
    "SELECT variant, delivered, unique_opens, opens_machine, machine_open_share, unique_clicks, clicks_human, "
    "clicks_filtered, converted_messages, conversions, revenue, open_rate, ctr, ctor, conversion_rate, "
    "revenue_per_recipient, sent, bounced, complained, unsubscribed, replied, bounce_rate, complaint_rate, "
    "unsubscribe_rate, reply_rate, unique_downloads, downloads_filtered, download_rate FROM campaign_summary "
    "WHERE campaign = {campaign:String} AND tenant = {tenant:String} ORDER BY variant"
)
METRICS = {"open": ("unique_opens", "open rate"), "click": ("unique_clicks", "click rate"),
           "conversion": ("converted_messages", "conversion rate"),
           "download": ("unique_downloads", "download rate")}


WINNER_PREFIX = "Variant "  # how a verdict that names a winner begins (see names_a_winner)
MIN_EXPECTED = 5  # each cell of a comparison's 2x2 table (with and without the event, per variant)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two proportions: b against a. `diff` = p_b - p_a with its confidence interval at `level`
    (unpooled standard error) and the two-sided p-value of the pooled two-proportion z-test.
    `min_expected`: the smallest expected count of the 2x2 table under no difference; below
    MIN_EXPECTED the normal approximation is not to be trusted, and no winner is named."""

    a: str
    b: str
    p_a: float
    p_b: float
    diff: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    level: float = 0.95
    min_expected: float = math.inf


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int, a: str = "A", b: str = "B",
                        level: float = 0.95) -> Comparison:
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both groups need at least one send")
    if not (0 <= x_a <= n_a and 0 <= x_b <= n_b):
        raise ValueError(f"counts out of range: {x_a} of {n_a}, {x_b} of {n_b}")
    p_a, p_b = x_a / n_a, x_b / n_b
    diff = p_b - p_a
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    pooled = (x_a + x_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = diff / se0 if se0 > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    half = NormalDist().inv_cdf(1 - (1 - level) / 2) * se
    min_expected = min(n * q for n in (n_a, n_b) for q in (pooled, 1 - pooled))
    return Comparison(a, b, p_a, p_b, diff, diff - half, diff + half, z, p_value, level, min_expected)


def ab_verdict(rows: list[dict[str, Any]], metric: str = "click", alpha: float = 0.05) -> tuple[list[Comparison], str]:
    """Compares the best variant on `metric` with every other. It wins when every comparison is
    significant at alpha / (k - 1) (Bonferroni, so more variants do not mean more false winners), its
    interval at that level lies above 0 (the test and the interval can disagree near the line: both
    must say so), and every comparison has enough events for the normal approximation."""
    count_col, label = METRICS[metric]
    variants = [r for r in rows if (r.get("delivered") or 0) > 0]
    if len(variants) < 2:
        return [], ("One variant with sends: nothing to compare." if len(rows) > 1
                    else "One variant only: nothing to compare.")
    best = max(variants, key=lambda r: (r[count_col] or 0) / r["delivered"])
    others = [r for r in variants if r is not best]
    threshold = alpha / len(others)
    comps = [two_proportion_test(o[count_col] or 0, o["delivered"], best[count_col] or 0, best["delivered"],
                                 a=o["variant"] or "(none)", b=best["variant"] or "(none)", level=1 - threshold)
             for o in others]
    name = best["variant"] or "(none)"
    weakest = max(comps, key=lambda c: (c.p_value, -c.ci_low))
    ci = f"{_level(weakest.level)} CI {_pts(weakest.ci_low)} to {_pts(weakest.ci_high)}"
    lead = _lead(name, weakest)
    if any(c.min_expected < MIN_EXPECTED for c in comps):
        return comps, (f"No variant wins on {label} yet: too few events to test ({lead}; each variant needs at "
                       f"least {MIN_EXPECTED} with and {MIN_EXPECTED} without the event expected).")
    if all(c.p_value < threshold and c.ci_low > 0 for c in comps):
        return comps, (f"{WINNER_PREFIX}{name} wins on {label}: {_pts(weakest.diff)} over {weakest.a} ({ci}), "
                       f"p {_p(weakest.p_value)}.")
    return comps, (f"No variant wins on {label} yet: {lead} ({ci}), p {_p(weakest.p_value)} "
                   f"(needs p < {threshold:.3g} and an interval above 0).")


def _lead(name: str, c: Comparison) -> str:
    """"B leads A by +1.20 pts", or, when their rates are equal, "A and B are level: +0.00 pts"."""
    if c.p_a == c.p_b:
        first, second = sorted((c.a, name))
        return f"{first} and {second} are level: {_pts(0.0)}"
    return f"{name} leads {c.a} by {_pts(c.diff)}"


def names_a_winner(verdict: str) -> bool:
    """Whether an ab_verdict line names a winner (the dashboard marks it so)."""
    return verdict.startswith(WINNER_PREFIX)


def _level(level: float) -> str:
    return f"{level * 100:.4g}%"


def _pts(x: float) -> str:
    return f"{x * 100:+.2f} pts"


def _p(p: float) -> str:
    """The p-value after "p": "p < 0.0001" or "p = 0.0123"."""
    return "< 0.0001" if p < 1e-4 else f"= {p:.4f}"


def fetch(query: QueryFn, campaign: str, tenant: str = "") -> list[dict[str, Any]]:
    columns, rows = query(SUMMARY_SQL, {"campaign": campaign, "tenant": tenant})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def fetch_sources(query: QueryFn, campaign: str, tenant: str = "") -> list[dict[str, Any]]:
    """Machine opens and filtered clicks by source, each with its top reasons (the dashboard's reads):
    one dict per kind and source, opens first, most hits first, `share` of that kind's machine hits."""
    from pixeltrack.dashboard.queries import REASONS_SQL, SOURCES_SQL, TOP_REASONS
    from schemas import reasons as meaning
    from schemas.verdicts import MACHINE

    params = {"campaign": campaign, "tenant": tenant}
    columns, rows = query(SOURCES_SQL, params)
    sources = [r for r in (dict(zip(columns, row, strict=True)) for row in rows) if r["side"] == "machine"]
    columns, rows = query(REASONS_SQL, {**params, "per_source": TOP_REASONS})
    top: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in (dict(zip(columns, row, strict=True)) for row in rows):
        if r["side"] == "machine":
            top.setdefault((r["kind"], r["source"]), []).append(
                {"reason": r["reason"], "label": meaning.reason(r["reason"], MACHINE).label, "hits": int(r["hits"])})
    totals = {k: sum(int(r["hits"]) for r in sources if r["kind"] == k) for k in ("open", "click", "download")}
    out = [{"kind": r["kind"], "source": r["source"], "source_label": meaning.source(r["source"]).label,
            "hits": int(r["hits"]), "share": int(r["hits"]) / totals[r["kind"]] if totals.get(r["kind"]) else None,
            "top_reasons": top.get((r["kind"], r["source"]), [])} for r in sources]
    order = {"open": 0, "click": 1, "download": 2}
    return sorted(out, key=lambda r: (order.get(r["kind"], 3), -r["hits"], r["source"]))


def _reasons_text(r: dict[str, Any], codes: bool = False) -> str:
    return "; ".join(f"{x['reason'] if codes else x['label']} {x['hits']:,}" for x in r["top_reasons"])


def render(rows: list[dict[str, Any]], campaign: str, fmt: str, metric: str = "click",
           width: int | None = None, sources: list[dict[str, Any]] | None = None) -> str:
    """The report as `fmt` (table | json | csv); a table fits `width` columns (default: the terminal's).
    `sources` (fetch_sources): machine opens and filtered clicks by source, shown under the variants."""
    comps, verdict = ab_verdict(rows, metric)
    if fmt == "json":
        import orjson

        doc: dict[str, Any] = {"campaign": campaign, "variants": rows, "metric": metric, "verdict": verdict,
                               "comparisons": [_comp_dict(c) for c in comps]}
        if sources is not None:
            doc["machine_by_source"] = sources
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()
    if fmt == "csv":
        import csv
        import io

        # One rectangular table: each variant's numbers, then its comparison with the leader (empty on
        # the leader's row) and the verdict, repeated on every row (no comment lines for a reader to trip on).
        # With `sources`, a first column `row` says what a row is (variant | machine_source) and source
        # rows fill the source columns at the end, the variant columns left empty.
        by_variant = {c.a: c for c in comps}
        extra = ["compared_with", "diff", "ci_low", "ci_high", "ci_level", "z", "p_value", "verdict"]
        source_cols = ["kind", "source", "source_label", "hits", "share", "top_reasons", "top_reason_labels"]
        fields = (list(rows[0]) if rows else ["variant"]) + extra
        if sources is not None:
            fields = ["row", *fields, *(c for c in source_cols if c not in fields)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            c = by_variant.get(r["variant"] or "(none)")
            w.writerow({**r, "verdict": verdict, **({} if sources is None else {"row": "variant"}),
                        **({} if c is None else {
                            "compared_with": c.b, "diff": c.diff, "ci_low": c.ci_low, "ci_high": c.ci_high,
                            "ci_level": c.level, "z": c.z, "p_value": c.p_value})})
        for s in sources or []:
            w.writerow({"row": "machine_source", **{k: s[k] for k in source_cols[:5]},
                        "top_reasons": _reasons_text(s, codes=True), "top_reason_labels": _reasons_text(s)})
        return buf.getvalue()
    return _table(rows, campaign, comps, verdict, width, sources)


def _comp_dict(c: Comparison) -> dict[str, Any]:
    return {"a": c.a, "b": c.b, "rate_a": c.p_a, "rate_b": c.p_b, "diff": c.diff, "ci": [c.ci_low, c.ci_high],
            "ci_level": c.level, "z": c.z, "p_value": c.p_value, "min_expected": c.min_expected}


def _pct(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.2f}%"


def _with_rate(r: dict[str, Any], count: str, rate: str) -> str:
    """A count with its rate: "2 (20.00%)"."""
    return f"{r.get(count) or 0:,} ({_pct(r.get(rate))})"


def _table(rows: list[dict[str, Any]], campaign: str, comps: list[Comparison], verdict: str,
           width: int | None = None, sources: list[dict[str, Any]] | None = None) -> str:
    """The variants side by side when they fit `width` (the terminal's by default, COLUMNS honoured),
    else one block per variant; then the comparisons and the verdict; then machines by source."""
    from rich.console import Console

    from pixeltrack.analytics.tables import fits, print_rows, wide_table

    # Sent, then delivered (sent minus bounces: every rate but the bounce rate is over it), the funnel,
    # then complaints, unsubscribes and replies with their rates; downloads when the campaign has any (a
    # campaign without document links keeps its width).
    columns: tuple[str, ...] = (
        "variant", "sent", "bounced", "delivered", "unique opens", "open rate", "machine opens", "unique clicks",
        "CTR", "CTOR", "filtered clicks", "conversions", "conv. rate", "revenue / recipient", "complaints",
        "unsubscribes", "replies")
    downloads = any((r.get("unique_downloads") or 0) or (r.get("downloads_filtered") or 0) for r in rows)
    if downloads:
        columns += ("unique downloads", "download rate", "filtered downloads")
    cells = []
    for r in rows:
        rpr = r.get("revenue_per_recipient")
        cell: tuple[str, ...] = (
            r["variant"] or "(none)", f"{r.get('sent') or 0:,}", _with_rate(r, "bounced", "bounce_rate"),
            f"{r['delivered'] or 0:,}", f"{r['unique_opens'] or 0:,}",
            _pct(r["open_rate"]), f"{r['opens_machine'] or 0:,} ({_pct(r['machine_open_share'])})",
            f"{r['unique_clicks'] or 0:,}", _pct(r["ctr"]), _pct(r["ctor"]), f"{r['clicks_filtered'] or 0:,}",
            f"{r['conversions'] or 0:,}", _pct(r["conversion_rate"]),
            "–" if rpr is None else f"{rpr:.4f}", _with_rate(r, "complained", "complaint_rate"),
            _with_rate(r, "unsubscribed", "unsubscribe_rate"), _with_rate(r, "replied", "reply_rate"))
        if downloads:
            cell += (f"{r.get('unique_downloads') or 0:,}", _pct(r.get("download_rate")),
                     f"{r.get('downloads_filtered') or 0:,}")
        cells.append(cell)
    console = Console(record=True, width=width, force_terminal=False)
    title = f"campaign {campaign}"
    with console.capture() as cap:
        side_by_side = wide_table(columns, cells, title, [False] + [True] * (len(columns) - 1))
        # Too wide for the terminal: variants as columns and measures as rows, which fits a few variants.
        turned = wide_table(["", *(c[0] for c in cells)], [[name, *(c[i] for c in cells)]
                                                             for i, name in enumerate(columns) if i],
                            title, [False] + [True] * len(cells))
        if fits(console, side_by_side):
            console.print(side_by_side)
        elif fits(console, turned):
            console.print(turned)
        else:
            print_rows(columns, cells, console, title=title)
        for c in comps:  # variant names are the senders' to choose: printed as text, not markup
            console.print(f"{c.b} vs {c.a}: {_pct(c.p_b)} vs {_pct(c.p_a)}, difference {_pts(c.diff)} "
                          f"({_level(c.level)} CI {_pts(c.ci_low)} to {_pts(c.ci_high)}), z = {c.z:.2f}, "
                          f"p {_p(c.p_value)}", markup=False)
        console.print(verdict, markup=False)
        if sources is not None:
            _print_sources(console, sources)
    return cap.get()


def _print_sources(console: Any, sources: list[dict[str, Any]]) -> None:
    """Machine opens, then filtered clicks, by source with their top reasons (not counted in the rates)."""
    from pixeltrack.analytics.tables import wide_table

    groups = [("open", "Machine opens by source"), ("click", "Filtered clicks by source")]
    if any(s["kind"] == "download" for s in sources):
        groups.append(("download", "Filtered downloads by source"))
    for kind, title in groups:
        rows = [s for s in sources if s["kind"] == kind]
        total = sum(s["hits"] for s in rows)
        console.print()
        if not rows:
            console.print(f"{title}: none.", markup=False)
            continue
        # a table even on a narrow terminal: the reasons wrap inside their column, word by word
        console.print(wide_table(("source", "hits", "share", "top reasons"),
                                 [(s["source_label"], f"{s['hits']:,}", _pct(s["share"]), _reasons_text(s))
                                  for s in rows],
                                 f"{title} ({total:,}, not counted)", (False, True, True, False)))
