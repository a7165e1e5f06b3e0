"""Rows a run read from each telemetry table, from the local warehouse's scan log (JETSTREAM_SCAN_LOG),
against one scan of the days the run needs. Parquet is read a row group at a time and the demo telemetry
has one row group per submission date, so both sides are counted in whole row groups (days)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow.parquet as pq


def _row_groups(path: Path) -> list[tuple[dt.date, dt.date, int]]:
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.to_arrow_schema().get_field_index("submission_date")
    out = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(column).statistics
        out.append((stats.min, stats.max, group.num_rows))
    return out


def days_needed(home: Path, slug: str, dates: list[dt.date], today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last data date the run's queries need: enrollment dates and every window's data
    (a window [a, b] reads days S + a .. L + b: clients enroll over S .. L)."""
    from jetstream_assets.planner import Cell, Planner
    from jetstream_assets.resources import build_resources
    from jetstream_assets.windows import time_limits

    resources = build_resources(home)
    planner = Planner(resources["experimenter"], resources["metric_hub"], today)
    firsts, lasts = [], []
    for date in dates:
        cell = planner.plan(slug, date)
        if not isinstance(cell, Cell):
            continue
        if date == cell.last_enrollment_date:  # the enrollments query runs on this date
            firsts.append(cell.start_date)
            lasts.append(cell.last_enrollment_date)
        for w in cell.windows:
            limits = time_limits(w, cell.start_date, cell.enrollment_period, date)
            firsts.append(cell.start_date + dt.timedelta(days=w.start))
            lasts.append(dt.date.fromisoformat(limits.last_date_data_required))
    return min(firsts), max(lasts)


def rows_read(telemetry: Path, scan_log: Path, first: dt.date, last: dt.date, runs: int = 1) -> list[str]:
    groups_read: dict[str, int] = {}
    for line in scan_log.read_text().splitlines():
        for files, groups in json.loads(line)["row_groups"].items():
            for name in re.findall(r"telemetry/(\w+)\.parquet", files):
                groups_read[name] = groups_read.get(name, 0) + groups
    lines = []
    for table, read in sorted(groups_read.items()):
        groups = _row_groups(telemetry / f"{table}.parquet")
        needed = [rows for lo, hi, rows in groups if hi >= first and lo <= last]
        per_group = sum(needed) / max(len(needed), 1)
        once = sum(needed) * runs
        approx = read * per_group
        lines.append(
            f"  {table:<18} {read:>5} row groups (~{approx:>11,.0f} rows) read; one scan of {first}..{last}"
            f"{f' x {runs} runs' if runs > 1 else ''}: {len(needed) * runs:>5} row groups ({once:>11,} rows); "
            f"ratio {read / max(len(needed) * runs, 1):.2f}x"
        )
    return lines


def bigquery_dry_run(cell) -> str:
    """Bytes BigQuery would bill for the cell's metrics: the shared scan against one query per window and
    basis, from dry runs; needs JETSTREAM_BIGQUERY_PROJECT and Google credentials (else says so)."""
    import os

    if not os.environ.get("JETSTREAM_BIGQUERY_PROJECT"):
        return "BigQuery dry run skipped: no JETSTREAM_BIGQUERY_PROJECT / Google credentials here"
    from jetstream_assets.resources import build_warehouse
    from jetstream_assets.sql import names
    from jetstream_assets.sql.metrics_scan import scan_windows, shared_metrics_sql
    from jetstream_assets.sql.queries import bases_for, metrics_sql
    from jetstream_assets.windows import time_limits

    warehouse = build_warehouse(Path("."))
    ref = warehouse.table_ref(names.enrollments_table(cell.slug))
    closing = [(w, cell.analysis_date) for w in cell.windows]
    try:
        shared = warehouse.dry_run_bytes(
            shared_metrics_sql(cell.resolved, scan_windows(cell.resolved, cell.start_date, cell.enrollment_period,
                                                           closing), ref))
        single = sum(
            warehouse.dry_run_bytes(metrics_sql(
                cell.resolved, time_limits(w, cell.start_date, cell.enrollment_period, cell.analysis_date),
                w.period, basis, ref))
            for w in cell.windows for basis in bases_for(cell.resolved, w.period)
        )
    except Exception as e:  # noqa: BLE001 - a benchmark line, not a failure
        return f"BigQuery dry run failed: {e}"
    return (f"BigQuery dry run: shared scan {shared:,} bytes; one query per window and basis {single:,} bytes "
            f"({single / max(shared, 1):.2f}x)")
