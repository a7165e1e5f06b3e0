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
    assert parents["metrics"] == {"enrollments"}
    assert parents["statistics"] == {"metrics"}
    assert parents["statistics_export"] == {"statistics"} and parents["metadata_export"] == {"statistics"}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def == ANALYSIS_PARTITIONS


def test_partition_keys_parse_from_strings_and_multipartition_keys():
    key = dg.MultiPartitionKey({"experiment": "my-exp", "analysis_date": "2024-01-02"})
    assert parse_key(key) == parse_key("2024-01-02|my-exp") == ("my-exp", __import__("datetime").date(2024, 1, 2))
