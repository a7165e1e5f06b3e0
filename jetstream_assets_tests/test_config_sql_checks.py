"""The SQL of a metric is checked once per resolved metric however many statistics (summaries) it has, and
an unsafe metric is dropped with every statistic, in every period, with one error."""

from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.config import load_metric_hub, resolve_config, sql_checks
from jetstream_assets_tests.test_config_resolve import experiment, make_hub, summary_keys

CONFIG = """
[metrics]
weekly = ["custom", "bad"]
overall = ["custom", "bad"]
[metrics.custom]
data_source = "clients_daily"
select_expression = "SUM(1)"
[metrics.custom.statistics.bootstrap_mean]
[metrics.custom.statistics.deciles]
[metrics.bad]
data_source = "clients_daily"
select_expression = "(SELECT COUNT(*) FROM read_csv('/etc/passwd'))"
[metrics.bad.statistics.bootstrap_mean]
[metrics.bad.statistics.deciles]
"""


def test_each_resolved_metric_is_checked_once_and_an_unsafe_one_dropped_with_all_its_statistics(tmp_path,
                                                                                                 monkeypatch):
    checked = []
    original = sql_checks._metric_sql_ok

    def counted(r, metric, hint):
        checked.append(metric)
        return original(r, metric, hint)

    monkeypatch.setattr(sql_checks, "_metric_sql_ok", counted)
    resolved = resolve_config(experiment("exp"), load_metric_hub(make_hub(tmp_path, {"jetstream/exp.toml": CONFIG})))
    assert len({id(m) for m in checked}) == len(checked)  # no resolved metric twice
    assert {"custom", "bad"} <= {m.name for m in checked}
    [err] = resolved.errors
    assert err.field == "metrics.bad.select_expression" and "read_csv" in err.cause
    keys = summary_keys(resolved.config.metrics)
    for period in (AnalysisPeriod.WEEK, AnalysisPeriod.OVERALL):
        assert ("custom", "bootstrap_mean") in keys[period] and ("custom", "deciles") in keys[period]
        assert not any(name == "bad" for name, _ in keys[period])
