"""Resolving experiments: real sample configs match metric-config-parser; bad parts are dropped."""

import copy
import datetime as dt
import pickle
from pathlib import Path

import pytest
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import LocalConfigCollection
from metric_config_parser.experiment import Branch, Experiment
from metric_config_parser.metric import AnalysisPeriod
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config import PLATFORMS, ConfigError, load_metric_hub, resolve_config

SAMPLE = Path("/work/shared/metric-hub-sample")


def experiment(slug, app="firefox_desktop", outcomes=(), segments=()):
    return Experiment(
        experimenter_slug=None, normandy_slug=slug, type="v6", status="Live",
        branches=[Branch(slug="control", ratio=1), Branch(slug="treatment", ratio=1)],
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), end_date=None, proposed_enrollment=7,
        reference_branch="control", is_high_population=False, app_name=app,
        app_id=PLATFORMS[app].app_id if app in PLATFORMS else app,
        outcomes=list(outcomes), segments=list(segments),
    )


def summary_keys(metrics):
    return {p: sorted((s.metric.name, s.statistic.name) for s in v) for p, v in metrics.items()}


@pytest.mark.parametrize("slug, app, outcomes", [
    ("firefox-view-update-experiment", "firefox_desktop", []),   # exposure signal, sample_size
    ("bug-1671484-pref-validation-of-relpreload-performance-impact-release-82-83",
     "firefox_desktop", []),                                      # segments with own data source
    ("android-private-window-visual-refresh", "fenix", []),
    ("no-custom-config", "firefox_desktop", ["networking", "pdf"]),
    ("no-custom-config-ios", "firefox_ios", ["onboarding"]),
])
def test_sample_experiments_match_metric_config_parser(slug, app, outcomes):
    loaded = load_metric_hub(SAMPLE)
    exp = experiment(slug, app, outcomes)
    resolved = resolve_config(exp, loaded)
    assert resolved.errors == []

    # metric-config-parser's own loader and resolver, independent of ours
    reference = LocalConfigCollection.from_local_path(str(SAMPLE))
    reference.merge(LocalConfigCollection.from_local_path(str(SAMPLE / "jetstream")))
    spec = AnalysisSpec.default_for_experiment(exp, reference)
    if own := reference.spec_for_experiment(slug):
        spec.merge(copy.deepcopy(own))
    expected = spec.resolve(exp, reference)
    assert summary_keys(resolved.config.metrics) == summary_keys(expected.metrics)
    assert [s.name for s in resolved.config.experiment.segments] == [
        s.name for s in expected.experiment.segments]
    assert resolved.config.experiment.exposure_signal == expected.experiment.exposure_signal
    assert resolved.config.experiment.sample_size == expected.experiment.sample_size
    is_custom = (SAMPLE / "jetstream" / f"{slug}.toml").exists()
    assert resolved.config_file == (f"jetstream/{slug}.toml" if is_custom else None)
    assert resolved.commit == loaded.commit
    assert f"jetstream/defaults/{app}.toml" in resolved.dependencies
    assert any(resolved.config.metrics[p] for p in AnalysisPeriod)


def test_sample_experiment_with_unknown_metric_resolves_the_rest():
    # the sample references `tls_successful_first_try_connections`, defined nowhere
    slug = "impact-of-race-cache-with-network-feature"
    resolved = resolve_config(experiment(slug), load_metric_hub(SAMPLE))
    assert {(e.file, e.field) for e in resolved.errors} == {
        (f"jetstream/{slug}.toml", "metrics.weekly"), (f"jetstream/{slug}.toml", "metrics.overall")}
    weekly = {s.metric.name for s in resolved.config.metrics[AnalysisPeriod.WEEK]}
    assert "tls_successful_first_try_connections" not in weekly
    assert "active_hours" in weekly  # platform defaults still apply


def test_resolving_does_not_leak_overrides_between_experiments(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exposed.toml": """
[metrics]
weekly = ["active_hours"]
[metrics.active_hours]
analysis_bases = ["exposures"]
[metrics.active_hours.statistics.bootstrap_mean]
"""})
    loaded = load_metric_hub(hub)
    first = resolve_config(experiment("exposed"), loaded)
    [s] = [s for s in first.config.metrics[AnalysisPeriod.WEEK] if s.metric.name == "active_hours"]
    assert s.metric.analysis_bases == [AnalysisBasis.EXPOSURES]
    other = resolve_config(experiment("other"), loaded)
    bases = {tuple(s.metric.analysis_bases) for s in other.config.metrics[AnalysisPeriod.WEEK]
             if s.metric.name == "active_hours"}
    assert bases == {(AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES)}


# ---- error cases on a small metric-hub ----------------------------------------------------------

BASE = {
    "definitions/firefox_desktop.toml": """
[metrics.active_hours]
data_source = "clients_daily"
select_expression = "SUM(active_hours_sum)"
[metrics.active_hours.statistics.bootstrap_mean]

[metrics.uri_count]
data_source = "clients_daily"
select_expression = "SUM(uri_count)"
[metrics.uri_count.statistics.bootstrap_mean]
[metrics.uri_count.statistics.deciles]

[data_sources.clients_daily]
from_expression = "mozdata.telemetry.clients_daily"

[segments.regular_users]
data_source = "clients_last_seen"
select_expression = "COALESCE(LOGICAL_OR(is_regular_user_v3), FALSE)"
[segments.data_sources.clients_last_seen]
from_expression = "mozdata.telemetry.clients_last_seen"
window_start = 0
window_end = 0
""",
    "definitions/functions.toml": """
[functions.agg_sum]
definition = "COALESCE(SUM({select_expr}), 0)"
""",
    "jetstream/defaults/firefox_desktop.toml": """
[metrics]
weekly = ["active_hours"]
overall = ["active_hours"]
""",
    "jetstream/outcomes/firefox_desktop/good.toml": """
friendly_name = "Good"
description = "an outcome"
[metrics.outcome_metric]
data_source = "clients_daily"
select_expression = "{{agg_sum('x')}}"
[metrics.outcome_metric.statistics.binomial]
""",
}


def make_hub(root, extra):
    for rel, text in {**BASE, **extra}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_own_config_syntax_error_is_fatal_only_for_that_experiment(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/broken.toml": '[experiment]\nenrollment_period = 7\n[metrics\n'})
    loaded = load_metric_hub(hub)
    with pytest.raises(ConfigError) as info:
        resolve_config(experiment("broken"), loaded)
    err = info.value
    assert (err.experiment, err.file, err.line) == ("broken", "jetstream/broken.toml", 3)
    assert "jetstream/broken.toml:3" in str(err) and "TOML syntax error" in str(err)
    assert "fix" in str(err)
    assert pickle.loads(pickle.dumps(err)) == err
    # another experiment still resolves
    ok = resolve_config(experiment("fine"), loaded)
    assert ok.errors == [] and ok.config_file is None


def test_unknown_metric_in_weekly_is_dropped(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exp.toml": '[metrics]\nweekly = ["uri_count", "nope"]\n'})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    [err] = resolved.errors
    assert (err.experiment, err.file, err.field, err.line) == ("exp", "jetstream/exp.toml", "metrics.weekly", 2)
    assert "'nope'" in err.cause
    weekly = summary_keys(resolved.config.metrics)[AnalysisPeriod.WEEK]
    assert weekly == [("active_hours", "bootstrap_mean"), ("uri_count", "bootstrap_mean"),
                      ("uri_count", "deciles")]


def test_unknown_statistic_is_dropped_other_statistics_kept(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exp.toml": """
[metrics]
weekly = ["custom"]
[metrics.custom]
data_source = "clients_daily"
select_expression = "SUM(1)"
[metrics.custom.statistics.bootstrap_mean]
[metrics.custom.statistics.foo]
"""})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    [err] = resolved.errors
    assert (err.file, err.field) == ("jetstream/exp.toml", "metrics.custom.statistics.foo")
    assert err.line == 8 and "bootstrap_mean" in str(err)  # lists the allowed names
    custom = [s.statistic.name for s in resolved.config.metrics[AnalysisPeriod.WEEK] if s.metric.name == "custom"]
    assert custom == ["bootstrap_mean"]


def test_metric_without_statistics_is_dropped(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exp.toml": """
[metrics]
weekly = ["bare", "uri_count"]
[metrics.bare]
data_source = "clients_daily"
select_expression = "SUM(1)"
"""})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    [err] = resolved.errors
    assert (err.file, err.field, err.line) == ("jetstream/exp.toml", "metrics.bare.statistics", 4)
    names = {s.metric.name for s in resolved.config.metrics[AnalysisPeriod.WEEK]}
    assert names == {"active_hours", "uri_count"}


@pytest.mark.parametrize("in_config", [True, False])
def test_bad_outcome_slug_is_dropped(tmp_path, in_config):
    extra = {"jetstream/exp.toml": '[experiment]\noutcomes = ["missing", "good"]\n'} if in_config else {}
    hub = make_hub(tmp_path, extra)
    exp = experiment("exp", outcomes=[] if in_config else ["missing", "good"])
    resolved = resolve_config(exp, load_metric_hub(hub))
    [err] = resolved.errors
    assert "'missing'" in err.cause and "good" in str(err)  # suggests the available outcomes
    if in_config:
        assert (err.file, err.field) == ("jetstream/exp.toml", "experiment.outcomes")
    else:
        assert err.file is None and "Experimenter" in err.cause
    weekly = {s.metric.name for s in resolved.config.metrics[AnalysisPeriod.WEEK]}
    assert weekly == {"active_hours", "outcome_metric"}
    assert "jetstream/outcomes/firefox_desktop/good.toml" in resolved.dependencies


def test_unknown_segment_is_dropped(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exp.toml": '[experiment]\nsegments = ["regular_users", "ghosts"]\n'})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    assert [s.name for s in resolved.config.experiment.segments] == ["regular_users"]
    [err] = resolved.errors
    assert err.field == "experiment.segments" and "'ghosts'" in err.cause


def test_broken_shared_definition_is_reported_not_fatal(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/defaults/firefox_desktop.toml": "[metrics\n"})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    [err] = resolved.errors
    assert err.file == "jetstream/defaults/firefox_desktop.toml" and err.line == 1
    assert all(not v for v in resolved.config.metrics.values())


def test_bad_exposure_signal_is_fatal(tmp_path):
    hub = make_hub(tmp_path, {"jetstream/exp.toml": """
[experiment.exposure_signal]
name = "x"
friendly_name = "x"
description = "x"
select_expression = "TRUE"
data_source = "unknown_source"
"""})
    with pytest.raises(ConfigError, match="experiment.exposure_signal"):
        resolve_config(experiment("exp"), load_metric_hub(hub))


def test_platforms_cover_jetstream_apps():
    assert PLATFORMS["firefox_desktop"].enrollments_query_type == "normandy"
    assert PLATFORMS["fenix"].enrollments_query_type == "glean-event"
    assert PLATFORMS["firefox_ios"].app_id == "org.mozilla.ios.FirefoxBeta"
    assert "monitor_cirrus" not in PLATFORMS
