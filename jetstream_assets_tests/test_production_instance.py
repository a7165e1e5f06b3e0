"""The README's production deployment, exercised: its `dagster.yaml` (Postgres storage, the run queue with one
run per experiment, run monitoring, compute logs in a GCS bucket) on a real PostgreSQL server and a GCS
emulator, with `dagster-daemon` running the Experimenter sensor's run and a backfill."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster_gcp import GCSResource

from jetstream_assets.definitions import build_definitions
from jetstream_assets.jobs import ANALYSIS_ASSETS
from jetstream_assets.partitions import EXPERIMENTS, cell_key
from jetstream_assets.run_tags import EXPERIMENT_TAG
from jetstream_assets.resources import experimenter_file
from jetstream_assets_tests.daemons import env_for, failures, running_daemon, wait_for
from jetstream_assets_tests.postgres import postgres_server
from jetstream_assets_tests.worlds import TODAY, build_world

README = Path(__file__).parents[1] / "README.md"
SLUG = "demo-enrolling"  # the smallest demo experiment: a few dates


def readme_dagster_yaml() -> str:
    section = README.read_text().split("### `$DAGSTER_HOME/dagster.yaml`", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S)[1]


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as settings:
        yield settings


def test_production_environment_reads_experimenter_from_its_url(tmp_path, monkeypatch):
    from jetstream_assets.resources import build_resources

    monkeypatch.setenv("JETSTREAM_EXPERIMENTER_URL", "https://experimenter.example")
    experimenter = build_resources(tmp_path)["experimenter"]
    assert experimenter.url == "https://experimenter.example" and experimenter._source() == "url"


@pytest.mark.slow
def test_readme_production_instance_runs_the_sensor_and_a_backfill_on_postgres(
    tmp_path, monkeypatch, postgres, gcs_emulator
):
    config = readme_dagster_yaml()
    assert f'key: "{EXPERIMENT_TAG}"' in config  # the README names the tag every launch path sets
    bucket = "jetstream-compute-logs"
    GCSResource().get_client().create_bucket(bucket)
    settings = {
        "DAGSTER_PG_HOST": postgres["host"], "DAGSTER_PG_PORT": postgres["port"], "DAGSTER_PG_DB": postgres["db"],
        "DAGSTER_PG_USERNAME": postgres["user"], "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "JETSTREAM_GCS_BUCKET": bucket, "JETSTREAM_GCS_PROJECT": "test", "JETSTREAM_SENSOR_INTERVAL_SECONDS": "5",
    }
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with build_world(tmp_path / "home", clients=300) as world:
        records = json.loads(experimenter_file(world.home).read_text())
        experimenter_file(world.home).write_text(json.dumps([r for r in records if r["slug"] == SLUG]))
        for key, value in settings.items():  # build_world keeps production engines out; this test wants them
            monkeypatch.setenv(key, value)
        env = env_for(world.home, dagster_home, JETSTREAM_TODAY=TODAY.isoformat())
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.run_monitoring_enabled
        log = tmp_path / "daemon.log"
        with running_daemon(env, "jetstream_assets.definitions", log):
            sensor_runs = dg.RunsFilter(job_name="analysis", tags={"dagster/sensor_name": "experimenter_sensor"})
            sensor_run = wait_for("the Experimenter sensor's run",
                                  lambda: next(iter(instance.get_runs(sensor_runs)), None), timeout=120, log=log)
            assert sensor_run.tags[EXPERIMENT_TAG] == SLUG
            assert instance.get_dynamic_partitions(EXPERIMENTS.name) == [SLUG]  # added by the sensor
            # meanwhile, a backfill of two of the experiment's dates, as the UI's launch dialog makes it
            keys = [str(cell_key(SLUG, TODAY - dt.timedelta(days=n))) for n in (2, 1)]
            backfill = PartitionBackfill.from_asset_partitions(
                backfill_id="jetstreamtest", asset_graph=build_definitions(world.home).resolve_asset_graph(),
                partition_names=keys, asset_selection=[a.key for a in ANALYSIS_ASSETS],
                backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance, all_partitions=False,
                title=None, description=None, run_config=None,
            )
            instance.add_backfill(backfill)
            wait_for("the backfill to complete", lambda: instance.get_backfill("jetstreamtest").status
                            in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED,
                                BulkActionStatus.FAILED), timeout=240, log=log)
            assert instance.get_backfill("jetstreamtest").status == BulkActionStatus.COMPLETED_SUCCESS
            wait_for("the sensor's run to finish", lambda: instance.get_run_by_id(sensor_run.run_id).is_finished,
                     timeout=180, log=log)
            assert instance.get_run_by_id(sensor_run.run_id).status == dg.DagsterRunStatus.SUCCESS, failures(
                instance, sensor_run.run_id)
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": "jetstreamtest"}))
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for key in keys:
            materialized = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("statistics_export"), asset_partitions=[key]), limit=1
            ).records
            assert materialized, key
        logs = GCSResource().get_client().list_blobs(bucket, prefix="dagster-compute-logs")
        assert any(True for _ in logs)  # the steps' stdout/stderr went to the bucket
