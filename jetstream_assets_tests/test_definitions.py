"""The code location Dagster loads: `dagster definitions validate` and the asset graph's shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from jetstream_assets.definitions import defs
from jetstream_assets.partitions import ANALYSIS_PARTITIONS, parse_key

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_succeeds():
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_lineage_runs_enrollments_to_exports():
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
               for key in graph.get_all_asset_keys()}
    assert parents["metrics"] == {"enrollments", "telemetry/events", "telemetry/clients_daily",
                                  "telemetry/clients_last_seen"}
    assert parents["statistics"] == {"metrics"}
    assert parents["statistics_export"] == {"statistics"} and parents["metadata_export"] == {"statistics"}
    assert parents["enrollments"] >= {"analysis_plan", "telemetry/events"} and parents["analysis_plan"] == set()
    analysis = {"analysis_plan", "enrollments", "metrics", "statistics", "statistics_export", "metadata_export"}
    for name in analysis:
        assert graph.get(dg.AssetKey(name)).partitions_def == ANALYSIS_PARTITIONS
    # monitoring: every analysis step feeds the logs and query cost tables
    assert parents["logs"] == parents["query_cost"] == analysis
    assert graph.get(dg.AssetKey("experimenter_experiments")).group_name == "monitoring"


def test_sensors_start_running_and_target_the_analysis_job():
    """`dagster dev` on a fresh instance starts them: editing Experimenter or metric-hub reruns at once."""
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"experimenter_sensor", "metric_hub_sensor"}
    for sensor in sensors.values():
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert "analysis" in {target.job_name for target in sensor.targets}


def test_partition_keys_parse_from_strings_and_multipartition_keys():
    key = dg.MultiPartitionKey({"experiment": "my-exp", "analysis_date": "2024-01-02"})
    assert parse_key(key) == parse_key("2024-01-02|my-exp") == ("my-exp", __import__("datetime").date(2024, 1, 2))
