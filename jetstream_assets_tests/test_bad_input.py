"""Bad input through the whole pipeline: each problem names the experiment, the file or field and the
cause; the other metrics and experiments still produce results; nothing already written is lost."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import dagster as dg
import pytest
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.experimenter.models import InvalidSlugError
from jetstream_assets.partitions import cell_key
from jetstream_assets.resources import experimenter_file, metric_hub_dir
from jetstream_assets.sql import names
from jetstream_assets_tests.worlds import build_world, run

BROKEN_LIVE_CONFIG = """
[metrics]
weekly = ["tabs_opened", "broken_sql", "no_such_metric"]

[metrics.tabs_opened]
data_source = "clients_daily"
select_expression = '{{agg_sum("scalar_parent_browser_engagement_tab_open_event_count_sum")}}'
[metrics.tabs_opened.statistics.bootstrap_mean]

[metrics.broken_sql]
data_source = "clients_daily"
select_expression = "SUM(no_such_column)"
[metrics.broken_sql.statistics.bootstrap_mean]

[metrics.tabs_opened.statistics.no_such_statistic]
"""


def _commit(repo, path, text, message):
    (repo / path).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
        cwd=repo, check=True, capture_output=True,
    )


def _live_week1_dates(world):
    record = next(e for e in world.experiments if e["slug"] == "demo-live")
    start = dt.date.fromisoformat(record["startDate"])
    last = dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)
    return [last + dt.timedelta(days=i) for i in range(7)], start


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("bad")
    with build_world(home, 4_000) as w:
        repo = metric_hub_dir(home)
        # a good run of demo-complete first: its tables must survive the broken config below
        complete = next(e for e in w.experiments if e["slug"] == "demo-complete")
        last = dt.date.fromisoformat(complete["enrollmentEndDate"]) + dt.timedelta(days=1)
        w.extra["good_complete"] = run(w, "demo-complete", [last])
        _commit(repo, "jetstream/demo-complete.toml", "[experiment\nenrollment_period = 7\n", "broken toml")
        _commit(repo, "jetstream/demo-live.toml", BROKEN_LIVE_CONFIG, "bad metrics")
        # a malformed Experimenter record next to the good ones
        records = json.loads(experimenter_file(home).read_text())
        records.append({**records[0], "slug": "demo-malformed", "startDate": "not-a-date"})
        experimenter_file(home).write_text(json.dumps(records))
        w.extra["complete"] = run(w, "demo-complete", [last])
        dates, _ = _live_week1_dates(w)
        w.extra["live"] = run(w, "demo-live", dates)
        w.extra["malformed"] = run(w, "demo-malformed", [last])
        yield w


def test_config_syntax_error_names_file_and_line_and_keeps_earlier_results(world):
    assert world.extra["good_complete"].success
    broken = world.extra["complete"]
    assert not broken.success
    text = "\n".join(broken.errors)
    assert "demo-complete" in text and "jetstream/demo-complete.toml:1" in text and "TOML syntax error" in text
    # the enrollments computed before the config broke are still there, whole
    enrollments = world.warehouse.read_table(names.enrollments_table("demo-complete"))
    assert len(enrollments) > 0


def test_bad_metrics_are_dropped_and_named_while_good_ones_produce_results(world):
    live = world.extra["live"]
    assert live.success, live.errors
    stats = world.warehouse.read_table(names.statistics_table("demo-live", AnalysisPeriod.WEEK, 1))
    metrics = set(stats["metric"])
    assert {"tabs_opened", "active_hours"} <= metrics  # the good ones, custom and default
    assert (stats[stats["metric"] == "tabs_opened"]["statistic"] == "mean").any()
    assert "broken_sql" not in metrics and "no_such_metric" not in metrics
    assert not (stats["statistic"] == "no_such_statistic").any()
    # the metrics asset names the metric whose SQL failed, with the engine's reason
    dates, _ = _live_week1_dates(world)
    key = str(cell_key("demo-live", dates[-1]))
    records = world.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("metrics"), asset_partitions=[key]), limit=1
    ).records
    metrics_event = records[0].asset_materialization
    failed = json.dumps(metrics_event.metadata["failed_metrics"].value)
    assert "broken_sql" in failed and "no_such_column" in failed
    config_errors = json.dumps(metrics_event.metadata["config_errors"].value)
    assert "no_such_metric" in config_errors and "no_such_statistic" in config_errors
    assert "jetstream/demo-live.toml" in config_errors


def test_malformed_experimenter_record_is_reported_and_others_still_parse(world):
    snapshot = world.resources["experimenter"].fetch()
    assert {"demo-complete", "demo-live"} <= {e.slug for e in snapshot.experiments}
    errors = [str(e) for e in snapshot.errors]
    assert any("demo-malformed" in e and "startDate" in e for e in errors)
    malformed = world.extra["malformed"]
    assert not malformed.success and any("demo-malformed" in e for e in malformed.errors)


@pytest.mark.parametrize("slug", ["a|b", "has space", "quo'te", 'dq"uote', "x,y"])
def test_slugs_dagster_cannot_key_are_refused_with_a_clear_error(world, slug):
    with pytest.raises(InvalidSlugError, match="slug"):
        run(world, slug, [dt.date(2026, 11, 1)])


def test_cli_run_records_one_run_in_the_persistent_instance(world, monkeypatch, capsys):
    from jetstream_assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(world.home / "unused"))  # prepare_instance points it at <home>/dagster
    dates, _ = _live_week1_dates(world)
    assert main(["run", "--experiment", "demo-custom", "--date", dates[-1].isoformat(),
                 "--home", str(world.home)]) == 0
    out = capsys.readouterr().out
    assert "demo-custom: 1 date(s)" in out and "statistics" in out
    instance = dg.DagsterInstance.from_config(str(world.home / "dagster"))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].tags["jetstream/experiment"] == "demo-custom"
    queue = instance.run_coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 2  # 2 cores
    assert queue.tag_concurrency_limits == [  # one run per experiment at a time
        {"key": "jetstream/experiment", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert main(["run", "--experiment", "bad slug", "--date", "2026-11-01", "--home", str(world.home)]) == 2
    assert "bad slug" in capsys.readouterr().err
