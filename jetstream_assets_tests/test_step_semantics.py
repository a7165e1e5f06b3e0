"""What Dagster records for an analysis step, whatever launched it: failed cells are failed partitions,
checks stay on their experiment's partitions, the plan is made once per run and shown, a job-page range
the step was not handed is refused, and every launch path gets the jetstream/* tags."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from jetstream_assets import planner as analysis
from jetstream_assets.assets.cells import CellError, analysis_asset
from jetstream_assets.assets.plan import analysis_plan
from jetstream_assets.partitions import ANALYSIS_PARTITIONS, cell_key
from jetstream_assets.run_tags import EXPERIMENT_TAG, REASON_TAG, ExperimentRunCoordinator, launch_tags

from .worlds import build_world

SLUG = "demo-complete"
FAILING = "probe failed on purpose"


def _last_enrollment(world, slug: str = SLUG) -> dt.date:
    record = next(e for e in world.experiments if e["slug"] == slug)
    return dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)


def _tags(world, slug: str, first: dt.date, last: dt.date) -> dict[str, str]:
    if not world.instance.has_dynamic_partition("experiments", slug):
        world.instance.add_dynamic_partitions("experiments", [slug])
    return {ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slug, first)),
            ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slug, last))}


def _probe(bad: set[dt.date]):
    """An analysis asset whose cells fail on the `bad` dates (in place of a broken metric)."""

    def compute(cell, resources):
        if cell.analysis_date in bad:
            raise CellError(f"{FAILING}: {cell.slug} {cell.analysis_date}")
        return {"windows": len(cell.windows)}

    return analysis_asset("probe", compute, group_name="experiments", kinds={"python"}, deps=["analysis_plan"],
                          code_version="1", description="test probe")


def _defs(world, bad: set[dt.date]) -> dg.Definitions:
    probe = _probe(bad)
    return dg.Definitions(
        assets=[analysis_plan, probe],
        jobs=[dg.define_asset_job("probe_job", [analysis_plan, probe], partitions_def=ANALYSIS_PARTITIONS,
                                  executor_def=dg.in_process_executor)],
        resources=world.resources,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("semantics"), clients=2000) as w:
        yield w


def test_a_failed_cell_is_a_failed_partition_and_only_it_is_rerun(world):
    last = _last_enrollment(world)
    dates = [last + dt.timedelta(days=i) for i in range(4)]
    bad = dates[2]
    keys = [str(cell_key(SLUG, d)) for d in dates]
    result = _defs(world, {bad}).resolve_job_def("probe_job").execute_in_process(
        instance=world.instance, tags=_tags(world, SLUG, dates[0], dates[-1]), raise_on_error=False
    )
    # the run does not end looking like a clean success, and says which cell failed
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "probe")
    assert f"1 of {len(dates)} cell(s) failed" in failure.event_specific_data.error.message
    probe = dg.AssetKey("probe")
    materialized = world.instance.get_materialized_partitions(probe)
    assert materialized == set(keys) - {str(cell_key(SLUG, bad))}
    status = world.instance.get_status_by_partition(probe, keys, ANALYSIS_PARTITIONS)
    assert status[str(cell_key(SLUG, bad))] == dg.AssetPartitionStatus.FAILED
    assert all(status[k] == dg.AssetPartitionStatus.MATERIALIZED for k in keys if k != str(cell_key(SLUG, bad)))

    # "backfill failed and missing": the failed subset is exactly the bad cell; rerunning it fixes it
    failed = [k for k, s in status.items() if s == dg.AssetPartitionStatus.FAILED]
    assert failed == [str(cell_key(SLUG, bad))]
    rerun = _defs(world, set()).resolve_job_def("probe_job").execute_in_process(
        instance=world.instance, partition_key=cell_key(SLUG, bad), asset_selection=[probe]
    )
    assert rerun.success
    again = world.instance.get_status_by_partition(probe, keys, ANALYSIS_PARTITIONS)
    assert set(again.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    assert [m.partition for m in rerun.asset_materializations_for_node("probe")] == [str(cell_key(SLUG, bad))]


def test_a_job_page_backfill_the_step_was_not_handed_fails_loudly(world):
    """Dagster's job-page backfill tags the run with a range and with the first key's dimension tags,
    and the dimension tags win: the step would do the first cell only (dagster-io/dagster#17404)."""
    last = _last_enrollment(world)
    tags = {**_tags(world, SLUG, last, last + dt.timedelta(days=5)),
            "dagster/partition/experiment": SLUG, "dagster/partition/analysis_date": last.isoformat()}
    result = _defs(world, set()).resolve_job_def("probe_job").execute_in_process(
        instance=world.instance, tags=tags, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "job page" in failure.event_specific_data.error.message
    assert not result.get_asset_materialization_events(), "nothing may be half-run"


def test_the_plan_is_made_once_per_run_and_shows_windows_dates_commit_and_skips(world, monkeypatch):
    resolutions, reads = [], []
    resolve, get = analysis.resolve_config, type(world.resources["experimenter"]).get
    monkeypatch.setattr(analysis, "resolve_config", lambda *a, **k: resolutions.append(1) or resolve(*a, **k))
    monkeypatch.setattr(type(world.resources["experimenter"]), "get",
                        lambda self, slug: reads.append(slug) or get(self, slug))
    last = _last_enrollment(world)
    dates = [last - dt.timedelta(days=1), last, last + dt.timedelta(days=6)]
    result = world.defs.resolve_job_def("analysis").execute_in_process(
        instance=world.instance, tags=_tags(world, SLUG, dates[0], dates[-1]),
    )
    assert result.success
    # six steps over eight cells: one Experimenter read and one config resolution in the whole run
    assert reads == [SLUG] and len(resolutions) == 1
    by_key = {m.partition: m.metadata for m in result.asset_materializations_for_node("analysis_plan")}
    before = by_key[str(cell_key(SLUG, dates[0]))]
    assert before["status"].value == "no-op" and before["code"].value == "not_yet"
    week = by_key[str(cell_key(SLUG, dates[-1]))]
    assert "week 1" in week["windows"].value
    assert f"last enrollment {last}" in week["effective_dates"].value
    assert len(week["config_commit"].value) == 40 and len(week["config_digest"].value) == 16
    # the experiment's dates at a glance, on its latest cell of the step
    table = week["experiment_dates"].value
    assert f"| {dates[0]} | no-op: not_yet |" in table and f"| {dates[-1]} | computes" in table
    # the cells of this run are marked as this run's, not as missing
    (last_line,) = [line for line in table.splitlines() if line.startswith(f"| {dates[-1]} | computes")]
    assert last_line.endswith(" | ".join(["this run"] * 5) + " |"), last_line
    assert f"{(dates[-1] - dates[0]).days + 1} computed by this run" in table


def test_srm_and_enrolled_clients_are_recorded_per_partition(world):
    last = _last_enrollment(world)
    result = world.defs.resolve_job_def("analysis").execute_in_process(
        instance=world.instance, tags=_tags(world, SLUG, last, last), asset_selection=[dg.AssetKey("enrollments")],
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {"sample_ratio_mismatch", "enrolled_clients"}
    assert {e.partition for e in evaluations} == {str(cell_key(SLUG, last))}
    check = dg.AssetCheckKey(dg.AssetKey("enrollments"), "sample_ratio_mismatch")
    latest = world.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [check], partition_filter=PartitionKeyFilter(key=str(cell_key(SLUG, last)))
    )
    assert latest[check].partition == str(cell_key(SLUG, last))


def test_ui_and_backfill_runs_get_the_experiment_tag_at_submission(world):
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="jetstream_assets.definitions")
            ),
            repository_name="__repository__",
        ),
        job_name="analysis",
    )
    overrides = {"run_coordinator": {"module": "jetstream_assets.run_tags", "class": "ExperimentRunCoordinator",
                                     "config": {"max_concurrent_runs": 2, "tag_concurrency_limits": [
                                         {"key": EXPERIMENT_TAG, "value": {"applyLimitPerUniqueValue": True},
                                          "limit": 1}]}}}
    last = _last_enrollment(world)
    with dg.instance_for_test(overrides=overrides) as instance:
        assert isinstance(instance.run_coordinator, ExperimentRunCoordinator)
        instance.add_dynamic_partitions("experiments", [SLUG])
        launches = {
            # an asset-page single-run backfill: Dagster's range tags only
            "backfill": {**_tags(world, SLUG, last, last + dt.timedelta(days=3)), "dagster/backfill": "abcd"},
            # an asset-page Materialize of one cell
            "ui": {"dagster/partition": str(cell_key(SLUG, last)), "dagster/partition/experiment": SLUG,
                   "dagster/partition/analysis_date": last.isoformat(), "dagster/from_ui": "true"},
        }
        for how, tags in launches.items():
            run = create_run_for_test(instance, job_name="analysis", tags=tags, remote_job_origin=origin)
            submitted = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))
            assert submitted.status == dg.DagsterRunStatus.QUEUED
            assert submitted.tags[EXPERIMENT_TAG] == SLUG, how
            assert submitted.tags[REASON_TAG] in {"backfill abcd", "launched from the Dagster UI"}
    # a sensor's or the CLI's own tags are kept; other jobs (aggregates: plain dates) are left alone
    assert launch_tags({EXPERIMENT_TAG: "x", ASSET_PARTITION_RANGE_START_TAG: "2026-01-01|y"}) == {}
    assert launch_tags({"dagster/partition": "2026-11-20"}) == {}


def test_a_live_experiments_dates_show_what_is_still_to_come(world):
    slug = "demo-live"
    last = _last_enrollment(world, slug)
    result = world.defs.resolve_job_def("analysis").execute_in_process(
        instance=world.instance, tags=_tags(world, slug, last, last), asset_selection=[dg.AssetKey("analysis_plan")],
    )
    assert result.success
    (plan,) = result.asset_materializations_for_node("analysis_plan")
    table = plan.metadata["experiment_dates"].value
    today = dt.date.fromisoformat(os.environ["JETSTREAM_TODAY"])
    assert f"| {today} | still to come |" in table and "1 still to come" in table
    assert f"| {last} | enrollments only |" in table or f"| {last} | computes" in table
