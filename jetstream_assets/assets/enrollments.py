"""enrollments[slug, D]: one row per enrolled client, computed once enrollment has ended."""


import dagster as dg
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.planner import Cell
from jetstream_assets.assets.cells import analysis_asset, noop
from jetstream_assets.assets.common import code_version, md_table, sql_block, warehouse_kind
from jetstream_assets.assets.telemetry import ENROLLMENTS_SOURCES
from jetstream_assets.checks.enrollments import (
    BRANCH_CLIENTS,
    branch_clients,
    enrollments_check_specs,
    enrollments_checks,
)
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import enrollments_sql
from jetstream_assets.warehouse.base import Warehouse
from jetstream_assets.windows import AnalysisWindow, time_limits


def compute_enrollments(cell: Cell, warehouse: Warehouse) -> dict:
    table = names.enrollments_table(cell.slug)
    last = cell.last_enrollment_date
    if cell.analysis_date < last:
        return noop(f"Enrollment of {cell.slug} is not complete until {last}.")
    if cell.analysis_date > last and warehouse.table_exists(table):
        return noop(f"Enrollments of {cell.slug} were computed on {last}.", table=table)
    first_day = AnalysisWindow(AnalysisPeriod.DAY, 1, 0, 0)
    limits = time_limits(first_day, cell.start_date, cell.enrollment_period, last)
    sql = enrollments_sql(cell.resolved, limits)
    result = warehouse.run_query(sql, table)
    ref = warehouse.table_ref(table)
    counts = warehouse.query(
        f"SELECT branch, COUNT(*) AS clients, COUNT(exposure_date) AS exposed "
        f"FROM `{ref}` GROUP BY branch ORDER BY branch"
    )
    return {
        "table": ref,
        "dagster/row_count": result.rows,
        "clients": result.rows,
        "clients_per_branch": md_table(counts),
        BRANCH_CLIENTS: dg.MetadataValue.json(branch_clients(counts)),  # read by the asset checks
        "enrollment_period": f"{cell.start_date} .. {last} ({cell.enrollment_period} days)",
        "config_commit": cell.resolved.commit or "",
        "sql": sql_block(sql),
    }


enrollments = analysis_asset(
    "enrollments",
    lambda cell, r: compute_enrollments(cell, r.warehouse),
    group_name="experiments",
    kinds={warehouse_kind(), "sql"},
    deps=["analysis_plan", *ENROLLMENTS_SOURCES],
    code_version=code_version("assets/enrollments.py", "sql", "planner.py", "windows.py", "checks"),
    check_specs=enrollments_check_specs("enrollments"),
    checks=enrollments_checks,
    description=(
        "Enrolled clients of the experiment: branch, enrollment date, exposure, and one boolean per "
        "segment. Computed on the last enrollment date (or whenever missing); later dates reuse it."
    ),
)
