"""What the sensors request actually runs: one run over an experiment's dates, or only its metadata."""

from __future__ import annotations

import datetime as dt
import subprocess

import dagster as dg
import pytest

from jetstream_assets.exports.store import metadata_path, statistics_path
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.resources import metric_hub_dir
from jetstream_assets.sensors.experimenter import experimenter_sensor
from jetstream_assets.sensors.metric_hub import metric_hub_sensor

from .worlds import build_world

SLUG = "demo-complete"


def evaluate(world, sensor, cursor):
    with dg.build_sensor_context(instance=world.instance, cursor=cursor, resources=world.resources) as context:
        result = sensor(context)
        after = context.cursor
    if isinstance(result, dg.SkipReason):
        return [], after
    for request in result.dynamic_partitions_requests or []:
        world.instance.add_dynamic_partitions(EXPERIMENTS.name, list(request.partition_keys))
    return result.run_requests, result.cursor


def execute(world, request: dg.RunRequest):
    job = world.defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=world.instance, tags=request.tags, asset_selection=request.asset_selection, raise_on_error=False
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("sensor-runs"), clients=2000) as world:
        yield world


def test_sensor_requests_run_as_one_run_per_experiment_and_refresh_only_what_changed(world):
    requests, _ = evaluate(world, experimenter_sensor, None)
    request = next(r for r in requests if r.tags.get("jetstream/experiment") == SLUG)
    result = execute(world, request)
    assert result.success
    keys = {e.partition for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("statistics")}
    start, end = (request.tags[f"dagster/asset_partition_range_{x}"].split("|")[0] for x in ("start", "end"))
    days = (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days + 1
    assert len(keys) == days and min(keys).startswith(start) and max(keys).startswith(end)  # every date, one run
    store = world.resources["export_store"]
    assert store.exists(statistics_path(SLUG, "overall"))
    before = store.read_json(metadata_path(SLUG))
    assert before["metrics"]["active_hours"]["friendly_name"] == "Active hours"

    snapshot = next(r for r in requests if r.job_name == "experimenter_snapshot")
    assert execute(world, snapshot).success
    assert world.warehouse.query("SELECT COUNT(*) AS n FROM monitoring.experimenter_experiments")["n"][0] == 5

    # a description-only commit reruns only the metadata export of the latest analysed date
    _, hub_cursor = evaluate(world, metric_hub_sensor, None)
    repo = metric_hub_dir(world.home)
    path = repo / "definitions" / "firefox_desktop.toml"
    path.write_text(path.read_text().replace('friendly_name = "Active hours"', 'friendly_name = "Hours active"'))
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "rename"],
                   check=True)
    requests, _ = evaluate(world, metric_hub_sensor, hub_cursor)
    request = next(r for r in requests if r.tags["jetstream/experiment"] == SLUG)
    statistics_before = store.read_json(statistics_path(SLUG, "overall"))
    result = execute(world, request)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"metadata_export"}
    assert store.read_json(metadata_path(SLUG))["metrics"]["active_hours"]["friendly_name"] == "Hours active"
    assert store.read_json(statistics_path(SLUG, "overall")) == statistics_before
