"""metrics[slug, D]: per-client metrics for every analysis window that closes on D, per basis."""


import dataclasses
import logging

import attr
import dagster as dg
import pandas as pd

from jetstream_assets.assets.cells import CellError, Compute, StepResources, analysis_asset, noop
from jetstream_assets.assets.common import code_version, md_table, sql_block, warehouse_kind
from jetstream_assets.assets.telemetry import METRICS_SOURCES
from jetstream_assets.config.resolve import ResolvedConfig
from jetstream_assets.partitions import parse_key
from jetstream_assets.planner import Cell, Planner
from jetstream_assets.sql import names
from jetstream_assets.sql.metrics_scan import SharedScan
from jetstream_assets.sql.queries import bases_for, metrics_for, metrics_sql
from jetstream_assets.warehouse.base import Warehouse, WarehouseError
from jetstream_assets.windows import AnalysisWindow, time_limits

logger = logging.getLogger("jetstream_assets")


def without_metrics(resolved: ResolvedConfig, dropped: set[str]) -> ResolvedConfig:
    """The same configuration less some metrics (those whose SQL fails), so the others still run."""
    metrics = {
        period: [s for s in summaries if s.metric.name not in dropped]
        for period, summaries in resolved.config.metrics.items()
    }
    return dataclasses.replace(resolved, config=attr.evolve(resolved.config, metrics=metrics))


def _sql_metric_names(resolved: ResolvedConfig, window: AnalysisWindow, basis) -> list[str]:
    return sorted(
        {s.metric.name for s in metrics_for(resolved, window.period, basis) if s.metric.select_expression}
    )


def _failing_metrics(resolved, window, basis, limits, enrollments_ref, warehouse) -> dict[str, str]:
    """Dry-run each metric alone to find the ones whose SQL is broken."""
    failing = {}
    all_names = set(_sql_metric_names(resolved, window, basis))
    for name in sorted(all_names):
        alone = without_metrics(resolved, all_names - {name})
        try:
            warehouse.dry_run(metrics_sql(alone, limits, window.period, basis, enrollments_ref))
        except (WarehouseError, ValueError) as e:
            failing[name] = str(e)
    return failing


def compute_metrics_table(cell: Cell, window: AnalysisWindow, basis, warehouse: Warehouse,
                          scan: SharedScan | None = None) -> dict:
    shared = scan.table(cell, window, basis) if scan is not None else None
    if shared is not None:
        warehouse.create_window_view(
            names.metrics_view(cell.slug, basis.value, window.period),
            names.metrics_table_prefix(cell.slug, basis.value, window.period),
        )
        return {**shared, "table": warehouse.table_ref(shared["table"]), "failed": {},
                "metrics": _sql_metric_names(cell.resolved, window, basis)}
    enrollments = names.enrollments_table(cell.slug)
    if not warehouse.table_exists(enrollments):
        raise CellError(
            f"{cell.slug}: enrollments table {enrollments} is missing; materialize enrollments for "
            f"{cell.last_enrollment_date} first."
        )
    enrollments_ref = warehouse.table_ref(enrollments)
    limits = time_limits(window, cell.start_date, cell.enrollment_period, cell.analysis_date)
    table = names.metrics_table(cell.slug, basis.value, window.period, window.index)
    resolved = cell.resolved
    sql = metrics_sql(resolved, limits, window.period, basis, enrollments_ref)
    failed: dict[str, str] = {}
    try:
        result = warehouse.run_query(sql, table)
    except WarehouseError as error:
        failed = _failing_metrics(resolved, window, basis, limits, enrollments_ref, warehouse)
        if not failed:
            raise
        for metric, cause in failed.items():
            logger.error(
                f"Metric {metric} of {cell.slug} has an SQL error and was left out: {cause}",
                extra={"experiment": cell.slug, "metric": metric, "analysis_basis": basis.value,
                       "analysis_period": f"{window.period.value}_{window.index}"},
            )
        resolved = without_metrics(resolved, set(failed))
        if not _sql_metric_names(resolved, window, basis):
            raise CellError(f"{cell.slug}: every metric of {window.period.value} failed: {error}") from error
        sql = metrics_sql(resolved, limits, window.period, basis, enrollments_ref)
        result = warehouse.run_query(sql, table)
    warehouse.create_window_view(
        names.metrics_view(cell.slug, basis.value, window.period),
        names.metrics_table_prefix(cell.slug, basis.value, window.period),
    )
    return {"table": warehouse.table_ref(table), "rows": result.rows, "sql": sql,
            "metrics": _sql_metric_names(resolved, window, basis), "failed": failed,
            "bytes": result.bytes_processed}


def compute_metrics(cell: Cell, warehouse: Warehouse, scan: SharedScan | None = None) -> dict:
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closes on {cell.analysis_date}.")
    rows, sqls, failed = [], [], {}
    for window in cell.windows:
        for basis in bases_for(cell.resolved, window.period):
            done = compute_metrics_table(cell, window, basis, warehouse, scan)
            rows.append({"table": done["table"], "period": window.period.value, "window": window.index,
                         "days": f"[{window.start}, {window.end}]", "basis": basis.value,
                         "clients": done["rows"], "metrics": len(done["metrics"])})
            sqls.append(f"-- {done['table']}\n{done['sql']}")
            failed.update({f"{m} ({window.period.value}, {basis.value})": c for m, c in done["failed"].items()})
    metadata = {
        "tables": md_table(pd.DataFrame(rows)),
        "windows": ", ".join(f"{w.period.value} {w.index} [{w.start}, {w.end}]" for w in cell.windows),
        "dagster/row_count": sum(r["clients"] for r in rows),
        "config_commit": cell.resolved.commit or "",
        "sql": sql_block("\n\n".join(sqls)),
    }
    if failed:
        metadata["failed_metrics"] = dg.MetadataValue.json(failed)
    return metadata


def metrics_step(planner: Planner, r: StepResources, keys: list) -> Compute:
    """The compute of one metrics step: one read of each data source serves every window of the step."""
    scan = SharedScan(r.warehouse)
    scan.plan(planner.plan(*parse_key(k)) for k in keys)
    return lambda cell, r: compute_metrics(cell, r.warehouse, scan)


metrics = analysis_asset(
    "metrics",
    metrics_step,
    per_step=True,
    group_name="experiments",
    kinds={warehouse_kind(), "sql"},
    deps=["enrollments", *METRICS_SOURCES],
    code_version=code_version("assets/metrics.py", "sql", "planner.py", "windows.py"),
    description=(
        "Per-client metrics of every analysis window that closes on this date: one table per basis "
        "and period (`<slug>_<basis>_<period>_<window>`) and views that union the windows."
    ),
)
