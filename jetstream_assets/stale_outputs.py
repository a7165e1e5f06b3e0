"""A full rerun leaves no stale window behind.

A *full* rerun (every date from the start, after a change to the experiment or its configuration) first
removes the experiment's tables, views and statistics exports that the new plan no longer produces -- e.g.
the week-5 window after the end date moved earlier, or an exposures basis that was dropped. The
analysis_plan step does it, before anything is computed, and records what it removed. Everything the new
plan does produce is replaced table by table as the run goes, atomically, so a rerun that fails half-way
leaves each table either old or new, never missing or half-written.
"""

from __future__ import annotations

import datetime as dt
import logging

from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.exports.store import ExportStore, statistics_path
from jetstream_assets.planner import Cell, Planner
from jetstream_assets.run_tags import EXPERIMENT_TAG, RERUN_TAG, first_grid_date
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import bases_for
from jetstream_assets.warehouse.base import Warehouse

logger = logging.getLogger("jetstream_assets")


def is_full_rerun(planner: Planner, slug: str, step_dates: set[dt.date], run_tags: dict[str, str]) -> bool:
    """A run tagged as a full rerun, or one whose step covers every date a rerun would (a UI backfill)."""
    if run_tags.get(RERUN_TAG) == "full" and run_tags.get(EXPERIMENT_TAG, slug) == slug:
        return True
    try:
        experiment = planner.experiment(slug)
    except Exception:  # the cells report a broken record themselves
        return False
    if experiment is None:
        return False
    wanted = {d for d in planner.rerun_dates(experiment) if d >= first_grid_date()}
    return bool(wanted) and wanted <= step_dates


def expected_outputs(planner: Planner, slug: str) -> tuple[set[str], set[str]] | None:
    """(tables and views, statistics export paths) a full rerun of `slug` produces; None when the plan
    cannot be made (unknown experiment, config error): then nothing is removed."""
    experiment = planner.experiment(slug)
    if experiment is None:
        return None
    tables = {names.enrollments_table(slug)}
    exports: set[str] = set()
    for day in planner.rerun_dates(experiment):
        plan = planner.plan(slug, day)
        if not isinstance(plan, Cell):
            if plan.is_error:
                return None
            continue
        for window in plan.windows:
            tables |= _window_outputs(plan, window.period, window.index)
            exports.add(statistics_path(slug, window.period.table_suffix))
    return tables, exports


def _window_outputs(cell: Cell, period: AnalysisPeriod, index: int) -> set[str]:
    out = {names.statistics_table(cell.slug, period, index), names.statistics_view(cell.slug, period)}
    for basis in bases_for(cell.resolved, period):
        out.add(names.metrics_table(cell.slug, basis.value, period, index))
        out.add(names.metrics_view(cell.slug, basis.value, period))
    return out


def purge_stale(planner: Planner, slug: str, warehouse: Warehouse, store: ExportStore) -> dict[str, list[str]]:
    """Remove `slug`'s tables, views and statistics exports that a full rerun will not produce again."""
    expected = expected_outputs(planner, slug)
    if expected is None:
        return {"tables": [], "exports": []}
    tables, exports = expected
    n = names.normalize(slug)
    listed = {t for prefix in (f"enrollments_{n}", f"{n}_", f"statistics_{n}_") for t in warehouse.list_tables(prefix)}
    stale_tables = sorted(set(names.experiment_tables(slug, sorted(listed))) - tables)
    ours = {statistics_path(slug, period.table_suffix) for period in AnalysisPeriod}  # exact: no prefix clash
    stale_exports = sorted(p for p in ours - exports if store.exists(p))
    if stale_tables:
        warehouse.delete_tables(stale_tables)
    for path in stale_exports:
        store.delete(path)
    if stale_tables or stale_exports:
        logger.info(
            "Rerun of %s removed %d stale table(s) and %d stale export(s)",
            slug, len(stale_tables), len(stale_exports), extra={"experiment": slug},
        )
    return {"tables": stale_tables, "exports": stale_exports}
