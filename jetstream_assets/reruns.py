"""Reruns: one Dagster run over an experiment's dates that leaves no stale window behind.

Every way of starting work on an experiment (the sensors, `jetstream-assets run`, the UI's backfill
dialog) ends up as a run over a range of (experiment, date) partitions, tagged so the UI says why it ran.
A *full* rerun (every date from the start, after a change to the experiment or its configuration)
first removes the experiment's tables, views and statistics exports that the new plan no longer
produces -- e.g. the week-5 window after the end date moved earlier, or an exposures basis that was
dropped. Everything the new plan does produce is replaced table by table as the run goes, atomically,
so a rerun that fails half-way leaves each table either old or new, never missing or half-written.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
    PARTITION_NAME_TAG,
)
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.analysis import Cell, Planner
from jetstream_assets.exports.store import ExportStore, statistics_path
from jetstream_assets.partitions import ANALYSIS_DATES, cell_key, parse_key
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import bases_for
from jetstream_assets.warehouse.base import Warehouse

logger = logging.getLogger("jetstream_assets")

EXPERIMENT_TAG = "jetstream/experiment"
RERUN_TAG = "jetstream/rerun"  # "full": every date of the experiment, stale outputs removed first
REASON_TAG = "jetstream/reason"
COMMIT_TAG = "jetstream/config_commit"


def sensor_interval(default: int) -> int:
    """Seconds between sensor ticks; JETSTREAM_SENSOR_INTERVAL_SECONDS shortens it (the demo UI uses 30)."""
    value = os.environ.get("JETSTREAM_SENSOR_INTERVAL_SECONDS")
    return int(value) if value else default


def first_grid_date() -> dt.date:
    return dt.date.fromisoformat(ANALYSIS_DATES.start.strftime("%Y-%m-%d"))


def run_tags(
    slug: str,
    dates: list[dt.date],
    *,
    full: bool = False,
    reason: str | None = None,
    commit: str | None = None,
) -> dict[str, str]:
    """Tags of a run over `slug`'s consecutive `dates`: the partition range plus why it runs."""
    dates = sorted(dates)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slug, dates[0])),
        ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slug, dates[-1])),
        EXPERIMENT_TAG: slug,
    }
    if full:
        tags[RERUN_TAG] = "full"
    if reason:
        tags[REASON_TAG] = reason[:200]
    if commit:
        tags[COMMIT_TAG] = commit
    return tags


def _experiments_of(tags: dict[str, str]) -> set[str]:
    """The experiments a run covers, read from the partition tags Dagster sets (one key, or a range)."""
    if f"{MULTIDIMENSIONAL_PARTITION_PREFIX}experiment" in tags:
        return {tags[f"{MULTIDIMENSIONAL_PARTITION_PREFIX}experiment"]}
    keys = [tags.get(t) for t in (PARTITION_NAME_TAG, ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)]
    slugs = set()
    for key in filter(None, keys):
        if "|" in key:  # an analysis cell; the aggregates' plain dates are not
            slugs.add(parse_key(key)[0])
    return slugs


def launch_tags(tags: dict[str, str]) -> dict[str, str]:
    """The jetstream/* tags a run launched outside the sensors and the CLI lacks (the UI's Materialize, a
    backfill): the experiment (so the one-run-per-experiment limit applies) and why it runs."""
    if EXPERIMENT_TAG in tags:
        return {}
    slugs = _experiments_of(tags)
    if len(slugs) != 1:  # not an analysis run, or one over several experiments: nothing to key on
        return {}
    added = {EXPERIMENT_TAG: slugs.pop()}
    if REASON_TAG not in tags:
        if tags.get(BACKFILL_ID_TAG):
            added[REASON_TAG] = f"backfill {tags[BACKFILL_ID_TAG]}"
        elif tags.get("dagster/from_ui") == "true":
            added[REASON_TAG] = "launched from the Dagster UI"
        else:
            added[REASON_TAG] = "launched by hand"
    return added


class ExperimentRunCoordinator(QueuedRunCoordinator):
    """Dagster's queued run coordinator that first gives each analysis run the jetstream/* tags.

    Runs launched from the UI or by a backfill carry only Dagster's partition tags: a single cell gets
    `dagster/partition/experiment`, but a single-run backfill over a range gets only the range tags, so no
    tag Dagster sets names the experiment on every launch path. Tagging at submission lets one
    `tag_concurrency_limits` rule on `jetstream/experiment` hold for every path, and lets the runs list
    filter any run by experiment. Configure it as the instance's run_coordinator (same config as
    QueuedRunCoordinator)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        added = launch_tags(dict(run.tags))
        if added:
            self._instance.add_run_tags(run.run_id, added)
            refreshed = self._instance.get_run_by_id(run.run_id)
            context = context._replace(dagster_run=refreshed or run)
        return super().submit_run(context)


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
