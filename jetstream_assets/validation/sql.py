"""The SQL of a resolved config: the enrollments query and one metrics query per basis over one window
holding every metric of every period (as Jetstream's `validate` builds them), against a stand-in
enrollments table so a metric's problem is never blamed on the enrollments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import attr
from metric_config_parser.metric import AnalysisPeriod, Summary
from mozanalysis.experiment import TimeLimits
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config.resolve import ResolvedConfig
from jetstream_assets.sql.queries import bases_for, enrollments_sql, metrics_for, metrics_sql
from jetstream_assets.validation.report import CONFIG, Problem
from jetstream_assets.validation.resolution import DEFAULT_ANALYSIS_DAYS, DEFAULT_ENROLLMENT_DAYS
from jetstream_assets.validation.synthetic_tables import SampleExperiment
from jetstream_assets.validation.targets import Target

ENROLLMENTS_CTE = "validation_enrollments"

# ----------------------------------------------------------------------------------------------
# SQL


def validation_time_limits(resolved: ResolvedConfig, today: dt.date) -> TimeLimits:
    """One window over the whole analysis, as Jetstream validates: from the config's dates when it
    has them (an end date alone places the start before it), else a recent 21-day analysis."""
    conf = resolved.config.experiment
    enrollment_days = (conf.enrollment_period or DEFAULT_ENROLLMENT_DAYS - 1) + 1
    own_start = conf.experiment_spec.start_date
    end = conf.end_date.date() if conf.end_date else None
    if own_start is not None:
        start = conf.start_date.date()
    elif end is not None:
        start = end - dt.timedelta(days=enrollment_days + DEFAULT_ANALYSIS_DAYS - 1)
    else:
        start = today - dt.timedelta(days=enrollment_days + DEFAULT_ANALYSIS_DAYS + 1)
    if end is not None:
        length = (end - start).days - enrollment_days + 1
        if length < 0:
            raise ValueError(
                f"the enrollment period ({enrollment_days} days) is longer than the experiment "
                f"({start} to {end}): fix enrollment_period, start_date or end_date"
            )
        length = max(length, 1)
    else:
        length = DEFAULT_ANALYSIS_DAYS
    return _one_window(start, enrollment_days, length)


def _recent_limits(today: dt.date) -> TimeLimits:
    enrollment_days, length = DEFAULT_ENROLLMENT_DAYS, DEFAULT_ANALYSIS_DAYS
    return _one_window(today - dt.timedelta(days=enrollment_days + length + 1), enrollment_days, length)


def _one_window(start: dt.date, enrollment_days: int, length: int) -> TimeLimits:
    return TimeLimits.for_single_analysis_window(
        first_enrollment_date=start.isoformat(),
        last_date_full_data=(start + dt.timedelta(days=enrollment_days + length)).isoformat(),
        analysis_start_days=0,
        analysis_length_dates=length,
        num_dates_enrollment=enrollment_days,
    )


def _mock_enrollments(resolved: ResolvedConfig) -> str:
    """A stand-in enrollments table for metrics dry runs: the enrollments query is dry-run on its own,
    so a metric's problem is never blamed on the enrollments (two rows: BigQuery refuses a constant
    one-row table in some plans). Metrics never read segment columns, so it has none: the metrics
    queries of configs that differ only in segments are then the same query."""
    row = (
        "SELECT '00000000-0000-4000-8000-000000000000' AS analysis_id, 'control' AS branch, "
        "DATE('2024-01-01') AS enrollment_date, 1 AS num_enrollment_events, "
        "DATE('2024-01-01') AS exposure_date, 1 AS num_exposure_events"
    )
    return f"{row} UNION ALL {row}"


def _with_enrollments(metrics_sql: str, resolved: ResolvedConfig) -> str:
    body = re.sub(r"^\s*WITH\s", "", metrics_sql, count=1, flags=re.IGNORECASE)
    return f"WITH {ENROLLMENTS_CTE} AS ({_mock_enrollments(resolved)}),\n{body}"


def metrics_query(
    resolved: ResolvedConfig, limits: TimeLimits, basis: AnalysisBasis, names: list[str] | None = None,
    *, canonical: bool = False,
) -> str | None:
    sql = all_metrics_sql(resolved, limits, basis, ENROLLMENTS_CTE, names, canonical=canonical)
    return None if sql is None else _with_enrollments(sql, resolved)


def _bases(resolved: ResolvedConfig) -> list[AnalysisBasis]:
    """Bases whose metrics queries differ: without a custom exposure signal the exposures query is the
    enrollments one plus a filter on the enrollments table, so the enrollments one is enough (Jetstream
    dry-runs that basis only) unless some metric is analysed on exposures only."""
    metrics = [s.metric for summaries in resolved.config.metrics.values() for s in summaries]
    wanted = {b for m in metrics for b in m.analysis_bases}
    bases = [b for b in (AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES) if b in wanted]
    exposures_only = any(AnalysisBasis.ENROLLMENTS not in m.analysis_bases for m in metrics)
    if len(bases) == 2 and resolved.config.experiment.exposure_signal is None and not exposures_only:
        bases = bases[:1]
    return bases


@dataclass(frozen=True)
class Query:
    """One query of a resolved config: the enrollments query, or the metrics `names` (of one data source
    when validating, of a period for the sample tables) on one basis."""

    label: str  # "enrollments", "metrics/<basis>/<data source>" or "<period>/<basis>"
    sql: str
    basis: AnalysisBasis | None = None
    data_source: str | None = None
    names: tuple[str, ...] = ()
    period: AnalysisPeriod | None = None
    #: a bundle of data sources: (data source, its metric names), queried one by one when the bundle fails
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: platform defaults' metrics, in an order of their own (`all_metrics_sql`'s `canonical`)
    shared: bool = False


#: the experiment slug written into validation SQL: queries then only differ where configs differ, so the
#: queries every config shares (its platform's defaults) are compiled once per call
STAND_IN_SLUG = "validation-experiment"


#: the sample size written into validation SQL when the config sets a whole number (`sample_id < n`
#: compiles the same for every n), so configs that differ only in it share their enrollments query
STAND_IN_SAMPLE_SIZE = 100


def _stand_in_slug(resolved: ResolvedConfig) -> ResolvedConfig:
    """The config with the experiment's own slug and sample size replaced by stand-ins (a sample size that
    is not a whole number is kept: its SQL may not compile)."""
    conf = resolved.config.experiment
    experiment = attr.evolve(conf.experiment, normandy_slug=STAND_IN_SLUG)
    size = conf.sample_size
    if isinstance(size, int) and not isinstance(size, bool) and size:
        size = STAND_IN_SAMPLE_SIZE
    stand_in = attr.evolve(conf, experiment=experiment, sample_size=size)
    return dataclasses.replace(resolved, config=attr.evolve(resolved.config, experiment=stand_in))


def data_source_groups(
    resolved: ResolvedConfig, basis: AnalysisBasis, shared: frozenset[str] = frozenset()
) -> dict[tuple[str, bool], list[str]]:
    """Metric names of a basis by (data source their SQL reads, whether they are `shared`), in config
    order. A metric computed from others via depends_on goes with its upstream metrics' data sources (it
    queries them). Shared metrics (the platform defaults a config does not redefine) get queries of their
    own, the same for every config, so they are compiled once."""
    out: dict[tuple[str, bool], list[str]] = {}
    for summary in unique_summaries(resolved):
        metric = summary.metric
        if basis not in metric.analysis_bases:
            continue
        sources = [metric] if metric.select_expression else [d.metric for d in metric.depends_on or []]
        for source in sources:
            if source.select_expression and source.data_source is not None:
                names = out.setdefault((source.data_source.name, metric.name in shared), [])
                if metric.name not in names:
                    names.append(metric.name)
    return out


def _shared_metrics(target: Target) -> frozenset[str]:
    """Metrics of the platform defaults that the validated file and the outcomes it uses do not (re)define
    (an outcome it does not use changes nothing: its metrics stay shared)."""
    loaded = target.loaded
    if loaded is None or target.platform is None or target.kind != "experiment" or target.resolved is None:
        return frozenset()
    defaults = loaded.raw.get(loaded.defaults_path(target.platform)) or {}
    listed = {m for v in (defaults.get("metrics") or {}).values() if isinstance(v, list) for m in v}
    own = (loaded.raw.get(target.rel or "") or {}).get("metrics") or {}
    conf = target.resolved.config.experiment
    used = [*(conf.experiment.outcomes or []), *(conf.experiment_spec.outcomes or [])]
    outcomes = {m for slug in used if isinstance(slug, str)
                for m in (loaded.raw.get(loaded.outcome_path(slug, target.platform)) or {}).get("metrics") or {}}
    return frozenset(listed - set(own) - outcomes)


def build_queries(target: Target, today: dt.date, *, own_dates: bool = True) -> None:
    """The enrollments query, and per basis one metrics query per data source (a failing data source
    or metric then never hides the others, and the queries configs share are compiled once).

    Without `own_dates` (dry runs that only compile, where dates are mere literals) every config's
    queries cover the same recent window, so configs that differ only in dates share their queries;
    the config's own dates are still checked."""
    if target.resolved is None:
        return
    try:
        target.limits = validation_time_limits(target.resolved, today)
        if not own_dates:
            target.limits = _recent_limits(today)
        target.resolved = resolved = _stand_in_slug(target.resolved)
    except ValueError as e:
        target.report.problems.append(Problem(target.display, "experiment.enrollment_period", str(e), CONFIG))
        return
    try:
        target.queries.append(Query("enrollments", enrollments_sql(resolved, target.limits)))
    except Exception as e:  # noqa: BLE001 - mozanalysis rejects the enrollment settings
        target.report.problems.append(
            Problem(target.display, "experiment", f"the enrollments query cannot be built: {e}", CONFIG)
        )
    shared = _shared_metrics(target)
    checked: set[str] = set()
    for basis in _bases(resolved):
        groups = data_source_groups(resolved, basis, shared)
        if basis == AnalysisBasis.EXPOSURES and checked:
            # the exposures query is the enrollments one joined with the exposure signal (dry-run in the
            # enrollments query): metrics compiled on the enrollments basis need only one such check
            kept = {k: v for k, v in groups.items() if not set(v) <= checked}
            first = next(iter(groups.items()), None)
            groups = kept or dict([first] if first else [])
        checked |= {n for names in groups.values() for n in names}
        for shared_flag in (True, False):
            bundle = {ds: names for (ds, flag), names in groups.items() if flag == shared_flag}
            target.queries += bundled_queries(target, basis, bundle, shared=shared_flag)


def bundled_queries(
    target: Target, basis: AnalysisBasis, groups: dict[str, list[str]], *, shared: bool = False
) -> list[Query]:
    """One metrics query holding every data source of `groups` (as Jetstream's own query does): most
    configs compile, and one query costs a fraction of one per data source. It keeps the groups as
    `parts`; a failing bundle is split into them (`data_source_queries`) so blame stays exact."""
    if len(groups) <= 1:
        return data_source_queries(target, basis, groups, shared=shared)
    names = [n for group in groups.values() for n in group]
    try:
        sql = metrics_query(target.resolved, target.limits, basis, names, canonical=shared)
    except Exception:  # noqa: BLE001 - one query per data source reports which one cannot be built
        return data_source_queries(target, basis, groups, shared=shared)
    if sql is None:
        return []
    return [Query(f"metrics/{basis.value}/" + "+".join(groups), sql, basis, None, tuple(names),
                  parts=tuple((ds, tuple(group)) for ds, group in groups.items()), shared=shared)]


def data_source_queries(
    target: Target, basis: AnalysisBasis, groups: dict[str, Sequence[str]], *, shared: bool = False
) -> list[Query]:
    """One metrics query per data source of `groups`; one that cannot be built is a problem."""
    out = []
    for data_source, names in groups.items():
        try:
            sql = metrics_query(target.resolved, target.limits, basis, list(names), canonical=shared)
        except Exception as e:  # noqa: BLE001 - e.g. a template mozanalysis cannot render
            target.report.problems.append(Problem(
                target.display, "metrics",
                f"the {basis.value} metrics query of data source {data_source!r} cannot be built: {e}", CONFIG,
            ))
            continue
        if sql is not None:
            out.append(Query(f"metrics/{basis.value}/{data_source}", sql, basis, data_source, tuple(names),
                             shared=shared))
    return out


# ----------------------------------------------------------------------------------------------
# the queries of a resolved config


#: Analysis window (start day, length in days) used for each period's sample query.
PERIOD_WINDOWS: dict[AnalysisPeriod, tuple[int, int]] = {
    AnalysisPeriod.DAY: (0, 1),
    AnalysisPeriod.WEEK: (0, 7),
    AnalysisPeriod.DAYS_28: (0, 28),
    AnalysisPeriod.OVERALL: (0, 21),
    AnalysisPeriod.PREENROLLMENT_WEEK: (-7, 7),
    AnalysisPeriod.PREENROLLMENT_DAYS_28: (-28, 28),
}


def time_limits(experiment: SampleExperiment, period: AnalysisPeriod) -> TimeLimits:
    """A single analysis window of `period` (Jetstream's first window) for the sample experiment."""
    start, length = PERIOD_WINDOWS[period]
    last_full = experiment.last_enrollment_date + dt.timedelta(days=max(start + length, 1))
    return TimeLimits.for_single_analysis_window(
        first_enrollment_date=experiment.start_date.isoformat(),
        last_date_full_data=last_full.isoformat(),
        analysis_start_days=start,
        analysis_length_dates=length,
        num_dates_enrollment=experiment.enrollment_days,
    )


def unique_summaries(resolved: ResolvedConfig, names: Iterable[str] | None = None) -> list[Summary]:
    """Every (metric, statistic) of every period once, in config order; only `names` when given."""
    wanted = None if names is None else set(names)
    seen: set[tuple[str, str]] = set()
    out = []
    for period in AnalysisPeriod:
        for summary in resolved.config.metrics.get(period, []):
            ident = (summary.metric.name, summary.statistic.name)
            if ident in seen or (wanted is not None and summary.metric.name not in wanted):
                continue
            seen.add(ident)
            out.append(summary)
    return out


def all_metrics_sql(
    resolved: ResolvedConfig,
    limits: TimeLimits,
    basis: AnalysisBasis,
    enrollments_table: str,
    names: Iterable[str] | None = None,
    *,
    canonical: bool = False,
) -> str | None:
    """One metrics query over one window holding the metrics of every period (as Jetstream's
    `validate` does); None when no metric has SQL. Restricted to `names` when given. With `canonical`,
    the metrics are in an order of their own (by data source and name) rather than the config's: the
    platform defaults' metrics then give every config that lists them the same query, compiled once."""
    summaries = [
        s for s in unique_summaries(resolved, names)
        if basis in s.metric.analysis_bases
        and (s.metric.select_expression or s.metric.depends_on)
    ]
    if canonical:
        summaries.sort(key=lambda s: (s.metric.data_source.name if s.metric.data_source else "", s.metric.name))
    if not any(
        s.metric.select_expression or any(d.metric.select_expression for d in s.metric.depends_on or [])
        for s in summaries
    ):
        return None
    only = dataclasses.replace(
        resolved,
        config=attr.evolve(resolved.config, metrics={AnalysisPeriod.OVERALL: summaries}),
    )
    return metrics_sql(only, limits, AnalysisPeriod.OVERALL, basis, enrollments_table)


def experiment_queries(
    resolved: ResolvedConfig,
    experiment: SampleExperiment,
    enrollments_table: str = "enrollments",
    *,
    per_period: bool = False,
    bases: Iterable[AnalysisBasis] = (AnalysisBasis.ENROLLMENTS,),
    names: Iterable[str] | None = None,
) -> list[Query]:
    """The enrollments query and the metrics queries of `resolved` for `experiment`.

    By default one metrics query per basis holds every metric (one `overall`-like window); with
    `per_period`, each period gets its own query over its first Jetstream window.
    """
    names = None if names is None else list(names)
    limits = time_limits(experiment, AnalysisPeriod.WEEK)
    out = [Query("enrollments", enrollments_sql(resolved, limits))]
    for basis in bases:
        if per_period:
            for period in AnalysisPeriod:
                if basis not in bases_for(resolved, period):
                    continue
                metrics = tuple(dict.fromkeys(
                    s.metric.name for s in metrics_for(resolved, period, basis)
                    if s.metric.select_expression and (names is None or s.metric.name in names)
                ))
                if not metrics:
                    continue
                only = dataclasses.replace(resolved, config=attr.evolve(
                    resolved.config,
                    metrics={period: [s for s in resolved.config.metrics.get(period, [])
                                      if s.metric.name in metrics]},
                ))
                sql = metrics_sql(only, time_limits(experiment, period), period, basis, enrollments_table)
                out.append(Query(f"{period.value}/{basis.value}", sql, basis, names=metrics, period=period))
            continue
        sql = all_metrics_sql(
            resolved, time_limits(experiment, AnalysisPeriod.OVERALL), basis, enrollments_table, names
        )
        if sql is not None:
            metrics = tuple(dict.fromkeys(
                s.metric.name for s in unique_summaries(resolved, names)
                if s.metric.select_expression and basis in s.metric.analysis_bases
            ))
            out.append(Query(f"all/{basis.value}", sql, basis, names=metrics))
    return out
