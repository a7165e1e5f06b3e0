"""statistics[slug, D]: every configured statistic of every metric, per segment and basis, for the
windows that closed on D; one table per period and window (statistics_<slug>_<period>_<window>)."""


import logging
import zlib

import dagster as dg
import numpy as np
import pandas as pd
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.cells import Compute, StepResources, analysis_asset, noop
from jetstream_assets.assets.common import code_version, md_table, warehouse_kind
from jetstream_assets.monitoring import log_context
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import bases_for, metrics_for, segments_of
from jetstream_assets.statistics import STATISTIC_COLUMNS
from jetstream_assets.statistics.engine import statistic_records
from jetstream_assets.statistics.results import Row, records_frame, row_records
from jetstream_assets.statistics.estimators import factorize_branches
from jetstream_assets.warehouse.base import Warehouse
from jetstream_assets.windows import AnalysisWindow

logger = logging.getLogger("jetstream_assets")

PREENROLLMENT_PERIODS = {AnalysisPeriod.PREENROLLMENT_WEEK, AnalysisPeriod.PREENROLLMENT_DAYS_28}
# statistics whose comparisons summarise a metric in one number (shown in the materialization preview)
HEADLINE_STATISTICS = {"mean", "binomial", "mean_lm", "per_client_dau_impact", "population_ratio"}


def _seed(*parts) -> int:
    """A stable seed per (experiment, window, metric, statistic, segment, basis): reruns reproduce."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _basis_filter(df: pd.DataFrame, basis: str) -> pd.DataFrame:
    mask = df["enrollment_date"].notna()
    if basis == "exposures":
        mask &= df["exposure_date"].notna()
    return df[mask]


def _covariate(summary, window: AnalysisWindow):
    params = summary.statistic.params or {}
    adjustment = params.get("covariate_adjustment")
    if not adjustment or window.period in PREENROLLMENT_PERIODS:
        return None
    period = AnalysisPeriod(adjustment["period"])
    if period == window.period:
        return None
    return adjustment.get("metric", summary.metric.name), period


class MetricsTable:
    """A basis' metrics table as its statistics read it: the branches factorised once, each column's
    missing values and each segment's clients found once (not once per statistic)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.codes, self.labels = factorize_branches(frame)
        self._present: dict[str, np.ndarray] = {}

    def present(self, column: str) -> np.ndarray:
        """Rows with a value in the column."""
        if column not in self._present:
            self._present[column] = self.frame[column].notna().to_numpy()
        return self._present[column]

    def segment(self, segment: str) -> np.ndarray | None:
        """Rows of the segment's clients, None for all (a missing flag counts as outside)."""
        if segment == "all":
            return None
        return self.frame[segment].fillna(False).astype(bool).to_numpy()

    def counts(self, rows: np.ndarray | None) -> np.ndarray:
        """Clients per label among the rows (all when None)."""
        codes = self.codes if rows is None else self.codes[rows]
        return np.bincount(codes[codes >= 0], minlength=len(self.labels))

    def frame_of(self, columns: dict[str, str], rows: np.ndarray | None) -> pd.DataFrame:
        """{new name: column} of the rows (all when None), as a frame indexed by position."""
        return pd.DataFrame({name: _take(self.frame[column], rows) for name, column in columns.items()},
                            copy=False)


def _take(series: pd.Series, rows: np.ndarray | None):
    """The values of a column at the rows (positions; all when None), keeping its dtype."""
    if isinstance(series.dtype, np.dtype):
        values = series.to_numpy()
        return values if rows is None else values[rows]
    return series.array if rows is None else series.array.take(rows)


def _summary_data(cell, window, summary, table: MetricsTable, in_segment: np.ndarray | None, covariates: dict,
                  made: dict) -> tuple[pd.DataFrame, tuple[np.ndarray, list[str]]]:
    """The per-client frame a statistic needs and its branch codes: the segment's clients with a value
    for the metric (or its dependencies), their branch, a covariate (`covariates`: the column of the table
    holding each covariate, None when it is missing, or the error that joining it raised). `made` keeps the
    frames made for this segment: the statistics of one metric share theirs (statistics never change the
    frame they are given)."""
    metric = summary.metric
    columns = [d.metric.name for d in metric.depends_on] if metric.depends_on else [metric.name]
    missing = [c for c in columns if c not in table.frame.columns]
    if missing:
        raise KeyError(
            f"{cell.slug}: metric column(s) {missing} are not in the {window.period.value} metrics table "
            f"(their metrics query failed; see the metrics asset's failed_metrics)."
        )
    covariate = _covariate(summary, window)
    joined = covariates.get(covariate) if covariate is not None else None
    if isinstance(joined, Exception):
        raise joined
    key = (tuple(columns), joined and (joined, metric.name))
    if key not in made:
        keep = np.logical_and.reduce([table.present(c) for c in columns])
        if in_segment is not None:
            keep = keep & in_segment
        rows = None if keep.all() else np.flatnonzero(keep)
        names = {"branch": "branch", **{c: c for c in columns}}
        if joined is not None:
            names[f"{metric.name}_pre"] = joined
        codes = table.codes if rows is None else table.codes[rows]
        made[key] = table.frame_of(names, rows), (codes, table.labels)
    return made[key]


class CovariateTable:
    """A covariate column of a pre-enrollment metrics table, with its clients indexed once for lookups."""

    def __init__(self, frame: pd.DataFrame, column: str):
        self.frame, self.column = frame, column
        self._clients: pd.Index | None = None

    def clients(self) -> pd.Index:
        if self._clients is None:
            clients = pd.Index(self.frame["analysis_id"])
            if not clients.is_unique:
                raise ValueError(f"the covariate table has {int(clients.duplicated().sum())} duplicated client(s)")
            self._clients = clients
        return self._clients


def _left_join(frame: pd.DataFrame, pre: CovariateTable) -> np.ndarray:
    """The covariate of each row of `frame` with the same (analysis_id, branch) in `pre`, missing where
    none: what a left merge on those keys gives (the same values, dtypes and row order), by one lookup."""
    position = pre.clients().get_indexer(frame["analysis_id"])
    same = position >= 0
    same[same] = pre.frame["branch"].to_numpy()[position[same]] == frame["branch"].to_numpy()[same]
    return pd.api.extensions.take(pre.frame[pre.column].to_numpy(), np.where(same, position, -1), allow_fill=True)


def _join_covariates(
    cell, window, basis, metrics_df, warehouse, read: dict, tables: dict
) -> tuple[pd.DataFrame, dict]:
    """`metrics_df` with a column per covariate its statistics adjust for (joined once per table, not once
    per statistic and segment), and {(metric, period): that column, None when it is missing, or the error
    joining it raised}. `read` keeps what the window's bases found (a missing table is reported once per
    window, as before); `tables` the covariate tables read (a step reads each once)."""
    columns, found = {}, {}
    for summary in metrics_for(cell.resolved, window.period, basis):
        covariate = _covariate(summary, window)
        if covariate is None or covariate in found:
            continue
        cov_metric, cov_period = covariate
        key = (names.metrics_table(cell.slug, "enrollments", cov_period, 1), cov_metric)
        table = key[0]
        if key not in read:
            if key in tables:
                read[key] = tables[key]
            elif warehouse.table_exists(table) and cov_metric in warehouse.table_columns(table):
                read[key] = tables[key] = CovariateTable(
                    warehouse.read_table(table, ["analysis_id", "branch", cov_metric]), cov_metric
                )
            else:
                read[key] = None
                logger.warning(
                    f"Covariate table {table} (or column {cov_metric}) is missing; "
                    f"{summary.metric.name} falls back to unadjusted inferences.",
                    extra={"experiment": cell.slug, "metric": summary.metric.name,
                           "statistic": summary.statistic.name, "analysis_basis": basis.value, "segment": "all",
                           "analysis_period": f"{window.period.value}_{window.index}"},
                )
        pre = read[key]
        found[covariate] = None
        if pre is not None:
            name = f"__covariate__{table}__{cov_metric}"
            try:
                columns[name] = _left_join(metrics_df, pre)
            except Exception as e:  # noqa: BLE001 - the statistics adjusting for it fail, the others go on
                found[covariate] = e
                continue
            found[covariate] = name
    return (metrics_df.assign(**columns) if columns else metrics_df), found


def _needed_columns(cell, window, basis, segments, present: list[str]) -> list[str]:
    """Columns of a metrics table the statistics of this window and basis read."""
    wanted = ["analysis_id", "branch", "enrollment_date", "exposure_date", *segments[1:]]
    for summary in metrics_for(cell.resolved, window.period, basis):
        metric = summary.metric
        wanted += [d.metric.name for d in metric.depends_on] if metric.depends_on else [metric.name]
    return [c for c in dict.fromkeys(wanted) if c in present]


def _count_records(table: MetricsTable, rows: np.ndarray | None, branches: list[str], segment: str,
                  basis: str) -> list[tuple]:
    """Clients per branch (Jetstream's `identity` count), zero for a branch nobody enrolled in: the rows of
    the basis' metrics table in the segment, the clients the statistics analysed (with a custom exposure
    signal the exposures basis' metrics query finds exposures the enrollments table does not date)."""
    n = dict(zip(table.labels, table.counts(rows).tolist()))
    return row_records([Row(b, float(n.get(b, 0))) for b in branches], metric="identity", statistic="count",
                       segment=segment, analysis_basis=basis)


def compute_window_statistics(
    cell: Cell, window: AnalysisWindow, warehouse: Warehouse, covariate_tables: dict | None = None
) -> tuple[pd.DataFrame, list]:
    """The statistics rows of one window, and the errors of the statistics that failed. `covariate_tables`
    keeps the covariate tables read, for the other windows of the step."""
    covariate_tables = {} if covariate_tables is None else covariate_tables
    config = cell.resolved.config
    branches = [b.slug for b in cell.experiment.branches]
    reference = config.experiment.reference_branch
    segments = ["all", *segments_of(cell.resolved)]
    records, errors, covariates = [], [], {}
    for basis in bases_for(cell.resolved, window.period):
        table = names.metrics_table(cell.slug, basis.value, window.period, window.index)
        if not warehouse.table_exists(table):
            errors.append(f"{table} is missing: materialize metrics for {cell.analysis_date} first")
            logger.error(
                f"Metrics table {table} of {cell.slug} is missing: no statistics for {basis.value} "
                f"{window.period.value} {window.index}; materialize metrics for {cell.analysis_date} first.",
                extra={"experiment": cell.slug, "analysis_basis": basis.value,
                       "analysis_period": f"{window.period.value}_{window.index}"},
            )
            continue
        metrics_df = _basis_filter(
            warehouse.read_table(table, _needed_columns(cell, window, basis, segments, warehouse.table_columns(table))),
            basis.value,
        )
        metrics_df, joined = _join_covariates(cell, window, basis, metrics_df, warehouse, covariates,
                                              covariate_tables)
        metrics = MetricsTable(metrics_df)
        for segment in segments:
            in_segment, made = metrics.segment(segment), {}
            for summary in metrics_for(cell.resolved, window.period, basis):
                name, statistic = summary.metric.name, summary.statistic.name
                extra = {"experiment": cell.slug, "metric": name, "statistic": statistic,
                         "analysis_basis": basis.value, "segment": segment,
                         "analysis_period": f"{window.period.value}_{window.index}"}
                try:
                    with log_context(**extra):  # the engine's own warnings name this statistic
                        data, codes = _summary_data(cell, window, summary, metrics, in_segment, joined, made)
                        rows, _ = statistic_records(
                            data,
                            metric=name,
                            statistic=statistic,
                            params=dict(summary.statistic.params or {}),
                            pre_treatments=[(p.name, dict(p.args or {})) for p in summary.pre_treatments],
                            branches=branches,
                            reference_branch=reference,
                            analysis_length_dates=window.length,
                            segment=segment,
                            analysis_basis=basis.value,
                            seed=_seed(cell.slug, window.period.value, window.index, name, statistic,
                                       segment, basis.value),
                            branch_codes=codes,
                        )
                        records += rows
                except Exception as e:  # one statistic never stops the others
                    logger.error(f"{statistic} of {name} failed for {cell.slug}: {e}", exc_info=True,
                                 extra=extra)
                    errors.append(f"{name}/{statistic}/{segment}/{basis.value}: {e}")
            records += _count_records(metrics, None if in_segment is None else np.flatnonzero(in_segment),
                                      branches, segment, basis.value)
    return (records_frame(records) if records else pd.DataFrame(columns=STATISTIC_COLUMNS)), errors


def headline(rows: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Relative uplift against the reference branch, overall population, enrollments basis."""
    mask = (
        (rows["comparison"] == "relative_uplift")
        & (rows["segment"] == "all")
        & (rows["analysis_basis"] == "enrollments")
        & rows["statistic"].isin(HEADLINE_STATISTICS)
    )
    if reference:
        mask &= rows["comparison_to_branch"] == reference
    view = rows[mask]
    return pd.DataFrame(
        {
            "metric": view["metric"],
            "statistic": view["statistic"],
            "branch": view["branch"] + " vs " + view["comparison_to_branch"],
            "uplift": (view["point"] * 100).map("{:+.2f}%".format),
            "ci": [f"[{lo * 100:+.2f}%, {hi * 100:+.2f}%]" for lo, hi in zip(view["lower"], view["upper"])],
        }
    )


def compute_statistics(cell: Cell, warehouse: Warehouse, covariate_tables: dict | None = None) -> dict:
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closes on {cell.analysis_date}.")
    tables, previews, all_errors = [], [], {}
    for window in cell.windows:
        rows, errors = compute_window_statistics(cell, window, warehouse, covariate_tables)
        table = names.statistics_table(cell.slug, window.period, window.index)
        warehouse.write_dataframe(rows, table)
        warehouse.create_window_view(
            names.statistics_view(cell.slug, window.period),
            names.statistics_table_prefix(cell.slug, window.period),
        )
        tables.append({"table": warehouse.table_ref(table), "rows": len(rows)})
        top = headline(rows, cell.resolved.config.experiment.reference_branch)
        top.insert(0, "window", f"{window.period.value} {window.index}")
        previews.append(top)
        if errors:
            all_errors[f"{window.period.value}_{window.index}"] = errors
    metadata = {
        "tables": md_table(pd.DataFrame(tables)),
        "dagster/row_count": sum(t["rows"] for t in tables),
        "comparisons": md_table(pd.concat(previews, ignore_index=True)),
        "config_commit": cell.resolved.commit or "",
    }
    if all_errors:
        metadata["errors"] = dg.MetadataValue.json(all_errors)
    return metadata


def statistics_step(planner: Planner, r: StepResources, keys: list) -> Compute:
    """The compute of one statistics step: the pre-enrollment covariate tables are read and indexed once for
    all its cells (the metrics step before it wrote them; nothing writes them during this step)."""
    covariate_tables: dict = {}
    return lambda cell, r: compute_statistics(cell, r.warehouse, covariate_tables)


statistics = analysis_asset(
    "statistics",
    statistics_step,
    per_step=True,
    group_name="experiments",
    kinds={"python", "pandas", warehouse_kind()},
    deps=["metrics"],
    code_version=code_version("statistics", "assets/statistics.py", "planner.py", "windows.py"),
    description=(
        "Statistics with confidence intervals per branch, and every branch compared with every other "
        "(difference, relative uplift), for each metric, segment and basis of the windows closing on "
        "this date: `statistics_<slug>_<period>_<window>` tables and `statistics_<slug>_<period>` views. "
        "bootstrap_mean, deciles and population_ratio resample 10,000 times as Jetstream does, with a "
        "vectorised engine; the metadata previews each branch's relative uplift with its 95% interval."
    ),
)
