"""A metric listed in several periods resolves once per experiment when resolving it again cannot give
anything else, and the experiment resolves to what resolving it in every period gives (the library's way),
including metrics whose resolution depends on the order (depends_on over a definition the experiment
overrides)."""

import datetime as dt
from pathlib import Path

import pytest
from metric_config_parser.metric import AnalysisPeriod, MetricDefinition

from jetstream_assets.config import load_metric_hub, resolve_config, scoped
from jetstream_assets.validation.resolution import stand_in_experiment
from jetstream_assets_tests.test_config_resolve import experiment, make_hub, summary_keys

SAMPLE = Path("/work/shared/metric-hub-sample")


def _both_ways(monkeypatch, resolve_once):
    """(resolved as now, resolved with every listing of every metric resolved) of `resolve_once()`."""
    now = resolve_once()
    with monkeypatch.context() as m:
        m.setattr(scoped, "settled_metric", lambda *a: False)
        every_time = resolve_once()
    return now, every_time


def _shown(resolved):
    return resolved.config, [str(e) for e in resolved.errors]


@pytest.mark.parametrize("platform", ["firefox_desktop", "fenix"])
def test_sample_experiments_resolve_as_with_every_period_resolved(monkeypatch, platform):
    loaded = load_metric_hub(SAMPLE)
    for path in sorted((SAMPLE / "jetstream").glob("*.toml")):
        def once(slug=path.stem):
            exp = stand_in_experiment(slug, platform, dt.date(2026, 1, 1))
            try:
                return _shown(resolve_config(exp, loaded, as_validate=True))
            except Exception as e:  # noqa: BLE001 - an unresolvable config: its error compared
                return str(e)
        now, every_time = _both_ways(monkeypatch, once)
        assert now == every_time, path.stem


ORDERED = """
[metrics]
daily = ["ratio", "active_hours", "uri_count"]
weekly = ["uri_count", "active_hours"]
overall = ["ratio", "active_hours", "uri_count", "uri_count"]
[metrics.active_hours]
analysis_bases = ["exposures"]
[metrics.active_hours.statistics.deciles]
[metrics.ratio]
depends_on = ["active_hours", "uri_count"]
[metrics.ratio.statistics.population_ratio]
numerator = "active_hours"
denominator = "uri_count"
"""


def test_order_dependent_metrics_resolve_as_with_every_period_resolved(tmp_path, monkeypatch):
    loaded = load_metric_hub(make_hub(tmp_path, {"jetstream/exp.toml": ORDERED}))
    now, every_time = _both_ways(
        monkeypatch, lambda: _shown(resolve_config(experiment("exp"), loaded, as_validate=True)))
    assert now == every_time
    keys = summary_keys(now[0].metrics)
    assert ("active_hours", "deciles") in keys[AnalysisPeriod.WEEK] and ("ratio", "population_ratio") in keys[
        AnalysisPeriod.OVERALL]


def test_a_metric_listed_in_several_periods_resolves_once(tmp_path, monkeypatch):
    calls = []
    original = MetricDefinition.resolve

    def counted(self, spec, conf, configs):
        calls.append(self.name)
        return original(self, spec, conf, configs)

    monkeypatch.setattr(MetricDefinition, "resolve", counted)
    hub = make_hub(tmp_path, {"jetstream/exp.toml": '[metrics]\nweekly = ["uri_count"]\noverall = ["uri_count"]\n'})
    resolved = resolve_config(experiment("exp"), load_metric_hub(hub))
    assert calls.count("uri_count") == 1
    week, overall = (resolved.config.metrics[p] for p in (AnalysisPeriod.WEEK, AnalysisPeriod.OVERALL))
    [w] = [s for s in week if s.metric.name == "uri_count" and s.statistic.name == "deciles"]
    [o] = [s for s in overall if s.metric.name == "uri_count" and s.statistic.name == "deciles"]
    assert w == o and w is not o and w.statistic is not o.statistic  # each period its own summaries
