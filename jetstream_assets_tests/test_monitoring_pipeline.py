"""Monitoring through the pipeline: a failing metric lands in monitoring.logs and the experiment's errors
export, each query of a run in monitoring.query_cost, and the Experimenter snapshot in its table."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import dagster as dg
import pytest
from mozilla_nimbus_schemas.jetstream import AnalysisErrors

from jetstream_assets.assets.monitoring import (
    EXPERIMENTER_EXPERIMENTS_TABLE,
    MONITORING_ASSETS,
    experimenter_experiments,
)
from jetstream_assets.exports.store import errors_path
from jetstream_assets.resources import experimenter_file, metric_hub_dir
from jetstream_assets.sql import names
from jetstream_assets_tests.worlds import build_world, run

BROKEN_METRIC_CONFIG = """
[metrics]
daily = ["tabs_opened", "broken_sql"]

[metrics.tabs_opened]
data_source = "clients_daily"
select_expression = '{{agg_sum("scalar_parent_browser_engagement_tab_open_event_count_sum")}}'
[metrics.tabs_opened.statistics.bootstrap_mean]

[metrics.broken_sql]
data_source = "clients_daily"
select_expression = "SUM(no_such_column)"
[metrics.broken_sql.statistics.bootstrap_mean]
"""


def _first_analysis_date(world, slug):
    record = next(e for e in world.experiments if e["slug"] == slug)
    return dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("monitoring")
    with build_world(home, 1_500) as w:
        repo = metric_hub_dir(home)
        (repo / "jetstream" / "demo-live.toml").write_text(BROKEN_METRIC_CONFIG)
        (repo / "jetstream" / "demo-custom.toml").write_text("[experiment\nsegments = 1\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "broken metric"],
                       cwd=repo, check=True, capture_output=True)
        # the day-1 window of demo-live closes on its first analysis date
        w.extra["live"] = run(w, "demo-live", [_first_analysis_date(w, "demo-live")])
        w.extra["custom"] = run(w, "demo-custom", [_first_analysis_date(w, "demo-custom")])
        complete = next(e for e in w.experiments if e["slug"] == "demo-complete")
        w.extra["ended"] = run(w, "demo-complete",
                               [dt.date.fromisoformat(complete["endDate"]) + dt.timedelta(days=1)])
        yield w


def _logs(world, slug):
    return world.warehouse.query(f"SELECT * FROM monitoring.logs WHERE experiment = '{slug}'")


def test_failing_metric_is_in_the_logs_table_and_the_errors_export(world):
    assert world.extra["live"].success, world.extra["live"].errors
    logs = _logs(world, "demo-live")
    broken = logs[logs["metric"] == "broken_sql"]
    assert len(broken) >= 1
    assert set(broken["log_level"]) <= {"WARNING", "ERROR"} and "ERROR" in set(broken["log_level"])
    sql_errors = broken[broken["filename"] == "metrics.py"]  # one per basis
    assert sorted(sql_errors["analysis_basis"]) == ["enrollments", "exposures"]
    assert sql_errors["message"].str.contains("no_such_column").all()
    assert (sql_errors["analysis_period"] == "day_1").all() and (sql_errors["source"] == "jetstream").all()
    # its statistics fail too, named by metric and statistic
    assert (broken["statistic"] == "bootstrap_mean").any()

    exported = world.resources["export_store"].read_json(errors_path("demo-live"))
    AnalysisErrors.model_validate(exported)
    assert exported and {e["experiment"] for e in exported} == {"demo-live"}
    exported_broken = [e for e in exported if e["metric"] == "broken_sql"]
    assert len(exported_broken) == len(broken)
    assert {e["message"] for e in exported_broken} == set(broken["message"])


def test_config_error_of_a_failing_run_is_in_the_logs_table(world):
    assert not world.extra["custom"].success
    logs = _logs(world, "demo-custom")
    errors = logs[logs["log_level"] == "ERROR"]
    assert len(errors) >= 1 and errors["message"].str.contains("jetstream/demo-custom.toml").all()


def test_expected_skips_are_logged_but_left_out_of_the_errors_export(world):
    assert world.extra["ended"].success
    logs = _logs(world, "demo-complete")
    assert len(logs) >= 1 and set(logs["exception_type"]) == {"EndedException"}
    assert set(logs["log_level"]) == {"WARNING"}
    assert world.resources["export_store"].read_json(errors_path("demo-complete")) == []


def test_every_query_of_the_run_has_a_query_cost_row(world):
    # only the demo-live run ran queries (demo-custom's config fails, demo-complete had ended)
    costs = world.warehouse.query("SELECT * FROM monitoring.query_cost")
    # what the run wrote through queries: the enrollments table and one metrics table per basis/window
    tables = [t for t in world.warehouse.list_tables() if world.warehouse.table_path(t).exists()]  # no views
    queried = {world.warehouse.table_ref(t) for t in tables
               if t == names.enrollments_table("demo-live") or t.startswith("demo_live_")}
    assert queried and set(costs["destination_table"]) == queried
    assert len(costs) == len(queried)  # the metrics query that failed first and was rerun counts once
    assert (costs["total_bytes_processed"] > 0).all()
    assert (costs["cost_usd"] == 0).all()
    assert costs["query"].str.contains("SELECT", case=False).all()


def test_steps_report_what_they_monitored(world):
    key = f"{_first_analysis_date(world, 'demo-live').isoformat()}|demo-live"
    record = world.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("metrics"), asset_partitions=[key]), limit=1
    ).records[0]
    metadata = record.asset_materialization.metadata
    costs = world.warehouse.query("SELECT * FROM monitoring.query_cost")
    metrics_queries = costs["destination_table"].str.startswith("mozanalysis.demo_live_").sum()
    assert metadata["monitoring_queries"].value == metrics_queries
    assert metadata["monitoring_log_rows"].value >= 2  # broken_sql, enrollments and exposures bases


def test_experimenter_experiments_has_one_row_per_parseable_experiment(world):
    records = json.loads(experimenter_file(world.home).read_text())
    bad = [*records, {**records[0], "slug": "demo-malformed", "startDate": "not-a-date"}, {"slug": ""}]
    experimenter_file(world.home).write_text(json.dumps(bad))
    try:
        result = dg.materialize(
            [experimenter_experiments],
            resources={k: world.resources[k] for k in ("experimenter", "warehouse")},
            instance=world.instance,
        )
    finally:
        experimenter_file(world.home).write_text(json.dumps(records))
    assert result.success
    table = world.warehouse.read_table(EXPERIMENTER_EXPERIMENTS_TABLE, dataset="monitoring")
    assert sorted(table["normandy_slug"]) == sorted(r["slug"] for r in records)
    live = table[table["normandy_slug"] == "demo-live"].iloc[0]
    assert live["status"] == "Live" and [b["slug"] for b in live["branches"]] == [
        "control", "treatment-a", "treatment-b"]
    assert str(live["start_date"])[:10] == next(r for r in records if r["slug"] == "demo-live")["startDate"]
    metadata = result.asset_materializations_for_node("experimenter_experiments")[0].metadata
    assert metadata["dagster/row_count"].value == len(records)
    assert metadata["unparseable_records"].value == 2
    assert sum(metadata["status_counts"].value.values()) == len(records)
    # replaced whole, not appended: materializing again keeps one row per experiment
    dg.materialize([experimenter_experiments],
                   resources={k: world.resources[k] for k in ("experimenter", "warehouse")})
    again = world.warehouse.read_table(EXPERIMENTER_EXPERIMENTS_TABLE, dataset="monitoring")
    assert len(again) == len(records)


def test_monitoring_assets_load_in_definitions_with_lineage(world):
    from jetstream_assets.definitions import ANALYSIS_ASSETS

    defs = dg.Definitions(assets=[*ANALYSIS_ASSETS, *MONITORING_ASSETS], resources=world.resources)
    graph = defs.resolve_asset_graph()
    for key in ("logs", "query_cost"):
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "monitoring"
        assert dg.AssetKey("metrics") in node.parent_keys
    assert graph.get(dg.AssetKey("experimenter_experiments")).group_name == "monitoring"
