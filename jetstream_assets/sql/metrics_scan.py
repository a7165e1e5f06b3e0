"""One scan of each data source for every analysis window and basis of a step.

Jetstream (and `queries.metrics_sql`) queries one analysis window and one basis at a time, so a rerun reads
`clients_daily` once per window and basis: 55 times for a 30-date rerun, 13x the rows one scan of the days
needed would read. Here one query reads each data source once over the union of the dates every window
needs, matches each row to the (client, window, basis) it belongs to, and aggregates per client and window,
the way mozanalysis does when it is given several windows (one row per client and window). The result is
then split into Jetstream's per-window tables `<slug>_<basis>_<period>_<k>`, with the same columns, in
the same order, and the same values as the one-window queries (a test holds them equal).

A (window, basis) aggregates the days of a *span*: the window's days counted from an anchor date (the
exposure date for the exposures basis without an exposure signal, else the enrollment date), within its data
dates. Windows with the same span (the two bases of a window, with a signal) share one aggregation. The
span's days are the same for every client, so a telemetry row is matched to its spans by an equality on
its day counted from its client's anchor (a hash join on the day): it meets only the spans holding it, not
every window of its client.

The SQL is BigQuery's and uses mozanalysis' data sources, metric expressions and sanity metrics, with each
window's own data-date bounds, so the same text runs on BigQuery (one billed scan per source) and, through
the transpiler, on DuckDB. With an exposure signal, the exposures basis takes each
window's exposure columns from the signal read once over all windows' exposure dates, as mozanalysis'
`exposures` CTE does for one window.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from metric_config_parser.metric import AnalysisPeriod
from mozanalysis.experiment import partition_metrics_by_data_source
from mozanalysis.metrics import Metric
from metric_config_parser import AnalysisUnit
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config.resolve import ResolvedConfig
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import (
    bases_for,
    mozanalysis_experiment,
    query_metrics,
    to_data_source,
    to_exposure_signal,
)
from jetstream_assets.warehouse.base import Warehouse, WarehouseError
from jetstream_assets.windows import AnalysisWindow, time_limits

logger = logging.getLogger("jetstream_assets")

# columns of the scan that are not in Jetstream's tables
WINDOW_ID = "_scan_window"
_BASIS = "_scan_basis"
_FIRST = "_scan_first_date"
_LAST = "_scan_last_date"
_BRANCH = "_scan_branch"
_SPAN = "_scan_span"  # the days a (window, basis) aggregates, shared by the windows with the same days
_ANCHOR = "_scan_anchor"  # the basis whose date a span counts its days from
_ROW_ANCHOR = "_scan_row_anchor"
_EXPOSURE_SPAN = "_scan_exposure_span"  # the exposure dates of an exposures-basis window, with a signal
_START = "_scan_start"
_END = "_scan_end"
_DAY = "_scan_day"  # a day of a span, counted from the anchor date
# what a data source's metrics or first-day filter may not refer to: it differs between the (window, basis)
# rows that share an aggregation (a column of ds is prefixed `ds.`, and such columns are not matched)
_BY_WINDOW = re.compile(r"(?<![\w.])(?:e\.)?(?:exposure_date|num_exposure_events|analysis_window_\w+|_scan_\w+)\b")

# mozanalysis' lookup of the experiment's branch in a telemetry row's experiments map (data sources'
# experiments_column_type, in the first-day filter and the sanity metrics), with its optional `.branch`
_BRANCH_LOOKUP = re.compile(r"`mozfun\.map\.get_key`\(\s*(ds\.[\w.]+),\s*('[^'\\]*')\s*\)(\.branch)?")
# and in an events_stream row's event_extra JSON (experiments_column_type "events_stream"): the branch when
# the event is about the experiment
_EVENT_BRANCH_LOOKUP = re.compile(
    r"IF\(\s*JSON_VALUE\(\s*(ds\.[\w.]+),\s*'\$\.experiment'\s*\)\s*=\s*('[^'\\]*'),\s*"
    r"JSON_VALUE\(\s*\1,\s*'\$\.branch'\s*\),\s*NULL\s*\)"
)


@dataclass(frozen=True)
class ScanWindow:
    """One (window, basis) the scan serves, with the data dates its one-window query would read."""

    period: AnalysisPeriod
    index: int
    basis: AnalysisBasis
    start: int
    end: int
    first_date: str  # first_date_data_required of the one-window query
    last_date: str  # last_date_data_required of the one-window query
    exposure_from: str | None = None  # dates the exposure signal is read over, for this window
    exposure_to: str | None = None

    @property
    def key(self) -> tuple[AnalysisPeriod, int, str]:
        return self.period, self.index, self.basis.value


def scan_windows(
    resolved: ResolvedConfig,
    start_date: dt.date,
    enrollment_period: int,
    closing: Iterable[tuple[AnalysisWindow, dt.date]],
) -> list[ScanWindow]:
    """Every (window, basis) with metrics, for windows given with the analysis date they close on."""
    out = []
    for window, analysis_date in closing:
        limits = time_limits(window, start_date, enrollment_period, analysis_date)
        first = dt.date.fromisoformat(limits.first_enrollment_date) + dt.timedelta(days=window.start)
        exposure = _exposure_dates(resolved, limits)
        for basis in bases_for(resolved, window.period):
            if query_metrics(resolved, window.period, basis):
                out.append(ScanWindow(window.period, window.index, basis, window.start, window.end,
                                      first.isoformat(), limits.last_date_data_required, *exposure))
    return out


def _exposure_dates(resolved: ResolvedConfig, limits) -> tuple[str | None, str | None]:
    """The dates mozanalysis reads the exposure signal over for one window (ExposureSignal.build_query)."""
    config_signal = resolved.config.experiment.exposure_signal
    if config_signal is None:
        return None, None
    signal = to_exposure_signal(config_signal, limits)
    first = dt.date.fromisoformat(limits.first_enrollment_date)
    end_base = first if signal.window_end else dt.date.fromisoformat(limits.last_enrollment_date)
    return (
        (first + dt.timedelta(days=signal.window_start or 0)).isoformat(),
        (end_base + dt.timedelta(days=signal.window_end or 0)).isoformat(),
    )


def metric_columns(resolved: ResolvedConfig, period: AnalysisPeriod, basis: AnalysisBasis) -> list[str]:
    """The metric columns of a one-window table, in mozanalysis' order (per data source, then its sanity
    metrics)."""
    experiment = mozanalysis_experiment(resolved)
    columns = []
    for ds, metrics in partition_metrics_by_data_source(query_metrics(resolved, period, basis)).items():
        columns += [m.name for m in metrics + ds.get_sanity_metrics(experiment.experiment_slug)]
    return columns


def _date(value: str) -> str:
    return f"DATE '{value}'"


def _int_or_null(value: int | None) -> str:
    return "CAST(NULL AS INT64)" if value is None else str(value)


def shared_metrics_sql(resolved: ResolvedConfig, windows: list[ScanWindow], enrollments_table: str) -> str:
    """BigQuery SQL: one row per client and (window, basis) of `windows` (column `_scan_window` is the
    position in `windows`) with every metric any of them needs; each data source is read once."""
    if not windows:
        raise ValueError(f"experiment {resolved.slug!r}: the shared metrics scan needs at least one window")
    experiment = mozanalysis_experiment(resolved)
    slug = experiment.experiment_slug
    metrics: dict[str, Metric] = {}
    for w in windows:
        for m in query_metrics(resolved, w.period, w.basis):
            metrics.setdefault(m.name, m)
    signal = resolved.config.experiment.exposure_signal
    # the days each (window, basis) aggregates: its window's days counted from its anchor date (the
    # exposure date for the exposures basis without an exposure signal, else the enrollment date), within
    # its data dates; windows with the same days (the two bases of a window, with a signal) share one
    # aggregation, made once per client
    spans: dict[tuple, int] = {}
    span_of = [
        spans.setdefault(("exposures" if signal is None and w.basis == AnalysisBasis.EXPOSURES else "enrollments",
                          w.start, w.end, w.first_date, w.last_date), len(spans))
        for w in windows
    ]
    # with a signal, the exposures-basis windows with the same exposure dates share their exposure columns
    exposure_spans: dict[tuple[str, str], int] = {}
    exposure_span_of = [
        exposure_spans.setdefault((w.exposure_from, w.exposure_to), len(exposure_spans))
        if signal is not None and w.basis == AnalysisBasis.EXPOSURES else None
        for w in windows
    ]
    rows = "\n    UNION ALL\n    ".join(
        f"SELECT {i} AS {WINDOW_ID}, '{w.basis.value}' AS {_BASIS}, {w.start} AS analysis_window_start, "
        f"{w.end} AS analysis_window_end, {_date(w.first_date)} AS {_FIRST}, {_date(w.last_date)} AS {_LAST}, "
        f"{span_of[i]} AS {_SPAN}"
        + ("" if signal is None else f", {_int_or_null(exposure_span_of[i])} AS {_EXPOSURE_SPAN}")
        for i, w in enumerate(windows)
    )
    span_rows = "\n    UNION ALL\n    ".join(
        f"SELECT {i} AS {_SPAN}, '{anchor}' AS {_ANCHOR}, {start} AS {_START}, {end} AS {_END}, "
        f"{_date(first_date)} AS {_FIRST}, {_date(last_date)} AS {_LAST}"
        for (anchor, start, end, first_date, last_date), i in spans.items()
    )
    first = min(w.first_date for w in windows)
    last = max(w.last_date for w in windows)
    ctes = [f"analysis_windows AS (\n    {rows}\n)", f"analysis_spans AS (\n    {span_rows}\n)"]
    exposure_columns = "e.exposure_date, e.num_exposure_events"
    exposure_join = ""
    if signal is not None:
        ctes += _signal_ctes(resolved, exposure_spans, enrollments_table)
        exposure_columns = ", ".join(
            f"IF(aw.{_BASIS} = 'exposures', x.{c}, e.{c}) AS {c}" for c in ("exposure_date", "num_exposure_events")
        )
        exposure_join = (f"\n    LEFT JOIN exposures x ON x.analysis_id = e.analysis_id "
                         f"AND x.{_EXPOSURE_SPAN} = aw.{_EXPOSURE_SPAN}")
    # each span's days, counted from its anchor date: the same for every client
    ctes.append(
        f"""span_days AS (
    SELECT s.{_SPAN}, s.{_ANCHOR}, s.{_FIRST}, s.{_LAST}, {_DAY}
    FROM analysis_spans s
    CROSS JOIN UNNEST(GENERATE_ARRAY(s.{_START}, s.{_END})) AS {_DAY}
)"""
    )
    anchors = sorted({anchor for anchor, *_ in spans})
    joins, columns = [], []
    for i, (ds, ds_metrics) in enumerate(partition_metrics_by_data_source(list(metrics.values())).items()):
        ds_metrics = ds_metrics + ds.get_sanity_metrics(slug)
        ds_id = ds.group_id_column if experiment.analysis_unit == AnalysisUnit.PROFILE_GROUP else ds.client_id_column
        date = ds.submission_date_column
        ignore_first_day = ds.experiments_column_expr.format(submission_date=date, experiment_slug=slug)
        selects = ",\n        ".join(f"{m.select_expr.format(experiment_slug=slug)} AS {m.name}" for m in ds_metrics)
        by_window = _BY_WINDOW.search(selects + ignore_first_day)
        if by_window:  # a span's aggregation sees the enrollments table, not a (window, basis) row
            raise ValueError(f"experiment {resolved.slug!r}: data source {ds.name!r} refers to "
                             f"{by_window[0]!r}, which differs between the windows sharing its days")
        lookups: dict[str, str] = {}
        ignore_first_day, selects = (_project_lookups(text, lookups) for text in (ignore_first_day, selects))
        projected = "".join(f", {expr} AS {column}" for expr, column in lookups.items())
        if len(anchors) > 1:  # each telemetry row once per anchor, its day counted from that anchor
            anchor_join = f"\n    CROSS JOIN UNNEST([{', '.join(repr(a) for a in anchors)}]) AS {_ROW_ANCHOR}"
            anchor = f"IF({_ROW_ANCHOR} = 'exposures', e.exposure_date, e.enrollment_date)"
            on_anchor = f"d.{_ANCHOR} = {_ROW_ANCHOR}\n        AND "
        else:
            anchor_join, on_anchor = "", ""
            anchor = "e.exposure_date" if anchors == ["exposures"] else "e.enrollment_date"
        # each telemetry row of an enrolled client once per span whose days hold it: an equi-join on the
        # day counted from the anchor, so a row meets only its spans, not every window of its client
        ctes.append(
            f"""ds_{i}_rows AS (
    SELECT ds.*, d.{_SPAN}
    FROM (
        SELECT ds.*{projected}
        FROM {ds.from_expr_for(experiment.app_id)} ds
        WHERE ds.{date} BETWEEN '{first}' AND '{last}'
    ) ds
    JOIN `{enrollments_table}` e ON ds.{ds_id} = e.analysis_id{anchor_join}
    JOIN span_days d
        ON {on_anchor}d.{_DAY} = DATE_DIFF(ds.{date}, {anchor}, DAY)
        AND ds.{date} BETWEEN d.{_FIRST} AND d.{_LAST}
        {ignore_first_day}
)"""
        )
        # aggregated per client and span over a LEFT JOIN, as mozanalysis does, so a client without rows
        # gets the metric's value over one all-null row (0 for COALESCE(SUM(...), 0))
        ctes.append(
            f"""ds_{i} AS (
    SELECT e.analysis_id, s.{_SPAN},
        {selects}
    FROM `{enrollments_table}` e
    CROSS JOIN analysis_spans s
    LEFT JOIN ds_{i}_rows ds ON ds.{ds_id} = e.analysis_id AND ds.{_SPAN} = s.{_SPAN}
    GROUP BY e.analysis_id, s.{_SPAN}
)"""
        )
        # equalities only, so that BigQuery too plans a hash join (a NULL client id gets NULL metrics, as
        # from mozanalysis' one-window query)
        joins.append(f"LEFT JOIN ds_{i} ON ds_{i}.analysis_id = e.analysis_id AND ds_{i}.{_SPAN} = aw.{_SPAN}")
        columns += [f"ds_{i}.{m.name}" for m in ds_metrics]
    return (
        "WITH " + ",\n".join(ctes)
        # mozanalysis' column order: the enrollment columns, the window, then the exposure columns and
        # the metrics; each (client, span) row for every (window, basis) sharing the span
        + f"\nSELECT e.* EXCEPT (exposure_date, num_exposure_events), aw.*, {exposure_columns}, "
        + ", ".join(columns)
        + f"\nFROM `{enrollments_table}` e\nCROSS JOIN analysis_windows aw{exposure_join}\n" + "\n".join(joins)
    )


def _project_lookups(text: str, lookups: dict[str, str]) -> str:
    """`text` with each branch lookup in the experiments map (or in an events_stream row's event_extra)
    replaced by a column of the data source's projection (added to `lookups`, expression -> column):
    computed once per telemetry row, not once per joined (client, window, basis) row."""

    def column(expr: str) -> str:
        return "ds." + lookups.setdefault(expr, f"{_BRANCH}_{len(lookups)}")

    text = _BRANCH_LOOKUP.sub(lambda m: column(f"`mozfun.map.get_key`({m[1]}, {m[2]}){m[3] or ''}"), text)
    return _EVENT_BRANCH_LOOKUP.sub(
        lambda m: column(f"IF(JSON_VALUE({m[1]}, '$.experiment') = {m[2]}, JSON_VALUE({m[1]}, '$.branch'), NULL)"),
        text,
    )


def _signal_ctes(resolved: ResolvedConfig, spans: dict[tuple[str, str], int], enrollments_table: str) -> list[str]:
    """`exposures`: per client and exposure span (the exposure dates of one or more exposures-basis windows,
    `spans[(from, to)]`), the first exposure date and the number of exposure events in those dates (clients
    without one left out), from one read. Inner joins and the events counted per client and day first:
    mozanalysis' LEFT JOIN of every (client, window) with HAVING COUNT(...) > 0 keeps the same groups and
    values, but aggregates a group for each client and window, exposed or not."""
    if not spans:
        return [f"exposures AS (SELECT CAST(NULL AS STRING) AS analysis_id, -1 AS {_EXPOSURE_SPAN}, "
                "CAST(NULL AS DATE) AS exposure_date, 0 AS num_exposure_events)"]
    experiment = mozanalysis_experiment(resolved)
    signal = resolved.config.experiment.exposure_signal
    ds = to_data_source(signal.data_source)
    ds_id = ds.group_id_column if experiment.analysis_unit == AnalysisUnit.PROFILE_GROUP else ds.client_id_column
    date = ds.submission_date_column
    bounds = "\n        UNION ALL\n        ".join(
        f"SELECT {i} AS {_EXPOSURE_SPAN}, {_date(lo)} AS lo, {_date(hi)} AS hi" for (lo, hi), i in spans.items()
    )
    return [
        f"""exposure_events AS (
    SELECT {ds_id} AS analysis_id, {date} AS submission_date
    FROM {ds.from_expr_for(None)}
    WHERE {date} BETWEEN '{min(lo for lo, _ in spans)}' AND '{max(hi for _, hi in spans)}'
        AND {signal.select_expression}
)""",
        f"""exposure_spans AS (
        {bounds}
)""",
        f"""exposure_days AS (
    SELECT e.analysis_id, x.submission_date, COUNT(*) AS events
    FROM `{enrollments_table}` e
    JOIN exposure_events x
        ON x.analysis_id = e.analysis_id
        AND x.submission_date >= e.enrollment_date
    GROUP BY e.analysis_id, x.submission_date
)""",
        f"""exposures AS (
    SELECT d.analysis_id, xs.{_EXPOSURE_SPAN},
        MIN(d.submission_date) AS exposure_date,
        CAST(SUM(d.events) AS INT64) AS num_exposure_events
    FROM exposure_days d
    JOIN exposure_spans xs
        ON d.submission_date BETWEEN xs.lo AND xs.hi
    GROUP BY d.analysis_id, xs.{_EXPOSURE_SPAN}
)""",
    ]


class SharedScan:
    """The metrics step's scans: per experiment, one shared query for every window of the step's cells,
    split into the per-window tables when the experiment's first cell is computed."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.closing: dict[str, list[tuple[AnalysisWindow, dt.date]]] = {}
        self._done: dict[str, dict[tuple, dict] | None] = {}

    def plan(self, cells: Iterable) -> None:
        """The cells of the step (Cell objects; others are ignored), to know every window of each experiment."""
        for cell in cells:
            windows = getattr(cell, "windows", None)
            if windows:
                self.closing.setdefault(cell.slug, []).extend((w, cell.analysis_date) for w in windows)

    def table(self, cell, window: AnalysisWindow, basis: AnalysisBasis) -> dict | None:
        """The per-window table written from the shared scan: {"table", "rows", "sql", "bytes"}; None when
        the scan cannot serve it (the caller runs the one-window query)."""
        if cell.slug not in self._done:
            self._done[cell.slug] = self._run(cell)
        done = self._done[cell.slug]
        return None if done is None else done.get((window.period, window.index, basis.value))

    def _run(self, cell) -> dict[tuple, dict] | None:
        closing = list(dict.fromkeys(self.closing.get(cell.slug, []) + [(w, cell.analysis_date) for w in cell.windows]))
        if not closing:
            return None
        warehouse = self.warehouse
        enrollments = names.enrollments_table(cell.slug)
        if not warehouse.table_exists(enrollments):
            return None
        try:
            windows = scan_windows(cell.resolved, cell.start_date, cell.enrollment_period, closing)
            if not windows:
                return None
            sql = shared_metrics_sql(cell.resolved, windows, warehouse.table_ref(enrollments))
            head = [c for c in warehouse.table_columns(enrollments) if c not in ("exposure_date", "num_exposure_events")]
            head += ["analysis_window_start", "analysis_window_end", "exposure_date", "num_exposure_events"]
            outputs = {
                i: (names.metrics_table(cell.slug, w.basis.value, w.period, w.index),
                    head + metric_columns(cell.resolved, w.period, w.basis))
                for i, w in enumerate(windows)
            }
            scanned, results = warehouse.run_query_split(sql, WINDOW_ID, outputs)
        except (WarehouseError, ValueError) as e:
            # e.g. a metric whose SQL fails: the one-window queries find and leave out the broken metric
            logger.info(f"Shared metrics scan of {cell.slug} not used ({e}); querying window by window.")
            return None
        return {
            w.key: {"table": outputs[i][0], "rows": results[i].rows, "sql": sql,
                    "bytes": scanned.bytes_processed if i == 0 else 0}
            for i, w in enumerate(windows)
        }
