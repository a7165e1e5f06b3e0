"""The results report of one experiment: ``reports/<slug>.html``, one self-contained HTML page.

A data scientist opens it from the export store (a local folder or a bucket) with nothing but a browser:
no server, no internet, no script. Styles are inline and the plots are SVG drawn here, so the page looks
the same in a year from an archived copy. It shows, for every period, metric and segment, each branch's
relative uplift against the reference branch with its confidence interval over the windows so far (the
side of zero that is better shaded, from the metric's ``bigger_is_better``); the clients enrolled per
branch with the sample ratio mismatch test; and the metrics left without results, with the logged reason.

Every value that comes from a config or the data (metric names, descriptions, branch and segment names,
error messages) is HTML-escaped: metric-hub is edited by many people and the page must not run what
they wrote.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jetstream_assets.checks.enrollments import SampleRatioMismatch, sample_ratio_mismatch

# Analysis periods in the order the report shows them (the most complete picture first), with their
# headings and what one window index counts.
PERIODS: dict[str, tuple[str, str]] = {
    "overall": ("Overall", "whole experiment"),
    "week": ("Weekly", "week after enrollment"),
    "days28": ("28-day", "28-day window after enrollment"),
    "day": ("Daily", "day after enrollment"),
    "preenrollment_week": ("Pre-enrollment week", "week before enrollment"),
    "preenrollment_days28": ("Pre-enrollment 28 days", "28 days before enrollment"),
}
# Periods whose results are effects of the treatment; pre-enrollment periods should show none.
OUTCOME_PERIODS = ("overall", "days28", "week", "day")
# Statistic preferred for a metric's headline, most informative first (deciles are shown in plots only).
HEADLINE_ORDER = ("mean_lm", "mean", "binomial", "population_ratio", "per_client_dau_impact")
# Rows of this "metric" count clients per branch; they are enrollment counts, not a metric.
IDENTITY_METRIC = "identity"
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MAX_MESSAGE = 600
NO_LOGGED_REASON = (
    '<span class="muted">No error was logged for it in the current analysis cycle; see the run\'s logs.</span>'
)

REQUIRED_ROW_FIELDS = ("metric", "statistic", "branch", "comparison", "point", "lower", "upper")


class ReportError(ValueError):
    """Inputs that cannot make a results report; the message names the experiment and the input."""


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute: everything from configs and data goes through here."""
    return html.escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------------------------------------- numbers


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def pct(value: float | None, digits: int = 1) -> str:
    """A relative uplift as a signed percentage (0.1234 -> +12.3%)."""
    return "n/a" if value is None else f"{value * 100:+.{digits}f}%"


def num(value: float | None) -> str:
    """An estimate in the metric's own unit, with three significant digits."""
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def count(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12) + 0.0)  # + 0.0: no "-0%" tick
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12) + 0.0)  # + 0.0: no "-0%" tick
    return ticks


def verdict(lower: float | None, upper: float | None, bigger_is_better: bool | None) -> tuple[str, str]:
    """(css class, words) for a relative uplift's CI: clearly better, clearly worse, or no clear change."""
    if lower is None or upper is None:
        return "neutral", "no interval"
    if lower <= 0 <= upper:
        return "neutral", "no clear change"
    up = lower > 0
    if bigger_is_better is None:
        return "neutral", "increase" if up else "decrease"
    good = up == bigger_is_better
    return ("good" if good else "bad"), f"{'increase' if up else 'decrease'}, {'better' if good else 'worse'}"


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Estimate:
    """One relative uplift of `branch` against the reference in one window (and decile, if any)."""

    branch: str
    window: int
    parameter: float | None
    point: float | None
    lower: float | None
    upper: float | None
    branch_point: float | None = None  # the branch's own estimate (metric units), when exported


@dataclass
class Panel:
    """Everything one plot shows: a metric's statistic in one period, segment and analysis basis."""

    metric: str
    statistic: str
    segment: str
    basis: str
    estimates: list[Estimate] = field(default_factory=list)

    @property
    def by_parameter(self) -> bool:
        return any(e.parameter is not None for e in self.estimates)


@dataclass
class PeriodResults:
    period: str
    windows: list[int]
    panels: dict[str, list[Panel]]  # metric -> panels
    present: dict[tuple[str, str], set[int]]  # (metric, statistic) -> windows with any row


def _window(value: Any) -> int:
    if value is None:
        return 1  # a table without windows (a single statistics table) is its first window
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"window_index {value!r} is not a window number") from None


def _check_rows(slug: str, period: str, rows: Any) -> list[Mapping[str, Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ReportError(
            f"Experiment {slug!r}: the statistics of period {period!r} must be a list of statistics export "
            f"rows (statistics/statistics_{slug}_<period>.json), got {type(rows).__name__}."
        )
    checked = []
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReportError(
                f"Experiment {slug!r}, period {period!r}: statistics row {position} is a "
                f"{type(row).__name__}, not an object with the statistics columns."
            )
        missing = [c for c in REQUIRED_ROW_FIELDS if c not in row]
        if missing:
            raise ReportError(
                f"Experiment {slug!r}, period {period!r}: statistics row {position} lacks {missing}; pass the "
                "rows of the statistics export (metric, statistic, branch, comparison, point, lower, upper, ...)."
            )
        checked.append(row)
    return checked


def _period_results(slug: str, period: str, rows: list[Mapping[str, Any]], reference: str) -> PeriodResults:
    window_of = []
    for position, row in enumerate(rows):
        try:
            window_of.append(_window(row.get("window_index")))
        except ValueError as e:
            raise ReportError(f"Experiment {slug!r}, period {period!r}, statistics row {position}: {e}.") from None
    own: dict[tuple, float | None] = {}  # each branch's own estimate, shown next to its uplift
    for row, window in zip(rows, window_of):
        if row.get("comparison") is None:
            key = (row["metric"], row["statistic"], row.get("segment") or "all",
                   row.get("analysis_basis") or "enrollments", row["branch"], window, _number(row.get("parameter")))
            own[key] = _number(row.get("point"))
    panels: dict[tuple, Panel] = {}
    present: dict[tuple[str, str], set[int]] = {}
    for row, window in zip(rows, window_of):
        present.setdefault((row["metric"], row["statistic"]), set()).add(window)
        if row["metric"] == IDENTITY_METRIC or row.get("comparison") != "relative_uplift":
            continue
        if row.get("comparison_to_branch") != reference or row["branch"] == reference:
            continue
        segment = row.get("segment") or "all"
        basis = row.get("analysis_basis") or "enrollments"
        key = (row["metric"], row["statistic"], segment, basis)
        panel = panels.setdefault(key, Panel(*key))
        parameter = _number(row.get("parameter"))
        panel.estimates.append(
            Estimate(
                branch=row["branch"],
                window=window,
                parameter=parameter,
                point=_number(row.get("point")),
                lower=_number(row.get("lower")),
                upper=_number(row.get("upper")),
                branch_point=own.get((*key, row["branch"], window, parameter)),
            )
        )
    by_metric: dict[str, list[Panel]] = {}
    for key in sorted(panels, key=lambda k: (k[0], k[2] != "all", k[2], k[3] != "enrollments", k[3], k[1])):
        by_metric.setdefault(key[0], []).append(panels[key])
    return PeriodResults(period, sorted(set(window_of)), by_metric, present)


# ------------------------------------------------------------------------------------------------ plots

W, H = 380, 210
LEFT, RIGHT, TOP, BOTTOM = 54, 12, 14, 40


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def uplift_plot(
    panel: Panel,
    *,
    period: str,
    branches: Sequence[str],
    colors: Mapping[str, str],
    reference: str,
    bigger_is_better: bool | None,
    x_title: str,
) -> str:
    """An inline SVG: relative uplift (y, %) per window (x) for each branch, with CI whiskers.

    Statistics with a parameter (deciles) are drawn over the parameter for the latest window instead.
    The half of the plot on the better side of zero is shaded when the metric says which side is better.
    """
    estimates = panel.estimates
    if panel.by_parameter:
        latest = max(e.window for e in estimates)
        estimates = [e for e in estimates if e.window == latest]
        xs = sorted({e.parameter for e in estimates if e.parameter is not None})
        x_of = {x: i for i, x in enumerate(xs)}
        x_labels = [f"{x:g}" for x in xs]
        x_title = f"{panel.statistic} (parameter), window {latest}"
        position = lambda e: x_of.get(e.parameter, 0)  # noqa: E731
    else:
        xs = sorted({e.window for e in estimates})
        x_of = {x: i for i, x in enumerate(xs)}
        x_labels = [str(x) for x in xs]
        position = lambda e: x_of[e.window]  # noqa: E731
    values = [v for e in estimates for v in (e.point, e.lower, e.upper) if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    pad = (high - low) * 0.08 or 0.01
    ticks = nice_ticks(low - pad, high + pad)
    y_min, y_max = ticks[0], ticks[-1]
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + (y_max - v) / (y_max - y_min) * plot_h

    band = plot_w / max(len(xs), 1)
    shown = [b for b in branches if b != reference and any(e.branch == b for e in estimates)]
    shown += sorted({e.branch for e in estimates} - set(shown))
    offset = {b: (i + 1) / (len(shown) + 1) for i, b in enumerate(shown)}

    def x(e: Estimate) -> float:
        return LEFT + band * (position(e) + offset[e.branch])

    label = (f"Relative uplift of {panel.metric} ({panel.statistic}) against {reference}, {period}, "
             f"segment {panel.segment}, {panel.basis} basis")
    out = [f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">']
    zero = y(0.0)
    if bigger_is_better is not None:
        top, bottom = (TOP, zero) if bigger_is_better else (zero, TOP + plot_h)
        out.append(f'<rect class="better" x="{LEFT}" y="{_fmt(top)}" width="{plot_w}" '
                   f'height="{_fmt(max(bottom - top, 0))}"/>')
        text_y = TOP + 11 if bigger_is_better else TOP + plot_h - 4
        out.append(f'<text class="better-label" x="{LEFT + plot_w - 4}" y="{_fmt(text_y)}" text-anchor="end">'
                   f'better {"&#8593;" if bigger_is_better else "&#8595;"}</text>')
    digits = 1 if y_max - y_min < 0.2 else 0
    for tick in ticks:
        ty = _fmt(y(tick))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ty}" y2="{ty}"/>')
        out.append(f'<text class="tick" x="{LEFT - 5}" y="{ty}" dy="3" text-anchor="end">{pct(tick, digits)}</text>')
    out.append(f'<line class="zero" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{_fmt(zero)}" y2="{_fmt(zero)}"/>')
    every = max(1, math.ceil(len(xs) / 14))
    for i, text in enumerate(x_labels):
        if i % every == 0:
            out.append(f'<text class="tick" x="{_fmt(LEFT + band * (i + 0.5))}" y="{TOP + plot_h + 14}" '
                       f'text-anchor="middle">{esc(text)}</text>')
    out.append(f'<text class="axis" x="{LEFT + plot_w / 2}" y="{H - 6}" text-anchor="middle">{esc(x_title)}</text>')
    out.append(f'<text class="axis" transform="translate(12 {TOP + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">uplift vs {esc(reference)}</text>')
    cap = min(5.0, band / (len(shown) + 1) / 2.5)
    for e in estimates:
        if e.point is None and (e.lower is None or e.upper is None):
            continue
        cx = x(e)
        color = colors.get(e.branch, PALETTE[-2])
        css, words = verdict(e.lower, e.upper, bigger_is_better)
        where = f"window {e.window}" if e.parameter is None else f"{panel.statistic} {e.parameter:g}, window {e.window}"
        tip = f"{e.branch} vs {reference}, {period} {where}: {pct(e.point)} [{pct(e.lower)}, {pct(e.upper)}], {words}"
        attrs = {
            "metric": panel.metric, "statistic": panel.statistic, "segment": panel.segment,
            "basis": panel.basis, "period": period, "branch": e.branch, "reference": reference,
            "window": e.window, "parameter": "" if e.parameter is None else f"{e.parameter:g}",
            "point": "" if e.point is None else repr(e.point),
            "lower": "" if e.lower is None else repr(e.lower),
            "upper": "" if e.upper is None else repr(e.upper),
        }
        data = " ".join(f'data-{k}="{esc(v)}"' for k, v in attrs.items())
        out.append(f'<g class="ci {css}" {data}><title>{esc(tip)}</title>')
        if e.lower is not None and e.upper is not None:
            y1, y2 = _fmt(y(e.upper)), _fmt(y(e.lower))
            out.append(f'<line x1="{_fmt(cx)}" x2="{_fmt(cx)}" y1="{y1}" y2="{y2}" stroke="{color}"/>')
            for cy in (y1, y2):
                out.append(f'<line x1="{_fmt(cx - cap)}" x2="{_fmt(cx + cap)}" y1="{cy}" y2="{cy}" stroke="{color}"/>')
        if e.point is not None:
            out.append(f'<circle cx="{_fmt(cx)}" cy="{_fmt(y(e.point))}" r="3.2" fill="{color}"/>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------------------------- report

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #dadce0; --good: #137333; --bad: #b3261e; --bg-good: #e6f4ea; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 18px 0 2px; } h4 { font-size: 13px; margin: 10px 0 4px; color: var(--muted); }
.meta, .muted, figcaption, .desc { color: var(--muted); } .meta span { margin-right: 14px; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.good { color: var(--good); } .bad { color: var(--bad); } .neutral { color: var(--muted); }
.verdict { border-radius: 6px; padding: 8px 12px; margin: 8px 0; max-width: 980px; }
.verdict.pass { background: var(--bg-good); } .verdict.fail { background: #fce8e6; }
.verdict.na { background: #f1f3f4; }
.plots { display: flex; flex-wrap: wrap; gap: 8px 18px; }
figure { margin: 0; } figcaption { font-size: 12px; max-width: 380px; }
svg.plot { background: #fff; overflow: visible; }
svg .grid { stroke: #eee; } svg .zero { stroke: #777; stroke-width: 1; }
svg .tick { font-size: 10px; fill: #666; } svg .axis { font-size: 10.5px; fill: #444; }
svg .better { fill: var(--bg-good); opacity: .65; } svg .better-label { font-size: 10px; fill: var(--good); }
svg g.ci line { stroke-width: 1.6; }
.legend span { display: inline-block; margin-right: 12px; } .swatch { display: inline-block; width: 10px;
  height: 10px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
.dir { font-size: 12px; font-weight: normal; margin-left: 6px; padding: 1px 6px; border-radius: 8px;
  background: #f1f3f4; }
details { margin: 6px 0; } summary { cursor: pointer; } details.period > summary { font-size: 16px; font-weight: 600; }
.metrics { display: flex; flex-wrap: wrap; gap: 0 28px; }
.metric { border-top: 1px solid var(--line); padding-bottom: 6px; flex: 0 1 auto; max-width: 100%; min-width: 380px; }
.metric .desc { max-width: 380px; margin: 2px 0 6px; }
pre { white-space: pre-wrap; font-size: 12px; margin: 0; }
footer { color: var(--muted); font-size: 12px; padding: 24px 20px; }
"""


def _metric_info(metadata: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    metrics = (metadata or {}).get("metrics") or {}
    info = metrics.get(name) or {}
    return {
        "friendly_name": info.get("friendly_name") or name.replace("_", " ").title(),
        "description": info.get("description") or "",
        "bigger_is_better": info.get("bigger_is_better") if name in metrics else None,
    }


def _outcomes_of(metadata: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """metric -> friendly names of the outcomes it belongs to."""
    found: dict[str, list[str]] = {}
    for outcome in ((metadata or {}).get("outcomes") or {}).values():
        for metric in outcome.get("metrics") or []:
            found.setdefault(metric, []).append(outcome.get("friendly_name") or outcome.get("slug") or "")
    return found


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "") -> str:
    """Cells are HTML already (escape values before passing them)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(content: Any, css: str = "", raw: bool = False, **data: Any) -> str:
    extra = "".join(f' data-{k}="{esc(v)}"' for k, v in data.items())
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}{extra}>{content if raw else esc(content)}</td>"


def _enrollment_section(
    slug: str,
    enrollments: Mapping[str, int],
    exposures: Mapping[str, int] | None,
    ratios: Mapping[str, float | None],
) -> str:
    try:
        srm: SampleRatioMismatch | None = sample_ratio_mismatch(dict(enrollments), dict(ratios))
        srm_error = None
    except ValueError as e:
        srm, srm_error = None, str(e)
    branches = list(dict.fromkeys([*ratios, *enrollments]))
    total = sum(enrollments.values())
    rows = []
    for branch in branches:
        clients = enrollments.get(branch, 0)
        expected = srm.expected.get(branch) if srm else None
        ratio = ratios.get(branch)
        rows.append([
            _td(branch),
            _td("not configured" if branch not in ratios else ("1 (none given)" if ratio is None else f"{ratio:g}")),
            _td(count(clients), "n clients", branch=branch, clients=clients),
            _td(f"{clients / total:.1%}" if total else "n/a", "n"),
            _td(count(expected) if expected is not None else "n/a", "n"),
            _td(count(exposures.get(branch, 0)) if exposures is not None else "n/a", "n exposed", branch=branch),
        ])
    rows.append([_td("all branches", raw=False), _td(""), _td(count(total), "n clients-total", clients=total),
                 _td("100%" if total else "n/a", "n"), _td(""),
                 _td(count(sum(exposures.values())) if exposures is not None else "n/a", "n")])
    table = _table(["branch", "ratio", "enrolled clients", "share", "expected", "exposed clients"], rows,
                   'id="enrollment-counts"')
    if srm_error is not None:
        box = (f'<div class="verdict na" id="srm" data-passed="unknown"><b>Sample ratio mismatch: not tested.</b> '
               f'{esc(srm_error)}</div>')
    else:
        state = "pass" if srm.passed else "fail"
        title = "Sample ratio check passed." if srm.passed else "Sample ratio check failed."
        box = (f'<div class="verdict {state}" id="srm" data-passed="{str(srm.passed).lower()}" '
               f'data-p-value="{esc(srm.p_value if srm.tested else "")}"><b>{title}</b> {esc(srm.description)}</div>')
    return f'<section id="enrollment"><h2>Enrollment</h2>{table}{box}</section>'


def _headline_section(
    results: dict[str, PeriodResults], metadata: Mapping[str, Any] | None, reference: str
) -> str:
    """Per metric, the latest window of its most complete outcome period, population `all`, enrollments."""
    rows = []
    seen: set[str] = set()
    for period in OUTCOME_PERIODS:
        found = results.get(period)
        if found is None:
            continue
        for metric, panels in found.panels.items():
            if metric in seen:
                continue
            candidates = [p for p in panels if p.segment == "all" and p.basis == "enrollments" and not p.by_parameter]
            candidates.sort(key=lambda p: HEADLINE_ORDER.index(p.statistic) if p.statistic in HEADLINE_ORDER else 99)
            if not candidates:
                continue
            seen.add(metric)
            panel = candidates[0]
            info = _metric_info(metadata, metric)
            latest = max(e.window for e in panel.estimates)
            for e in sorted((e for e in panel.estimates if e.window == latest), key=lambda e: e.branch):
                css, words = verdict(e.lower, e.upper, info["bigger_is_better"])
                rows.append([
                    _td(info["friendly_name"]), _td(panel.statistic),
                    _td(f"{PERIODS[period][0].lower()} {latest}" if period != "overall" else "overall"),
                    _td(e.branch), _td(pct(e.point), "n"), _td(f"[{pct(e.lower)}, {pct(e.upper)}]", "n"),
                    _td(words, css),
                ])
    if not rows:
        return ('<section id="summary"><h2>Summary</h2><p class="muted">No relative uplift has been computed yet '
                "(no outcome window has closed, or every metric failed).</p></section>")
    table = _table(["metric", "statistic", "window", "branch", f"uplift vs {esc(reference)}", "95% CI", "reading"],
                   rows, 'id="summary-table"')
    return (f'<section id="summary"><h2>Summary</h2><p class="muted">Latest window of each metric, all clients, '
            f"enrollments basis. A reading is only \"better\" or \"worse\" when the whole interval is on one side "
            f"of zero.</p>{table}</section>")


def _error_text(row: Mapping[str, Any]) -> str:
    message = str(row.get("message") or row.get("exception") or "")
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " ..."


def _explains(row: Mapping[str, Any], metric: str, period: str) -> bool:
    """A log row about this metric in this period (or in no particular period).

    Statistics are not compared: the log names a statistic by its config name (linear_model_mean) and
    the export by its output (mean_lm); one metric's errors of a period are few enough to show them all.
    """
    if row.get("metric") != metric:
        return False
    logged_period = str(row.get("analysis_period") or "")
    return not logged_period or logged_period == period or logged_period.startswith(f"{period}_")


def _missing_section(
    results: dict[str, PeriodResults],
    expected: Mapping[str, Sequence[tuple[str, str]]] | None,
    errors: Sequence[Mapping[str, Any]],
    metadata: Mapping[str, Any] | None,
) -> str:
    """Configured (metric, statistic) pairs of a period with no results in some of its windows, and why."""
    rows = []
    for period in PERIODS:
        found = results.get(period)
        if found is None or not expected or not expected.get(period):
            continue
        for metric, statistic in dict.fromkeys(expected[period]):
            have = found.present.get((metric, statistic), set())
            missing = [w for w in found.windows if w not in have]
            if not missing:
                continue
            why = [r for r in errors if _explains(r, metric, period)]
            reasons = "<br>".join(
                f"{esc(r.get('log_level') or '')} {esc(r.get('analysis_period') or '')} "
                f"{esc(r.get('segment') or '')}: {esc(_error_text(r))}" for r in why[:5]
            ) or NO_LOGGED_REASON
            windows = ", ".join(str(w) for w in missing)
            rows.append([
                _td(_metric_info(metadata, metric)["friendly_name"], metric=metric), _td(statistic),
                _td(PERIODS[period][0]), _td(windows), _td(reasons, raw=True),
            ])
    if not rows:
        body = '<p class="muted" id="missing-none">Every configured metric and statistic has results.</p>'
    else:
        body = _table(["metric", "statistic", "period", "windows without results", "why"], rows, 'id="missing"')
    return f'<section id="missing-results"><h2>Metrics without results</h2>{body}</section>'


def _log_section(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return ('<section id="log"><h2>Errors and warnings</h2><p class="muted">None logged in the current '
                "analysis cycle.</p></section>")
    rows = [
        [_td(str(r.get("timestamp") or "")[:19]), _td(r.get("log_level") or ""), _td(r.get("analysis_period") or ""),
         _td(r.get("metric") or ""), _td(r.get("statistic") or ""), _td(r.get("segment") or ""),
         _td(f"<pre>{esc(_error_text(r))}</pre>", raw=True)]
        for r in errors
    ]
    table = _table(["time (UTC)", "level", "window", "metric", "statistic", "segment", "message"], rows,
                   'id="errors-table"')
    return (f'<section id="log"><h2>Errors and warnings</h2><details><summary>{len(errors)} logged in the '
            f"current analysis cycle (errors/errors_&lt;slug&gt;.json)</summary>{table}</details></section>")


def _figure(panel: Panel, period: str, **plot_args: Any) -> str:
    svg = uplift_plot(panel, period=period, **plot_args)
    caption = f"{panel.statistic} · segment {panel.segment} · {panel.basis} basis"
    numbers = sorted(panel.estimates, key=lambda e: (e.window, e.parameter or 0, e.branch))
    rows = [
        [_td(e.window, "n"), *([_td(f"{e.parameter:g}", "n")] if panel.by_parameter else []), _td(e.branch),
         _td(num(e.branch_point), "n"), _td(pct(e.point), "n"), _td(f"[{pct(e.lower)}, {pct(e.upper)}]", "n")]
        for e in numbers
    ]
    headers = ["window", *(["parameter"] if panel.by_parameter else []), "branch", "estimate", "uplift", "95% CI"]
    return (f'<figure data-statistic="{esc(panel.statistic)}" data-segment="{esc(panel.segment)}" '
            f'data-basis="{esc(panel.basis)}">{svg}<figcaption>{esc(caption)}<details><summary>numbers</summary>'
            f"{_table(headers, rows)}</details></figcaption></figure>")


def _period_section(
    found: PeriodResults,
    metadata: Mapping[str, Any] | None,
    branches: Sequence[str],
    colors: Mapping[str, str],
    reference: str,
    outcomes_of: Mapping[str, list[str]],
    open_: bool,
) -> str:
    heading, unit = PERIODS[found.period]
    windows = len(found.windows)
    parts = [f'<details class="period" id="period-{esc(found.period)}"{" open" if open_ else ""}>'
             f"<summary>{esc(heading)} <span class=\"muted\">({windows} window{'s' if windows != 1 else ''}, "
             f"{len(found.panels)} metric{'s' if len(found.panels) != 1 else ''})</span></summary>"]
    if not found.panels:
        parts.append('<p class="muted">No relative uplift in this period (only counts or distributions).</p>')
    parts.append('<div class="metrics">')
    for metric in sorted(found.panels, key=lambda m: _metric_info(metadata, m)["friendly_name"].lower()):
        info = _metric_info(metadata, metric)
        better = info["bigger_is_better"]
        words = "&#8593; bigger is better" if better else "&#8595; smaller is better"
        direction = "" if better is None else f'<span class="dir">{words}</span>'
        outcomes = outcomes_of.get(metric)
        outcome_text = f' <span class="muted">· outcome: {esc(", ".join(outcomes))}</span>' if outcomes else ""
        plot_args = dict(branches=branches, colors=colors, reference=reference, bigger_is_better=better,
                         x_title=unit if found.period != "overall" else "")
        panels = found.panels[metric]
        main = [p for p in panels if p.segment == "all" and p.basis == "enrollments"]
        more = [p for p in panels if not (p.segment == "all" and p.basis == "enrollments")]
        parts.append(
            f'<div class="metric" data-metric="{esc(metric)}"><h3>{esc(info["friendly_name"])} '
            f'<span class="muted">({esc(metric)})</span>{direction}{outcome_text}</h3>'
            f'<p class="desc">{esc(info["description"])}</p>'
            f'<div class="plots">{"".join(_figure(p, found.period, **plot_args) for p in main)}</div>'
        )
        if more:
            plots = f"{len(more)} plot{'s' if len(more) != 1 else ''}"
            parts.append(f"<details><summary>Segments and exposures basis ({plots})</summary>"
                         f'<div class="plots">{"".join(_figure(p, found.period, **plot_args) for p in more)}'
                         "</div></details>")
        parts.append("</div>")
    parts.append("</div></details>")
    return "".join(parts)


def build_report(
    slug: str,
    *,
    statistics: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    enrollments: Mapping[str, int],
    ratios: Mapping[str, float | None],
    reference_branch: str | None,
    errors: Sequence[Mapping[str, Any]] = (),
    exposures: Mapping[str, int] | None = None,
    expected: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    analysis_date: dt.date | None = None,
    config_commit: str | None = None,
    generated_at: dt.datetime | None = None,
) -> str:
    """The HTML of ``reports/<slug>.html``.

    - ``statistics``: period (``overall``, ``week``, ``days28``, ``day``, ``preenrollment_week``,
      ``preenrollment_days28``) -> the rows of that period's statistics export (every window so far);
    - ``metadata``: the metadata export (friendly names, descriptions, ``bigger_is_better``, outcomes);
    - ``enrollments`` / ``exposures``: enrolled / exposed clients per branch; ``ratios``: Experimenter's
      branch ratios (the sample ratio mismatch test compares the two);
    - ``errors``: the errors export rows (``errors/errors_<slug>.json``);
    - ``expected``: period -> configured (metric, statistic output name) pairs; those without rows in a
      window are listed with the errors logged for them.
    """
    if not isinstance(slug, str) or not slug:
        raise ReportError(f"A results report needs the experiment slug; got {slug!r}.")
    if not isinstance(statistics, Mapping):
        raise ReportError(f"Experiment {slug!r}: statistics must map a period to its export rows, "
                          f"got {type(statistics).__name__}.")
    unknown = sorted(set(statistics) - set(PERIODS))
    if unknown:
        raise ReportError(f"Experiment {slug!r}: unknown analysis period(s) {unknown} in the statistics; use "
                          f"{', '.join(PERIODS)} (periods, not table suffixes such as 'weekly').")
    if not isinstance(enrollments, Mapping) or not isinstance(ratios, Mapping):
        raise ReportError(f"Experiment {slug!r}: enrollments and ratios must map a branch to a number.")
    errors = list(errors or [])
    if any(not isinstance(r, Mapping) for r in errors):
        raise ReportError(f"Experiment {slug!r}: errors must be the rows of errors/errors_{slug}.json (objects).")
    rows_by_period = {p: _check_rows(slug, p, rows) for p, rows in statistics.items()}
    branches = list(dict.fromkeys([*ratios, *enrollments]))
    reference = reference_branch or ("control" if "control" in branches else (branches[0] if branches else ""))
    results = {p: _period_results(slug, p, rows, reference) for p, rows in rows_by_period.items()}
    for period in results:
        for panels in results[period].panels.values():
            for panel in panels:
                branches.extend(e.branch for e in panel.estimates if e.branch not in branches)
    colors = {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(b for b in branches if b != reference)}

    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    facts = [f"<span>reference branch <b>{esc(reference)}</b></span>"]
    if analysis_date is not None:
        facts.append(f"<span>analysis date <b>{esc(analysis_date)}</b></span>")
    if config_commit:
        facts.append(f"<span>metric-hub commit <code>{esc(config_commit[:12])}</code></span>")
    facts.append(f"<span>generated {esc(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</span>")
    legend = "".join(f'<span><i class="swatch" style="background:{c}"></i>{esc(b)}</span>' for b, c in colors.items())
    missing_html = _missing_section(results, expected, errors, metadata)
    ordered = [p for p in PERIODS if p in results]
    first_open = next((p for p in ordered if results[p].panels), None)
    outcomes_of = _outcomes_of(metadata)
    periods_html = "".join(
        _period_section(results[p], metadata, branches, colors, reference, outcomes_of, p == first_open)
        for p in ordered
    ) or '<p class="muted">No statistics have been exported yet.</p>'
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in (
        ("enrollment", "Enrollment"), ("summary", "Summary"), ("missing-results", "Metrics without results"),
        ("results", "Results"), ("log", "Errors and warnings")))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Results: {esc(slug)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>Results of {esc(slug)}</h1><p class="meta">{"".join(facts)}</p><nav>{nav}</nav></header>'
        "<main>"
        f"{_enrollment_section(slug, enrollments, exposures, ratios)}"
        f"{_headline_section(results, metadata, reference)}"
        f"{missing_html}"
        f'<section id="results"><h2>Results</h2><p class="muted">Relative uplift of each branch against '
        f"<b>{esc(reference)}</b> with its 95% interval, per analysis window. The shaded side of zero is the "
        f'better one for the metric. Hover a point for its numbers.</p><p class="legend">{legend}</p>'
        f"{periods_html}</section>"
        f"{_log_section(errors)}"
        "</main>"
        f"<footer>jetstream_assets results report for {esc(slug)}: built from statistics/, metadata/ and errors/ "
        "exports; self-contained (no scripts, no network).</footer>"
        "</body></html>\n"
    )
