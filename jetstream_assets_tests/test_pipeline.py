"""End to end: one experiment materialized over all its dates through Dagster on synthetic telemetry."""

from __future__ import annotations

import datetime as dt
import json
import re

import pandas as pd
import pytest
from metric_config_parser.metric import AnalysisPeriod
from mozilla_nimbus_schemas.jetstream import Metadata, Statistics

from jetstream_assets.planner import Planner
from jetstream_assets.demo.experiments import expected_uplift
from jetstream_assets.sql import names
from jetstream_assets.windows import windows_closing_on
from jetstream_assets_tests.worlds import TODAY, build_world, run

SLUG = "demo-complete"
CLIENTS = 20_000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    with build_world(home, CLIENTS) as w:
        w.summary = run(w, SLUG)
        yield w


def _experiment(world):
    return next(e for e in world.experiments if e["slug"] == SLUG)


def _dates(record):
    start = dt.date.fromisoformat(record["startDate"])
    end = dt.date.fromisoformat(record["endDate"])
    enrollment = (dt.date.fromisoformat(record["enrollmentEndDate"]) - start).days + 1
    return start, end, enrollment


def test_run_covers_every_date_in_one_successful_run(world):
    summary = world.summary
    start, end, _ = _dates(_experiment(world))
    assert summary.success, summary.errors
    assert summary.dates[0] == start and summary.dates[-1] == end + dt.timedelta(days=1)
    # every asset materialized every date: computed or a no-op that says why
    for asset in ("enrollments", "metrics", "statistics", "statistics_export", "metadata_export"):
        assert sum(summary.statuses[asset].values()) == len(summary.dates)
    assert summary.statuses["enrollments"]["computed"] == 1


def test_tables_exist_for_exactly_the_windows_that_closed(world):
    start, end, enrollment = _dates(_experiment(world))
    planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
    config = planner.resolved(planner.experiment(SLUG)).config
    periods = [p for p, summaries in config.metrics.items() if summaries]
    expected = set()
    for day in world.summary.dates:
        for w in windows_closing_on(start, enrollment, end, True, day, periods=periods):
            expected.add((w.period.value, w.index))
    slug = names.normalize(SLUG)
    tables = world.warehouse.list_tables()
    metric_tables = {
        (m.group(1), int(m.group(2)))
        for t in tables
        if (m := re.fullmatch(rf"{slug}_enrollments_(\w+?)_([0-9]+)", t))
    }
    statistic_tables = {
        (m.group(1), int(m.group(2))) for t in tables if (m := re.fullmatch(rf"statistics_{slug}_(\w+?)_([0-9]+)", t))
    }
    # the demo config has daily, weekly, overall and preenrollment_week metrics (no days28 window closes)
    assert ("overall", 1) in expected and ("week", 3) in expected and ("preenrollment_week", 1) in expected
    assert metric_tables == expected
    assert statistic_tables == expected
    for period in ("daily", "weekly", "overall", "preenrollment_weekly"):
        assert f"{slug}_enrollments_{period}" in tables and f"statistics_{slug}_{period}" in tables


def test_row_counts_equal_enrolled_clients(world):
    start, end, enrollment = _dates(_experiment(world))
    last = start + dt.timedelta(days=enrollment)
    events = pd.read_parquet(world.home / "warehouse" / "telemetry" / "events.parquet")
    enrolled = events[
        (events["event_method"] == "enroll")
        & (events["event_string_value"] == SLUG)
        & (pd.to_datetime(events["submission_date"]).dt.date.between(start, last))
    ]["client_id"].nunique()
    enrollments = world.warehouse.read_table(names.enrollments_table(SLUG))
    assert len(enrollments) == enrolled > 0
    for period, index in [(AnalysisPeriod.DAY, 1), (AnalysisPeriod.WEEK, 2), (AnalysisPeriod.OVERALL, 1)]:
        table = world.warehouse.read_table(names.metrics_table(SLUG, "enrollments", period, index))
        assert len(table) == enrolled
        assert table["analysis_id"].is_unique


def _uplift(stats, metric, statistic):
    row = stats[
        (stats["metric"] == metric)
        & (stats["statistic"] == statistic)
        & (stats["comparison"] == "relative_uplift")
        & (stats["branch"] == "treatment")
        & (stats["comparison_to_branch"] == "control")
        & (stats["segment"] == "all")
        & (stats["analysis_basis"] == "enrollments")
    ]
    assert len(row) == 1, (metric, statistic)
    return row.iloc[0]


def test_planted_effect_inside_ci_and_zero_effect_ci_contains_zero(world):
    stats = world.warehouse.read_table(names.statistics_table(SLUG, AnalysisPeriod.OVERALL, 1))
    planted = _uplift(stats, "active_hours", "mean_lm")
    truth = expected_uplift(SLUG, "treatment", "active_hours")
    assert truth == pytest.approx(0.10)
    assert planted["lower"] <= truth <= planted["upper"]
    assert planted["lower"] > 0  # 20,000 clients detect a 10% effect
    for metric, statistic in [("days_of_use", "mean"), ("retained", "binomial")]:
        assert expected_uplift(SLUG, "treatment", metric) == 0.0
        null = _uplift(stats, metric, statistic)
        assert null["lower"] <= 0 <= null["upper"], (metric, null.to_dict())


def test_exports_validate_against_the_schemas(world):
    exports = world.home / "exports"
    files = sorted((exports / "statistics").glob(f"statistics_{names.normalize(SLUG)}_*.json"))
    assert {f.stem.rsplit("_", 1)[-1] for f in files} >= {"daily", "weekly", "overall"}
    for f in files:
        rows = Statistics.model_validate(json.loads(f.read_text())).root
        assert rows and {r.window_index for r in rows} != {None}
    weekly = json.loads((exports / "statistics" / f"statistics_{names.normalize(SLUG)}_weekly.json").read_text())
    assert {r["window_index"] for r in weekly} == {"1", "2", "3"}
    metadata = Metadata.model_validate(json.loads((exports / "metadata" / "metadata_demo_complete.json").read_text()))
    assert metadata.schema_version == 4 and "active_hours" in metadata.metrics
