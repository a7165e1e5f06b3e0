"""A rerun after an experiment's end date moved leaves no table or export of the old windows."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from jetstream_assets.planner import Planner
from jetstream_assets.exports.store import statistics_path
from jetstream_assets.run_tags import RERUN_TAG
from jetstream_assets.stale_outputs import expected_outputs
from jetstream_assets.resources import experimenter_file
from jetstream_assets.runner import run_experiment
from jetstream_assets.sql import names
from jetstream_assets.windows import AnalysisPeriod

from .worlds import TODAY, build_world, run

SLUG = "demo-live"


def outputs(world):
    tables = set(names.experiment_tables(SLUG, world.warehouse.list_tables()))
    store = world.resources["export_store"]
    exports = {statistics_path(SLUG, p.table_suffix) for p in AnalysisPeriod}
    return tables, {p for p in exports if store.exists(p)}


@pytest.fixture(scope="module")
def rerun_world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("rerun"), clients=3000) as world:
        first = run(world, SLUG)
        assert first.success, first.errors
        world.extra["before"] = outputs(world)
        # Experimenter now says the experiment ended five days ago
        records = json.loads(experimenter_file(world.home).read_text())
        live = next(r for r in records if r["slug"] == SLUG)
        world.extra["start"] = dt.date.fromisoformat(live["startDate"])
        live["endDate"] = (TODAY - dt.timedelta(days=5)).isoformat()
        experimenter_file(world.home).write_text(json.dumps(records))
        yield world


def test_the_new_end_date_removes_later_windows_and_adds_overall(rerun_world):
    world = rerun_world
    tables_before, exports_before = world.extra["before"]
    week2 = names.statistics_table(SLUG, AnalysisPeriod.WEEK, 2)
    assert week2 in tables_before and statistics_path(SLUG, "overall") not in exports_before

    planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
    dates = planner.rerun_dates(planner.experiment(SLUG))
    assert dates[-1] == TODAY - dt.timedelta(days=4)  # end + 1 day
    summary = run_experiment(world.instance, world.defs, SLUG, dates, full=True, reason="end date moved")
    assert summary.success, summary.errors

    tables, exports = outputs(world)
    expected_tables, expected_exports = expected_outputs(planner, SLUG)
    assert tables == expected_tables  # nothing stale, nothing missing
    assert exports == expected_exports
    assert week2 not in tables
    assert names.metrics_table(SLUG, "enrollments", AnalysisPeriod.WEEK, 2) not in tables
    assert names.statistics_table(SLUG, AnalysisPeriod.OVERALL, 1) in tables
    assert statistics_path(SLUG, "overall") in exports
    # the views (and so the weekly export) only hold the windows that still exist
    weekly = world.warehouse.read_table(names.statistics_view(SLUG, AnalysisPeriod.WEEK))
    assert set(weekly["window_index"]) == {1}
    exported = world.resources["export_store"].read_json(statistics_path(SLUG, "weekly"))
    assert {str(row["window_index"]) for row in exported} == {"1"}
    # the run says why it ran and what it removed
    run_record = world.instance.get_run_by_id(summary.run_id)
    assert run_record.tags[RERUN_TAG] == "full" and run_record.tags["jetstream/reason"] == "end date moved"
    removed = [
        e.asset_materialization.metadata["rerun_removed"].value
        for e in world.instance.all_logs(summary.run_id)
        if e.asset_materialization and "rerun_removed" in e.asset_materialization.metadata
    ]
    assert removed and week2 in removed[0]["tables"]


def test_a_backfill_of_every_date_without_the_tag_is_a_full_rerun_too(rerun_world):
    """The UI's backfill dialog over all of an experiment's dates purges the same way."""
    world = rerun_world
    stale = names.statistics_table(SLUG, AnalysisPeriod.WEEK, 7)
    world.warehouse.write_dataframe(world.warehouse.read_table(names.statistics_table(SLUG, AnalysisPeriod.WEEK, 1)), stale)
    planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
    dates = planner.rerun_dates(planner.experiment(SLUG))
    summary = run_experiment(world.instance, world.defs, SLUG, dates)  # not tagged full
    assert summary.success, summary.errors
    assert not world.warehouse.table_exists(stale)


def test_a_single_date_run_removes_nothing(rerun_world):
    world = rerun_world
    stale = names.statistics_table(SLUG, AnalysisPeriod.WEEK, 8)
    world.warehouse.write_dataframe(world.warehouse.read_table(names.statistics_table(SLUG, AnalysisPeriod.WEEK, 1)), stale)
    summary = run_experiment(world.instance, world.defs, SLUG, [TODAY - dt.timedelta(days=6)])
    assert summary.success
    assert world.warehouse.table_exists(stale)
    world.warehouse.delete_tables([stale])
