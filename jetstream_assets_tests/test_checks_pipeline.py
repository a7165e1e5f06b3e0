"""Asset checks in real runs: results recorded in the Dagster instance, a planted sample ratio mismatch, an
experiment nobody enrolled in, and a corrupted export file."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from jetstream_assets.assets.exports import statistics_export
from jetstream_assets.exports.store import LocalExportStore
from jetstream_assets.partitions import cell_key
from jetstream_assets.runner import run_experiment
from jetstream_assets_tests.worlds import build_world, drop_enrollments as _drop_enrollments

CLIENTS = 3_000
SRM_SLUG, SRM_BRANCH = "demo-live", "treatment-a"  # half of this branch's enrollments are dropped
EMPTY_SLUG = "demo-custom"  # every enrollment event of it is dropped
ENROLLMENTS = dg.AssetKey("enrollments")


def _last_enrollment_date(world, slug: str) -> dt.date:
    record = next(e for e in world.experiments if e["slug"] == slug)
    return dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)


def _range_tags(world, slug: str, first: dt.date, last: dt.date) -> dict[str, str]:
    if not world.instance.has_dynamic_partition("experiments", slug):
        world.instance.add_dynamic_partitions("experiments", [slug])
    return {
        ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slug, first)),
        ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slug, last)),
    }


def _run_enrollments(world, slug: str, days_before: int = 1) -> dg.ExecuteInProcessResult:
    """Enrollments of `slug` over its last enrollment date and the days before it, in one run."""
    last = _last_enrollment_date(world, slug)
    result = world.defs.resolve_job_def("analysis").execute_in_process(
        instance=world.instance,
        tags=_range_tags(world, slug, last - dt.timedelta(days=days_before), last),
        asset_selection=[ENROLLMENTS],
        raise_on_error=False,
    )
    assert result.success
    return result


def _evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def _recorded(instance, run_id: str) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """The check evaluations the instance stored for a run (what the UI shows)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        found[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("checks")
    with build_world(home, CLIENTS) as w:
        events = home / "warehouse" / "telemetry" / "events.parquet"
        w.extra["dropped_srm"] = _drop_enrollments(events, SRM_SLUG, SRM_BRANCH, keep_every=2)
        w.extra["dropped_empty"] = _drop_enrollments(events, EMPTY_SLUG, None, keep_every=None)
        assert w.extra["dropped_srm"] > 100 and w.extra["dropped_empty"] > 100
        yield w


def test_clean_enrollments_pass_both_checks_and_are_recorded(world):
    result = _run_enrollments(world, "demo-complete")
    evaluations = _evaluations(result)
    srm = evaluations[("enrollments", "sample_ratio_mismatch")]
    assert srm.passed and srm.severity == dg.AssetCheckSeverity.WARN
    assert srm.metadata["experiment"].value == "demo-complete"
    figures = srm.metadata["figures"].data["demo-complete"]
    assert set(figures["observed"]) == {"control", "treatment"}
    assert sum(figures["observed"].values()) == pytest.approx(sum(figures["expected"].values()))
    clients = evaluations[("enrollments", "enrolled_clients")]
    assert clients.passed and clients.metadata["clients"].data["demo-complete"] > 500
    # the instance recorded both, and the UI's latest-evaluation lookup finds them
    assert set(_recorded(world.instance, result.run_id)) == set(evaluations)
    for name in ("sample_ratio_mismatch", "enrolled_clients"):
        record = world.instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(ENROLLMENTS, name))
        assert record.run_id == result.run_id and record.status == AssetCheckExecutionRecordStatus.SUCCEEDED


def test_planted_sample_ratio_mismatch_fails_with_warn_naming_the_experiment(world):
    result = _run_enrollments(world, SRM_SLUG)
    srm = _recorded(world.instance, result.run_id)[("enrollments", "sample_ratio_mismatch")]
    assert not srm.passed and srm.severity == dg.AssetCheckSeverity.WARN
    assert srm.metadata["experiment"].value == SRM_SLUG
    assert srm.metadata["experiments_failed"].data == [SRM_SLUG]
    assert srm.metadata["p_value"].value < 0.001
    figures = srm.metadata["figures"].data[SRM_SLUG]
    observed, expected = figures["observed"], figures["expected"]
    assert observed[SRM_BRANCH] < 0.75 * expected[SRM_BRANCH]
    assert observed["control"] > expected["control"] and observed["treatment-b"] > expected["treatment-b"]
    assert SRM_SLUG in srm.description and "Sample ratio mismatch" in srm.description
    # a warning: the asset materialized and the enrolled_clients check passed
    assert _evaluations(result)[("enrollments", "enrolled_clients")].passed


def test_an_experiments_srm_warning_survives_another_experiments_step(world):
    """Checks are partitioned: demo-complete's clean step cannot turn demo-live's warning green."""
    srm_run = _run_enrollments(world, SRM_SLUG)
    clean_run = _run_enrollments(world, "demo-complete")
    check = dg.AssetCheckKey(ENROLLMENTS, "sample_ratio_mismatch")
    srm_cell = str(cell_key(SRM_SLUG, _last_enrollment_date(world, SRM_SLUG)))
    clean_cell = str(cell_key("demo-complete", _last_enrollment_date(world, "demo-complete")))
    storage = world.instance.event_log_storage
    latest = {
        cell: storage.get_latest_asset_check_execution_by_key([check], partition_filter=PartitionKeyFilter(key=cell))[check]
        for cell in (srm_cell, clean_cell)
    }
    assert latest[srm_cell].run_id == srm_run.run_id and latest[clean_cell].run_id == clean_run.run_id
    assert latest[srm_cell].status == AssetCheckExecutionRecordStatus.FAILED
    assert latest[clean_cell].status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert not latest[srm_cell].evaluation.passed and latest[srm_cell].evaluation.severity == dg.AssetCheckSeverity.WARN


def test_experiment_without_enrolled_clients_fails_with_error(world):
    result = _run_enrollments(world, EMPTY_SLUG)
    evaluations = _evaluations(result)
    clients = evaluations[("enrollments", "enrolled_clients")]
    assert not clients.passed and clients.severity == dg.AssetCheckSeverity.ERROR
    assert clients.metadata["experiment"].value == EMPTY_SLUG
    assert "enrollment_query" in clients.description and EMPTY_SLUG in clients.description
    srm = evaluations[("enrollments", "sample_ratio_mismatch")]
    assert srm.passed and "No split" in srm.description


def test_step_before_enrollment_ends_still_reports_every_check(world):
    last = _last_enrollment_date(world, "demo-complete")
    result = world.defs.resolve_job_def("analysis").execute_in_process(
        instance=world.instance,
        tags=_range_tags(world, "demo-complete", last - dt.timedelta(days=3), last - dt.timedelta(days=1)),
        asset_selection=[ENROLLMENTS],
    )
    evaluations = _evaluations(result)
    assert set(evaluations) == {("enrollments", "sample_ratio_mismatch"), ("enrollments", "enrolled_clients")}
    assert all(e.passed and e.description.startswith("Nothing to check") for e in evaluations.values())


class CorruptingExportStore(LocalExportStore):
    """Puts an out-of-range ci_width into the first row of every statistics file it writes: what a broken
    store or a concurrent writer would leave behind after the payload validated in memory."""

    def _put(self, path: str, data: bytes) -> None:
        if path.startswith("statistics/"):
            rows = json.loads(data)
            rows[0]["ci_width"] = 5.0
            data = json.dumps(rows).encode()
        super()._put(path, data)


def test_exports_validate_and_a_corrupted_file_fails(world):
    slug = "demo-complete"
    last = _last_enrollment_date(world, slug)
    summary = run_experiment(world.instance, world.defs, slug, [last, last + dt.timedelta(days=1)])
    assert summary.success, summary.errors
    recorded = _recorded(world.instance, summary.run_id)
    for asset in ("statistics_export", "metadata_export"):
        check = recorded[(asset, "exports_valid")]
        assert check.passed and check.severity == dg.AssetCheckSeverity.ERROR, check.description
        assert check.metadata["checked"].value >= 1
    files = recorded[("statistics_export", "exports_valid")].metadata["files"].data
    assert "statistics/statistics_demo_complete_daily.json" in files

    corrupting = CorruptingExportStore(root=world.resources["export_store"].root)
    result = dg.materialize(
        [statistics_export],
        instance=world.instance,
        resources={**world.resources, "export_store": corrupting},
        tags=_range_tags(world, slug, last, last),
    )
    assert result.success  # the files were written; the check is what flags them
    check = _evaluations(result)[("statistics_export", "exports_valid")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["file"].value == "statistics/statistics_demo_complete_daily.json"
    assert check.metadata["experiment"].value == slug
    assert "ci_width" in check.metadata["error"].value
    assert "statistics_demo_complete_daily.json" in check.description
