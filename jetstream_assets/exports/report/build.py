"""build_report: check the inputs, compute the model, render the page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from jetstream_assets.exports.report.format import PERIODS, STATISTIC_LABELS
from jetstream_assets.exports.report.model import ReportError, check_rows, metric_info, results
from jetstream_assets.exports.report.overview import Timeline, missing_results, overview
from jetstream_assets.exports.report.plots import PALETTE
from jetstream_assets.exports.report.render import render


def configured_methods(metrics_by_period: Mapping[Any, Sequence[Any]], periods: Any = None) -> dict[str, list[dict]]:
    """The ``methods`` argument from a resolved config's ``metrics`` (period -> summaries)."""
    from jetstream_assets.statistics import STATISTICS

    found: dict[str, list[dict]] = {}
    for period, summaries in metrics_by_period.items():
        name = getattr(period, "value", period)
        if periods is not None and name not in periods:
            continue
        found[name] = []
        for s in summaries:
            statistic = s.statistic.name
            covariate = (s.statistic.params or {}).get("covariate_adjustment")
            found[name].append({
                "metric": s.metric.name, "statistic": statistic,
                "output": STATISTICS[statistic].output if statistic in STATISTICS else statistic,
                "pre_treatments": [p.name for p in s.pre_treatments or []],
                "covariate": {"metric": covariate.get("metric") or s.metric.name,
                              "period": str(getattr(covariate.get("period"), "value", covariate.get("period")))}
                if isinstance(covariate, Mapping) else None,
            })
    return found


def _methods(methods: Mapping[str, Sequence[Mapping[str, Any]]] | None) -> dict[str, dict[tuple[str, str], dict]]:
    """period -> (metric, statistic output name) -> the configured method."""
    return {period: {(m["metric"], m["output"]): dict(m) for m in items if isinstance(m, Mapping)}
            for period, items in (methods or {}).items()}


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
    methods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    experiment: Mapping[str, Any] | None = None,
    timeline: Timeline | None = None,
    analysis_date: dt.date | None = None,
    config_commit: str | None = None,
    generated_at: dt.datetime | None = None,
) -> str:
    """The HTML of ``reports/<slug>.html``.

    - ``statistics``: period (``overall``, ``week``, ``day``, ``days28``, ``preenrollment_week``,
      ``preenrollment_days28``) -> the rows of that period's statistics export (every window so far);
    - ``metadata``: the metadata export (friendly names, descriptions, ``bigger_is_better``, outcomes);
    - ``enrollments`` / ``exposures``: enrolled / exposed clients per branch; ``ratios``: Experimenter's
      branch ratios (the sample ratio check compares the two);
    - ``errors``: the errors export rows, with ``analysis_period`` where the logs recorded it
      (``with_log_fields``);
    - ``methods``: period -> configured summaries, each ``{"metric", "output"`` (the exported statistic
      name), ``"statistic"`` (its config name), ``"pre_treatments"``, ``"covariate"`` (``{"metric",
      "period"}`` or None)``}``; ``expected`` (default: from ``methods``): period -> (metric, output) pairs
      whose windows without rows are listed with the errors logged for them;
    - ``experiment``: the Experimenter (v8) record; ``timeline``: dates the windows close on, so the header
      names the analysis date of the latest window shown; ``analysis_date``: the run that wrote the page.
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
    fields = ("timestamp", "log_level", "analysis_period", "analysis_basis", "metric", "statistic", "segment",
              "message", "exception")
    errors = [{**dict.fromkeys(fields), **r} for r in errors]
    rows_by_period = {p: check_rows(slug, p, rows) for p, rows in statistics.items()}
    branches = list(dict.fromkeys([*ratios, *enrollments]))
    reference = reference_branch or ("control" if "control" in branches else (branches[0] if branches else ""))
    for rows in rows_by_period.values():
        branches.extend(dict.fromkeys(r["branch"] for r in rows if r["branch"] not in branches))
    if reference in branches:
        branches.remove(reference)
    branches.insert(0, reference)
    colors = {reference: "#5f6368"}
    colors.update({b: PALETTE[i % len(PALETTE)] for i, b in enumerate(branches[1:])})
    by_method = _methods(methods)
    if expected is None and methods is not None:
        expected = {p: list(m) for p, m in by_method.items()}

    def closed_on(period: str, window: int) -> dt.date | None:
        return timeline.closed_on(period, window) if timeline is not None else None

    found = results(rows_by_period, metadata, branches, reference, colors, by_method, errors, closed_on)
    shown_dates = [t.closed_on for t in found.tabs if t.closed_on is not None]
    today = analysis_date or (max(shown_dates) if shown_dates else None)
    friendly = lambda m: metric_info(metadata, m)["friendly_name"]  # noqa: E731
    return render(
        slug=slug,
        overview=overview(slug, experiment, metadata, branches, reference, colors, enrollments, exposures, ratios,
                          max([today, *shown_dates]) if today else None),
        results=found,
        reference=reference,
        colors=colors,
        missing=missing_results(found.present, found.windows, expected, errors, friendly, STATISTIC_LABELS),
        errors=errors,
        analysis_date=max(shown_dates) if shown_dates else analysis_date,
        run_date=analysis_date,
        config_commit=config_commit,
        generated_at=generated_at or dt.datetime.now(dt.timezone.utc),
    )


def failure_page(slug: str, problem: str, analysis_date: dt.date | None = None,
                 generated_at: dt.datetime | None = None) -> str:
    """What replaces the report when it cannot be built: never an older report left in place silently."""
    from jetstream_assets.exports.report.render import render_failure

    return render_failure(slug=slug, problem=problem, analysis_date=analysis_date,
                          generated_at=generated_at or dt.datetime.now(dt.timezone.utc))
