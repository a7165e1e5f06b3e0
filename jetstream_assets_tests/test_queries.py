"""Enrollment and metric SQL for resolved experiments (BigQuery dialect, built by mozanalysis)."""

import datetime as dt
from pathlib import Path

import pytest
import sqlglot
from metric_config_parser.experiment import Branch, Experiment
from metric_config_parser.metric import AnalysisPeriod
from mozanalysis.experiment import TimeLimits
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config import PLATFORMS, load_metric_hub, resolve_config
from jetstream_assets.sql.queries import (
    app_dataset,
    bases_for,
    enrollments_sql,
    metrics_for,
    metrics_sql,
    segments_of,
)

SAMPLE = Path("/work/shared/metric-hub-sample")


def experiment(slug, app="firefox_desktop", segments=()):
    return Experiment(
        experimenter_slug=None, normandy_slug=slug, type="v6", status="Live",
        branches=[Branch(slug="control", ratio=1), Branch(slug="treatment", ratio=1)],
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), end_date=None, proposed_enrollment=7,
        reference_branch="control", is_high_population=False, app_name=app,
        app_id={"fenix": "org.mozilla.firefox"}.get(app, PLATFORMS[app].app_id),
        segments=list(segments),
    )


def week_1(start="2024-01-01"):
    return TimeLimits.for_single_analysis_window(
        first_enrollment_date=start, last_date_full_data="2024-01-14",
        analysis_start_days=0, analysis_length_dates=7, num_dates_enrollment=7)


def parse(sql):
    tree = sqlglot.parse_one(sql, read="bigquery")
    assert tree is not None
    return tree


@pytest.fixture(scope="module")
def desktop_defaults():
    loaded = load_metric_hub(SAMPLE)
    return resolve_config(experiment("plain-desktop-experiment", segments=["regular_users_v3"]), loaded)


def test_enrollments_sql_for_desktop_defaults(desktop_defaults):
    sql = enrollments_sql(desktop_defaults, week_1())
    parse(sql)
    assert "plain-desktop-experiment" in sql
    assert "event_category = 'normandy'" in sql  # desktop enrolls through normandy events
    assert "regular_users_v3" in sql  # one boolean column per segment
    assert segments_of(desktop_defaults) == ["regular_users_v3"]


def test_metrics_sql_one_window_each_basis(desktop_defaults):
    period = AnalysisPeriod.WEEK
    bases = bases_for(desktop_defaults, period)
    assert bases == [AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES]
    sqls = {}
    for basis in bases:
        sql = metrics_sql(desktop_defaults, week_1(), period, basis, "enrollments_plain_desktop_experiment")
        tree = parse(sql)
        sqls[basis] = sql
        assert "`enrollments_plain_desktop_experiment`" in sql
        names = {s.metric.name for s in metrics_for(desktop_defaults, period, basis)
                 if s.metric.select_expression}
        assert names and all(f".{name}" in sql for name in names)
        # exactly one analysis window row in the windows CTE
        windows = [c for c in tree.find_all(sqlglot.exp.CTE) if c.alias == "analysis_windows"]
        assert len(windows) == 1 and sql.count("analysis_window_start") > 0
        assert len(list(windows[0].this.find_all(sqlglot.exp.Select))) == 1
    assert sqls[AnalysisBasis.ENROLLMENTS] != sqls[AnalysisBasis.EXPOSURES]


def test_metrics_sql_rejects_several_windows(desktop_defaults):
    limits = TimeLimits.for_ts(first_enrollment_date="2024-01-01", last_date_full_data="2024-01-28",
                               time_series_period="weekly", num_dates_enrollment=7)
    assert len(limits.analysis_windows) > 1
    with pytest.raises(ValueError, match="exactly one analysis window"):
        metrics_sql(desktop_defaults, limits, AnalysisPeriod.WEEK, AnalysisBasis.ENROLLMENTS, "e")


def test_exposure_signal_enters_the_exposures_basis_query():
    slug = "firefox-view-update-experiment"  # custom exposure signal, sample_size = 30
    resolved = resolve_config(experiment(slug), load_metric_hub(SAMPLE))
    enrollments = enrollments_sql(resolved, week_1())
    parse(enrollments)
    assert "event_method = 'tab_selected'" in enrollments  # the exposure signal's expression
    period = AnalysisPeriod.WEEK
    exposures = metrics_sql(resolved, week_1(), period, AnalysisBasis.EXPOSURES, "enr")
    by_enrollment = metrics_sql(resolved, week_1(), period, AnalysisBasis.ENROLLMENTS, "enr")
    parse(exposures)
    signal = resolved.config.experiment.exposure_signal.select_expression
    assert signal in exposures and signal not in by_enrollment
    assert "num_exposure_events > 0" in exposures and "num_exposure_events > 0" not in by_enrollment
    assert "fxview_next_tab_selected" in exposures


def test_sample_size_downsamples_enrollments(desktop_defaults):
    resolved = resolve_config(experiment("firefox-view-update-experiment"), load_metric_hub(SAMPLE))
    assert resolved.config.experiment.sample_size == 30
    assert "sample_id < 30" in enrollments_sql(resolved, week_1())
    assert "sample_id < 100" in enrollments_sql(desktop_defaults, week_1())


def test_glean_app_uses_its_dataset_and_glean_enrollments():
    resolved = resolve_config(experiment("android-private-window-visual-refresh", "fenix"),
                              load_metric_hub(SAMPLE))
    sql = enrollments_sql(resolved, week_1())
    parse(sql)
    assert "org_mozilla_firefox" in sql  # the app's Glean dataset
    assert "normandy" not in sql
    assert app_dataset("org.mozilla.ios.FirefoxBeta") == "org_mozilla_ios_firefoxbeta"
    for period in AnalysisPeriod:
        for basis in bases_for(resolved, period):
            if any(s.metric.select_expression for s in metrics_for(resolved, period, basis)):
                parse(metrics_sql(resolved, week_1(), period, basis, "enr"))


def test_preenrollment_window_sql():
    resolved = resolve_config(experiment("plain-desktop-experiment"), load_metric_hub(SAMPLE))
    limits = TimeLimits.for_single_analysis_window(
        first_enrollment_date="2024-01-01", last_date_full_data="2024-01-09",
        analysis_start_days=-7, analysis_length_dates=7, num_dates_enrollment=7)
    sql = metrics_sql(resolved, limits, AnalysisPeriod.PREENROLLMENT_WEEK,
                      AnalysisBasis.ENROLLMENTS, "enr")
    parse(sql)
    assert "2023-12-25" in sql  # data is required from a week before the first enrollment


def test_no_metrics_is_a_clear_error(desktop_defaults):
    with pytest.raises(ValueError, match="no metrics"):
        metrics_sql(desktop_defaults, week_1(), AnalysisPeriod.DAYS_28, AnalysisBasis.ENROLLMENTS, "e")
