"""What the results report shows, computed from the statistics export rows, the metadata export, the
Experimenter record and the configured methods: per period (a tab), per outcome, metric, statistic,
segment and analysis basis, each branch's absolute value, its absolute and relative difference against the
reference branch with their intervals, a reading in words, and the plot over the windows so far."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jetstream_assets.exports.report.format import (
    BASIS_LABELS,
    HEADLINE_PERIODS,
    LINEAR_MODELS,
    PERIODS,
    PRE_TREATMENT_LABELS,
    PREENROLLMENT_PERIODS,
    STATISTIC_LABELS,
    interval,
    label,
    num,
    number,
    pct,
    reading,
    segment_label,
)
from jetstream_assets.exports.report.plots import Plot, Point, uplift_plot

IDENTITY_METRIC = "identity"  # rows of this "metric" count clients per branch
DISTRIBUTIONS = ("kernel_density_estimate", "empirical_cdf")  # many points per branch: export only
HEADLINE_ORDER = ("mean_lm", "mean", "binomial", "population_ratio", "per_client_dau_impact", "mean_lm_noclip")
REQUIRED_ROW_FIELDS = ("metric", "statistic", "branch", "comparison", "point", "lower", "upper")
FALLBACK_WORDS = "unadjusted"  # what the covariate fallback's log message says


class ReportError(ValueError):
    """Inputs that cannot make a results report; the message names the experiment and the input."""


@dataclass
class Estimate:
    point: float | None
    lower: float | None
    upper: float | None


@dataclass
class BranchRow:
    branch: str
    color: str
    parameter: str
    is_reference: bool
    absolute: Estimate | None
    difference: Estimate | None
    relative: Estimate | None
    css: str
    words: str

    @property
    def absolute_text(self) -> tuple[str, str]:
        a = self.absolute
        return ("no data", "") if a is None else (num(a.point), interval(a.lower, a.upper, num))

    @property
    def difference_text(self) -> tuple[str, str]:
        d = self.difference
        fmt = lambda v: num(v, signed=True)  # noqa: E731
        return ("", "") if d is None else (fmt(d.point), interval(d.lower, d.upper, fmt))

    @property
    def relative_text(self) -> tuple[str, str]:
        r = self.relative
        return ("", "") if r is None else (pct(r.point), interval(r.lower, r.upper))


@dataclass
class Panel:
    """One metric's statistic in one period, segment and basis: its table (latest window) and plot."""

    statistic: str
    statistic_label: str
    segment: str
    basis: str
    window: int
    rows: list[BranchRow]
    plot: Plot | None
    notes: list[str]


@dataclass
class MetricBlock:
    metric: str
    friendly: str
    description: str
    bigger_is_better: bool | None
    panels: list[Panel]


@dataclass
class Group:
    title: str
    description: str
    metrics: list[MetricBlock]


@dataclass
class Tab:
    period: str
    label: str
    unit: str
    windows: list[int]
    closed_on: dt.date | None
    groups: list[Group]


@dataclass
class SummaryRow:
    group: str
    friendly: str
    statistic: str
    period: str
    branch: str
    color: str
    relative: str
    interval: str
    css: str
    words: str
    across: str


@dataclass
class Results:
    tabs: list[Tab]
    summary: list[SummaryRow]
    segments: list[str]
    bases: list[str]
    present: dict[str, dict[tuple[str, str], set[int]]] = field(default_factory=dict)
    windows: dict[str, list[int]] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------- checking


def window_of(value: Any) -> int:
    if value is None:
        return 1  # a table without windows (a single statistics table) is its first window
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"window_index {value!r} is not a window number") from None


def check_rows(slug: str, period: str, rows: Any) -> list[Mapping[str, Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise ReportError(
            f"Experiment {slug!r}: the statistics of period {period!r} must be a list of statistics export "
            f"rows (statistics/statistics_{slug}_<period>.json), got {type(rows).__name__}.")
    checked = []
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReportError(f"Experiment {slug!r}, period {period!r}: statistics row {position} is a "
                              f"{type(row).__name__}, not an object with the statistics columns.")
        missing = [c for c in REQUIRED_ROW_FIELDS if c not in row]
        if missing:
            raise ReportError(
                f"Experiment {slug!r}, period {period!r}: statistics row {position} lacks {missing}; pass the "
                "rows of the statistics export (metric, statistic, branch, comparison, point, lower, upper, ...).")
        try:
            window = window_of(row.get("window_index"))
        except ValueError as e:
            raise ReportError(f"Experiment {slug!r}, period {period!r}, statistics row {position}: {e}.") from None
        checked.append({**row, "window_index": window, "segment": row.get("segment") or "all",
                        "analysis_basis": row.get("analysis_basis") or "enrollments",
                        "parameter": number(row.get("parameter"))})
    return checked


# ---------------------------------------------------------------------------------------------- methods


def _unadjusted_windows(errors: Sequence[Mapping[str, Any]], metric: str, period: str) -> set[int]:
    """Windows whose linear model fell back to unadjusted inferences (the statistics step logs it)."""
    found = set()
    for row in errors:
        if row.get("metric") != metric or FALLBACK_WORDS not in str(row.get("message") or ""):
            continue
        logged, _, index = str(row.get("analysis_period") or "").rpartition("_")
        if logged == period and index.isdigit():
            found.add(int(index))
    return found


def method_notes(method: Mapping[str, Any] | None, statistic: str, period: str, unadjusted: set[int],
                 windows: Sequence[int]) -> tuple[list[str], bool]:
    """Method notes in words, and whether a covariate adjustment applies (configured, for this period)."""
    notes = [f"Statistic: {label(statistic, STATISTIC_LABELS)}"
             + (f" ({method['statistic']})" if method and method.get("statistic") else "") + "."]
    treatments = [label(t, PRE_TREATMENT_LABELS) for t in (method or {}).get("pre_treatments") or []]
    notes.append(f"Pre-treatments: {', '.join(treatments)}." if treatments else "Pre-treatments: none.")
    if statistic not in LINEAR_MODELS:
        return notes, False
    if method is None:
        notes.append("Covariate adjustment: not known (the analysis configuration was not available).")
        return notes, False
    covariate = method.get("covariate")
    if not covariate or period in PREENROLLMENT_PERIODS or covariate.get("period") == period:
        notes.append("Not covariate-adjusted (no covariate applies to this period).")
        return notes, False
    cov_period = str(covariate.get("period") or "")
    cov_period = PERIODS[cov_period][0] if cov_period in PERIODS else label(cov_period, {})
    cov = f"{covariate.get('metric') or 'the metric'} in the {cov_period.lower()}"
    fell_back = sorted(w for w in windows if w in unadjusted)
    adjusted = [w for w in windows if w not in unadjusted]
    if not fell_back:
        notes.append(f"Covariate-adjusted for {cov}.")
    elif not adjusted:
        notes.append(f"Not covariate-adjusted: the covariate ({cov}) was missing, so the linear model fell "
                     "back to unadjusted inferences (see the errors).")
    else:
        notes.append(f"Covariate-adjusted for {cov}, except window(s) {', '.join(map(str, fell_back))}: the "
                     "covariate was missing there and the model fell back to unadjusted inferences (hollow points).")
    return notes, True


# ---------------------------------------------------------------------------------------------- results


def metric_info(metadata: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    metrics = (metadata or {}).get("metrics") or {}
    info = metrics.get(name) if isinstance(metrics.get(name), Mapping) else {}
    return {
        "friendly_name": str(info.get("friendly_name") or name.replace("_", " ").title()),
        "description": str(info.get("description") or ""),
        "bigger_is_better": info.get("bigger_is_better") if name in metrics else None,
    }


def _groups(metadata: Mapping[str, Any] | None, metrics: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """(title, description, metrics) per outcome, then the metrics in no outcome."""
    groups, placed = [], set()
    for name, outcome in ((metadata or {}).get("outcomes") or {}).items():
        if not isinstance(outcome, Mapping):
            continue
        members = [m for m in outcome.get("metrics") or [] if m in metrics and m not in placed]
        if members:
            placed.update(members)
            groups.append((str(outcome.get("friendly_name") or outcome.get("slug") or name),
                           str(outcome.get("description") or ""), members))
    rest = [m for m in metrics if m not in placed]
    if rest:
        groups.append(("Other metrics" if groups else "Metrics", "", rest))
    return groups


class _Period:
    """The rows of one period, indexed for look-ups."""

    def __init__(self, rows: list[Mapping[str, Any]]):
        self.index: dict[tuple, Mapping[str, Any]] = {}
        self.panels: dict[tuple, set[int]] = {}  # (metric, statistic, segment, basis) -> windows
        self.by_panel: dict[tuple, list[tuple]] = {}  # (metric, statistic, segment, basis) -> index keys
        self.present: dict[tuple[str, str], set[int]] = {}
        for r in rows:
            window = r["window_index"]
            self.present.setdefault((r["metric"], r["statistic"]), set()).add(window)
            if r["metric"] == IDENTITY_METRIC or r["statistic"] in DISTRIBUTIONS:
                continue
            key = (r["metric"], r["statistic"], r["segment"], r["analysis_basis"])
            self.panels.setdefault(key, set()).add(window)
            full = (*key, window, r["parameter"], r["branch"], r.get("comparison"), r.get("comparison_to_branch"))
            self.index[full] = r
            self.by_panel.setdefault(key, []).append(full)
        self.windows = sorted({r["window_index"] for r in rows})

    def estimate(self, key: tuple, window: int, parameter, branch: str, comparison, to) -> Estimate | None:
        row = self.index.get((*key, window, parameter, branch, comparison, to))
        if row is None:
            return None
        return Estimate(number(row.get("point")), number(row.get("lower")), number(row.get("upper")))

    def parameters(self, key: tuple, window: int) -> list:
        found = {k[5] for k in self.by_panel.get(key, []) if k[4] == window}
        return sorted(found, key=lambda p: (p is not None, p or 0))


def _panel(found: _Period, key: tuple, period: str, branches: Sequence[str], reference: str,
           colors: Mapping[str, str], info: Mapping[str, Any], method: Mapping[str, Any] | None,
           errors: Sequence[Mapping[str, Any]]) -> Panel:
    metric, statistic, segment, basis = key
    windows = sorted(found.panels[key])
    latest = windows[-1]
    better = info["bigger_is_better"]
    unadjusted = _unadjusted_windows(errors, metric, period)
    # adjusted or not per window, for a linear model whose config asks for a covariate
    notes, covariate = method_notes(method, statistic, period, unadjusted, windows)
    rows = []
    for parameter in found.parameters(key, latest):
        for branch in branches:
            own = found.estimate(key, latest, parameter, branch, None, None)
            if branch == reference:
                rows.append(BranchRow(branch, colors.get(branch, "#777"), "" if parameter is None else f"{parameter:g}",
                                      True, own, None, None, "neutral", "Reference branch"))
                continue
            difference = found.estimate(key, latest, parameter, branch, "difference", reference)
            relative = found.estimate(key, latest, parameter, branch, "relative_uplift", reference)
            shown = relative or difference
            css, words = reading(shown.lower, shown.upper, better) if shown else ("neutral", "No comparison")
            if own is None and shown is None:
                css, words = "neutral", "No results for this branch"
            rows.append(BranchRow(branch, colors.get(branch, "#777"), "" if parameter is None else f"{parameter:g}",
                                  False, own, difference, relative, css, words))
    points = [
        Point(k[6], k[4], k[5], number(found.index[k].get("point")), number(found.index[k].get("lower")),
              number(found.index[k].get("upper")), (k[4] not in unadjusted) if covariate else None)
        for k in found.by_panel[key]
        if k[7] == "relative_uplift" and k[8] == reference and k[6] != reference
    ]
    plot = None
    if points:
        plot = uplift_plot(
            points,
            label=(f"Relative difference of {info['friendly_name']} ({label(statistic, STATISTIC_LABELS)}) against "
                   f"{reference}, {PERIODS[period][0]}, {segment_label(segment)}, {BASIS_LABELS.get(basis, basis)}"),
            data={"metric": metric, "statistic": statistic, "segment": segment, "basis": basis, "period": period},
            colors=colors, order=branches, reference=reference, bigger_is_better=better,
            x_title=PERIODS[period][1] if period != "overall" else "",
            statistic_label=label(statistic, STATISTIC_LABELS))
    return Panel(statistic, label(statistic, STATISTIC_LABELS), segment, basis, latest, rows, plot, notes)


def _statistic_order(statistic: str) -> tuple:
    return (HEADLINE_ORDER.index(statistic) if statistic in HEADLINE_ORDER else 99, statistic)


def results(
    rows_by_period: Mapping[str, list[Mapping[str, Any]]],
    metadata: Mapping[str, Any] | None,
    branches: Sequence[str],
    reference: str,
    colors: Mapping[str, str],
    methods: Mapping[str, Mapping[tuple[str, str], Mapping[str, Any]]],
    errors: Sequence[Mapping[str, Any]],
    closed_on: Any,
) -> Results:
    tabs, segments, bases = [], set(), set()
    found_by_period = {}
    for period in PERIODS:
        if period not in rows_by_period:
            continue
        found = found_by_period[period] = _Period(rows_by_period[period])
        metric_names = sorted({k[0] for k in found.panels},
                              key=lambda m: metric_info(metadata, m)["friendly_name"].lower())
        groups = []
        for title, description, members in _groups(metadata, metric_names):
            blocks = []
            for metric in members:
                info = metric_info(metadata, metric)
                keys = sorted((k for k in found.panels if k[0] == metric),
                              key=lambda k: (_statistic_order(k[1]), k[2] != "all", k[2], k[3]))
                segments.update(k[2] for k in keys)
                bases.update(k[3] for k in keys)
                panels = [_panel(found, k, period, branches, reference, colors, info,
                                 methods.get(period, {}).get((metric, k[1])), errors) for k in keys]
                blocks.append(MetricBlock(metric, info["friendly_name"], info["description"],
                                          info["bigger_is_better"], panels))
            groups.append(Group(title, description, blocks))
        latest = found.windows[-1] if found.windows else None
        tabs.append(Tab(period, PERIODS[period][0], PERIODS[period][1], found.windows,
                        closed_on(period, latest) if latest is not None else None, groups))
    summary = _summary(tabs, found_by_period, reference)
    return Results(
        tabs, summary,
        sorted(segments, key=lambda s: (s != "all", s)) or ["all"],
        sorted(bases, key=lambda b: (b != "enrollments", b)) or ["enrollments"],
        {p: f.present for p, f in found_by_period.items()},
        {p: f.windows for p, f in found_by_period.items()},
    )


def _summary(tabs: list[Tab], found_by_period: Mapping[str, _Period], reference: str) -> list[SummaryRow]:
    """Per metric and branch: the latest window of its most complete period, and how often the
    difference was significant over that period's windows (all clients, enrollments basis)."""
    rows, seen = [], set()
    by_period = {t.period: t for t in tabs}
    for period in HEADLINE_PERIODS:
        tab = by_period.get(period)
        if tab is None:
            continue
        for group in tab.groups:
            for block in group.metrics:
                if block.metric in seen:
                    continue
                panels = [p for p in block.panels if p.segment == "all" and p.basis == "enrollments"
                          and any(r.relative for r in p.rows) and not any(r.parameter for r in p.rows)]
                if not panels:
                    continue
                seen.add(block.metric)
                panel = panels[0]
                found = found_by_period[period]
                key = (block.metric, panel.statistic, "all", "enrollments")
                for row in panel.rows:
                    if row.is_reference or row.relative is None:
                        continue
                    significant = 0
                    windows = sorted(found.panels[key])
                    for window in windows:
                        e = found.estimate(key, window, None, row.branch, "relative_uplift", reference)
                        if e and e.lower is not None and e.upper is not None and not e.lower <= 0 <= e.upper:
                            significant += 1
                    where = "overall" if period == "overall" else f"{PERIODS[period][0].lower()} {panel.window}"
                    rows.append(SummaryRow(
                        group.title, block.friendly, panel.statistic_label, where, row.branch, row.color,
                        *row.relative_text, row.css, row.words,
                        f"significant in {significant} of {len(windows)} {PERIODS[period][0].lower()} window"
                        f"{'s' if len(windows) != 1 else ''}"))
    return rows
