"""A failing experiment in a daily batch: its cells show failed, never materialized, and the other experiments
of the batch are finished by the next tick (Dagster skips the later steps of a run whose step failed)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG

from jetstream_assets.assets import enrollments as enrollments_module
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENT_TAG, EXPERIMENTS_TAG, run_experiments
from jetstream_assets.sensors.experimenter import (
    CURSOR_VERSION, digest_of_snapshot, experimenter_sensor, field_digests,
)

from .worlds import TODAY, build_world

DAY = TODAY - dt.timedelta(days=1)
ORDER = ["demo-live", "demo-complete", "demo-custom", "demo-enrolling"]  # the ended one between live ones
STEPS = ("analysis_plan", "enrollments", "metrics", "statistics", "statistics_export", "metadata_export")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("batch-failures"), clients=2000) as world:
        world.instance.add_dynamic_partitions(EXPERIMENTS.name, ORDER)
        yield world


def tick(world, cursor: str) -> tuple[list[dg.RunRequest], str]:
    with dg.build_sensor_context(instance=world.instance, cursor=cursor, resources=world.resources) as context:
        result = experimenter_sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], context.cursor
    return [r for r in result.run_requests if r.job_name == "analysis"], result.cursor


def execute(world, request: dg.RunRequest):
    """As the daemon launches a sensor's request: its tags and its run key."""
    job = world.defs.resolve_job_def(request.job_name)
    return job.execute_in_process(instance=world.instance, tags={**request.tags, RUN_KEY_TAG: request.run_key},
                                  raise_on_error=False)


def materialized(world, slug: str) -> set[str]:
    """The steps whose cell (DAY, slug) is materialized."""
    key = f"{DAY}|{slug}"
    return {s for s in STEPS if key in {str(k) for k in world.instance.get_materialized_partitions(dg.AssetKey(s))}}


def ui_status(world, step: str, slug: str) -> str:
    """What the asset's Partitions tab shows for the cell (DAY, slug): Dagster's partition status cache."""
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from jetstream_assets.partitions import ANALYSIS_PARTITIONS

    cache = get_and_update_asset_status_cache_value(world.instance, dg.AssetKey(step), ANALYSIS_PARTITIONS)
    key = f"{DAY}|{slug}"
    with partition_loading_context(dynamic_partitions_store=world.instance):
        if key in {str(k) for k in cache.deserialize_failed_partition_subsets(ANALYSIS_PARTITIONS).get_partition_keys()}:
            return "failed"
        materialized = cache.deserialize_materialized_partition_subsets(ANALYSIS_PARTITIONS).get_partition_keys()
    return "materialized" if key in {str(k) for k in materialized} else "missing"


def test_a_failing_experiment_fails_alone_and_the_rest_of_its_batch_is_finished_next_tick(world, monkeypatch):
    real = enrollments_module.compute_enrollments

    def broken_for_custom(cell, warehouse):
        if cell.slug == "demo-custom":
            raise RuntimeError("the enrollments query failed")
        return real(cell, warehouse)

    monkeypatch.setattr(enrollments_module, "compute_enrollments", broken_for_custom)
    experiments = world.resources["experimenter"].fetch().experiments
    before = (DAY - dt.timedelta(days=1)).isoformat()
    cursor = json.dumps({"v": CURSOR_VERSION, "snapshot": digest_of_snapshot(experiments), "experiments": {
        e.slug: {"fields": field_digests(e), "through": before} for e in experiments if e.slug in ORDER}})

    (batch,), cursor = tick(world, cursor)
    assert batch.tags[EXPERIMENTS_TAG] == "demo-live,demo-complete,demo-custom,demo-enrolling"
    result = execute(world, batch)
    assert not result.success
    # the failing experiment's cells are never materialized: planned in a failed run, the UI shows them failed
    assert materialized(world, "demo-custom") == {"analysis_plan"}
    assert "demo-custom" in str(result.get_step_failure_events()[0].step_failure_data.user_failure_data.metadata)
    # Dagster skipped the later steps of the whole run: the others are not finished yet
    assert "metadata_export" not in materialized(world, "demo-live")
    assert ui_status(world, "enrollments", "demo-custom") == "failed"
    assert ui_status(world, "enrollments", "demo-live") == "materialized"
    assert ui_status(world, "statistics", "demo-live") == "failed"  # not done yet, until the next tick

    requests, cursor = tick(world, cursor)
    by_experiments = {frozenset(run_experiments(r.tags)): r for r in requests}
    alone = by_experiments[frozenset({"demo-custom"})]
    assert alone.tags[EXPERIMENT_TAG] == "demo-custom" and "alone" in alone.tags["jetstream/reason"]
    assert all("demo-custom" not in r.tags.get(EXPERIMENTS_TAG, "") for r in requests if r is not alone)
    assert set().union(*by_experiments) == {"demo-live", "demo-complete", "demo-custom", "demo-enrolling"}
    outcomes = {frozenset(run_experiments(r.tags)): execute(world, r).success for r in requests}
    assert outcomes.pop(frozenset({"demo-custom"})) is False and all(outcomes.values())
    for slug in ("demo-live", "demo-complete", "demo-enrolling"):
        assert materialized(world, slug) == set(STEPS)
    # the ended experiment's cell is the no-op it is, with its reason
    record = world.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("statistics"), asset_partitions=[f"{DAY}|demo-complete"]), limit=1
    ).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["status"].value == "no-op" and "ended" in metadata["reason"].value
    assert materialized(world, "demo-custom") == {"analysis_plan"}
    assert [ui_status(world, s, "demo-custom") for s in STEPS[1:]] == ["failed"] * 5
    assert {ui_status(world, s, slug) for s in STEPS for slug in ("demo-live", "demo-complete")} == {"materialized"}

    # its lone run is not retried again and again: the next tick has nothing to do for that day
    assert tick(world, cursor)[0] == []
