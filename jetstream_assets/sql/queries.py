"""Enrollment and metric SQL (BigQuery dialect) for a resolved experiment, built with mozanalysis.

Config objects are converted to mozanalysis objects here, field by field, so mozanalysis never
sees a metric slug (it would clone metric-hub from GitHub to look it up).
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import attr
import mozanalysis.experiment
from metric_config_parser.data_source import DataSource as ConfigDataSource
from metric_config_parser.exposure_signal import AnalysisWindow as ExposureWindow
from metric_config_parser.exposure_signal import ExposureSignal as ConfigExposureSignal
from metric_config_parser.metric import AnalysisPeriod, Summary
from metric_config_parser.metric import Metric as ConfigMetric
from metric_config_parser.segment import Segment as ConfigSegment
from mozanalysis.experiment import TimeLimits
from mozanalysis.exposure import ExposureSignal
from mozanalysis.metrics import DataSource, Metric
from mozanalysis.segments import Segment, SegmentDataSource
from mozanalysis.utils import add_days
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config.resolve import PLATFORMS, ResolvedConfig


def _not_id_fallback(record) -> bool:
    # mozanalysis warns on every query that desktop data sources have no legacy id column and it uses
    # client_id: that is what Jetstream intends, so the warning is noise here
    return "Falling back to client_id_column" not in record.getMessage()


for _name in ("mozanalysis.metrics", "mozanalysis.exposure", "mozanalysis.segments"):
    logging.getLogger(_name).addFilter(_not_id_fallback)

#: Order bases are computed in (enrollments first: exposures filter the same table).
BASES = (AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES)


def app_dataset(app_id: str) -> str:
    """BigQuery dataset name of a Glean app id (`org.mozilla.firefox` -> `org_mozilla_firefox`)."""
    return re.sub(r"[^a-zA-Z0-9]", "_", app_id).lower()


# ---- config -> mozanalysis ------------------------------------------------------------------


def to_data_source(ds: ConfigDataSource) -> DataSource:
    column_type = ds.experiments_column_type
    return DataSource(
        name=ds.name,
        from_expr=ds.from_expression,
        # TOML cannot write null: "none" means the table has no experiments column
        experiments_column_type=None if (column_type or "").lower() == "none" else column_type,
        client_id_column=ds.client_id_column,
        submission_date_column=ds.submission_date_column,
        default_dataset=ds.default_dataset,
        group_id_column=ds.group_id_column,
        # glean/legacy client id columns are left out, as Jetstream does: with them, mozanalysis
        # would join desktop Glean tables on the legacy id instead of `client_id_column`.
    )


def to_metric(metric: ConfigMetric) -> Metric:
    if metric.select_expression is None or metric.data_source is None:
        raise ValueError(
            f"metric {metric.name!r} has no select_expression/data_source (it is derived from "
            "other metrics via depends_on) and cannot be queried"
        )
    return Metric(
        name=metric.name,
        data_source=to_data_source(metric.data_source),
        select_expr=metric.select_expression,
        friendly_name=metric.friendly_name,
        description=metric.description,
        bigger_is_better=metric.bigger_is_better,
    )


def to_segment(segment: ConfigSegment) -> Segment:
    ds = segment.data_source
    return Segment(
        name=segment.name,
        data_source=SegmentDataSource(
            name=ds.name,
            from_expr=ds.from_expression,
            window_start=ds.window_start,
            window_end=ds.window_end,
            client_id_column=ds.client_id_column,
            submission_date_column=ds.submission_date_column,
            default_dataset=ds.default_dataset,
            group_id_column=ds.group_id_column,
        ),
        select_expr=segment.select_expression,
        friendly_name=segment.friendly_name,
        description=segment.description,
    )


def _window_days(limit, time_limits: TimeLimits) -> int | None:
    """An exposure window limit in days after the first enrollment date.

    Named limits are relative to the enrollment period or to the (single) analysis window.
    """
    if limit is None or isinstance(limit, int):
        return limit
    enrollment_days = (
        dt.date.fromisoformat(time_limits.last_enrollment_date)
        - dt.date.fromisoformat(time_limits.first_enrollment_date)
    ).days
    window = time_limits.analysis_windows[0]
    named = ExposureWindow(limit)
    return {
        ExposureWindow.ENROLLMENT_START: 0,
        ExposureWindow.ENROLLMENT_END: enrollment_days,
        ExposureWindow.ANALYSIS_WINDOW_START: window.start + enrollment_days,
        ExposureWindow.ANALYSIS_WINDOW_END: window.end + enrollment_days,
    }[named]


def to_exposure_signal(signal: ConfigExposureSignal, time_limits: TimeLimits) -> ExposureSignal:
    return ExposureSignal(
        name=signal.name,
        data_source=to_data_source(signal.data_source),
        select_expr=signal.select_expression,
        friendly_name=signal.friendly_name,
        description=signal.description,
        window_start=_window_days(signal.window_start, time_limits),
        window_end=_window_days(signal.window_end, time_limits),
    )


def mozanalysis_experiment(resolved: ResolvedConfig) -> mozanalysis.experiment.Experiment:
    conf = resolved.config.experiment
    if conf.start_date is None:
        raise ValueError(
            f"experiment {resolved.slug!r} has no start date: set startDate in Experimenter or "
            f"start_date in the [experiment] section of its metric-hub config"
        )
    app_id = conf.experiment.app_id or _platform(resolved).app_id
    return mozanalysis.experiment.Experiment(
        experiment_slug=conf.normandy_slug,
        start_date=conf.start_date.strftime("%Y-%m-%d"),
        app_id=app_dataset(app_id),
        app_name=conf.app_name,
        analysis_unit=conf.analysis_unit,
    )


def _platform(resolved: ResolvedConfig):
    app = resolved.config.experiment.app_name
    if app not in PLATFORMS:
        raise ValueError(
            f"experiment {resolved.slug!r}: app {app!r} is not supported (supported: "
            f"{sorted(PLATFORMS)}); set experiment.enrollments_query_type in its config or "
            "skip the experiment"
        )
    return PLATFORMS[app]


def _exposure_signal(resolved: ResolvedConfig, time_limits: TimeLimits) -> ExposureSignal | None:
    signal = resolved.config.experiment.exposure_signal
    return to_exposure_signal(signal, time_limits) if signal else None


# ---- what runs ------------------------------------------------------------------------------


def metrics_for(resolved: ResolvedConfig, period: AnalysisPeriod, basis: AnalysisBasis) -> list[Summary]:
    """The (metric, statistic) summaries statistics run on for one period and basis."""
    return [s for s in resolved.config.metrics.get(period, []) if basis in s.metric.analysis_bases]


def bases_for(resolved: ResolvedConfig, period: AnalysisPeriod) -> list[AnalysisBasis]:
    """Analysis bases any metric of the period asks for, enrollments first."""
    wanted = {b for s in resolved.config.metrics.get(period, []) for b in s.metric.analysis_bases}
    return [b for b in BASES if b in wanted]


def segments_of(resolved: ResolvedConfig) -> list[str]:
    """Names of the experiment's segments (enrollment columns); statistics add "all" themselves."""
    return [s.name for s in resolved.config.experiment.segments]


def query_metrics(resolved: ResolvedConfig, period: AnalysisPeriod, basis: AnalysisBasis) -> list[Metric]:
    """mozanalysis metrics of the period/basis table, in config order.

    Metrics derived via `depends_on` have no SQL of their own; their upstream metrics are
    queried (when they can be) so the statistics step finds the columns it needs.
    """
    out: dict[str, Metric] = {}
    for summary in metrics_for(resolved, period, basis):
        candidates = [summary.metric]
        candidates += [dep.metric for dep in summary.metric.depends_on or []]
        for metric in candidates:
            if metric.select_expression is not None and metric.data_source is not None:
                out.setdefault(metric.name, to_metric(metric))
    return list(out.values())


# ---- SQL ------------------------------------------------------------------------------------


def enrollments_sql(resolved: ResolvedConfig, time_limits: TimeLimits) -> str:
    """The enrollments query: one row per analysis unit with branch, segments and exposure."""
    conf = resolved.config.experiment
    query_type = conf.enrollments_query_type or _platform(resolved).enrollments_query_type
    return mozanalysis_experiment(resolved).build_enrollments_query(
        time_limits,
        query_type,
        conf.enrollment_query,
        None,
        _exposure_signal(resolved, time_limits),
        [to_segment(s) for s in conf.segments],
        conf.sample_size or None,
    )


def metrics_sql(
    resolved: ResolvedConfig,
    time_limits: TimeLimits,
    period: AnalysisPeriod,
    basis: AnalysisBasis,
    enrollments_table: str,
) -> str:
    """Metrics of one analysis window for one basis, joined to `enrollments_table`.

    `time_limits` must hold exactly one analysis window: mozanalysis multiplies rows by the
    number of windows.
    """
    windows = time_limits.analysis_windows
    if len(windows) != 1:
        raise ValueError(
            f"experiment {resolved.slug!r}: metrics_sql needs exactly one analysis window, got "
            f"{len(windows)}; build TimeLimits for the single window that closes on the analysis date"
        )
    metrics = query_metrics(resolved, period, basis)
    if not metrics:
        raise ValueError(
            f"experiment {resolved.slug!r}: no metrics to query for period {period.value!r} and "
            f"basis {basis.value!r}; check bases_for()/metrics_for() before building the query"
        )
    # data is only required from the start of this window (as Jetstream does for its last window)
    limits = attr.evolve(
        time_limits,
        first_date_data_required=add_days(time_limits.first_enrollment_date, windows[0].start),
    )
    return mozanalysis_experiment(resolved).build_metrics_query(
        metrics,
        limits,
        enrollments_table,
        basis,
        _exposure_signal(resolved, limits),
        discrete_metrics=False,
    )
