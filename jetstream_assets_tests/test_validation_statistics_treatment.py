"""Statistics without treatment: validate-config agrees with Jetstream on every way a metric reaches a period.

The expected verdicts were obtained from the reference (mozilla-metric-config-parser 's resolution in the order
Jetstream's `validate-config` runs it: `Config.validate` -- defaults, config, outcomes -- then the config's own
spec resolved alone, `config.spec.resolve`), one fresh collection per case, and are written here literally:
the test imports neither Jetstream nor the parser. `None` means the reference accepts the file;
("no_statistics", m) that it raises "No statistical treatment defined for metric 'm'" (or "Metric m has no
statistical treatment defined."); ("unknown_metric", m) that it cannot locate m; ("rejected", None) that the
file does not load ("rejected", None). Bad statistic parameters pass the reference (Jetstream fails them at run time): we
reject them on validation, deliberately (last cases).
"""

from pathlib import Path

import pytest

from jetstream_assets.validation import validate_configs
from jetstream_assets.validation.report import NO_STATISTICS, STATISTIC_PARAMETER, UNKNOWN_METRIC
from jetstream_assets_tests.worlds import write_hub

SHARED = {
    'definitions/firefox_desktop.toml': """
        [metrics.plain]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"

        [metrics.with_stats]
        select_expression = "SUM(active_hours_sum)"
        data_source = "clients_daily"
        [metrics.with_stats.statistics.bootstrap_mean]

        [metrics.empty_stats]
        select_expression = "SUM(active_hours_sum)"
        data_source = "clients_daily"
        [metrics.empty_stats.statistics]

        [metrics.ratio_plain]
        depends_on = ["plain", "with_stats"]

        [metrics.ratio_stats]
        depends_on = ["with_stats", "with_stats2"]
        [metrics.ratio_stats.statistics.population_ratio]
        numerator = "with_stats"
        denominator = "with_stats2"

        [metrics.with_stats2]
        select_expression = "SUM(1)"
        data_source = "clients_daily"
        [metrics.with_stats2.statistics.bootstrap_mean]

        [metrics.default_listed]
        select_expression = "SUM(2)"
        data_source = "clients_daily"

        [data_sources.clients_daily]
        from_expression = "mozdata.telemetry.clients_daily"
        [data_sources.events]
        from_expression = "mozdata.telemetry.events"
    """,
    'jetstream/defaults/firefox_desktop.toml': """
        [metrics]
        weekly = ["active_hours", "default_listed"]
        [metrics.active_hours]
        select_expression = "SUM(active_hours_sum)"
        data_source = "clients_daily"
        [metrics.active_hours.statistics.bootstrap_mean]
        [metrics.default_listed.statistics.bootstrap_mean]
    """,
    'jetstream/outcomes/firefox_desktop/out_nostats.toml': """
        friendly_name = "o"
        description = "o"
        [metrics.o_plain]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
    """,
    'jetstream/outcomes/firefox_desktop/out_stats.toml': """
        friendly_name = "o"
        description = "o"
        [metrics.o_stats]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
        [metrics.o_stats.statistics.bootstrap_mean]
    """,
    'jetstream/outcomes/firefox_desktop/out_listed.toml': """
        friendly_name = "o"
        description = "o"
        weekly = ["plain", "o_listed"]
        [metrics.o_listed]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
        [metrics.o_listed.statistics.binomial]
    """,
    'jetstream/outcomes/firefox_desktop/out_ratio.toml': """
        friendly_name = "o"
        description = "o"
        [metrics.plain]
        select_expression = "SUM(4)"
        data_source = "clients_daily"
        [metrics.plain.statistics.bootstrap_mean]
        [metrics.o_ratio]
        depends_on = ["plain", "with_stats"]
        [metrics.o_ratio.statistics.population_ratio]
        numerator = "plain"
        denominator = "with_stats"
    """,
    'jetstream/outcomes/firefox_desktop/out_defs_stats.toml': """
        friendly_name = "o"
        description = "o"
        [metrics.with_stats]
        friendly_name = "renamed"
    """,
}

#: case -> (experiment config, the reference's verdict)
CASES = {
    'defs-no-stats': ('[metrics]\nweekly = ["plain"]\n', ('no_statistics', 'plain')),
    'defs-with-stats': ('[metrics]\nweekly = ["with_stats"]\n', None),
    'defs-empty-stats': ('[metrics]\nweekly = ["empty_stats"]\n', ('no_statistics', 'empty_stats')),
    'overall-defs-no-stats': ('[metrics]\noverall = ["plain"]\n', ('no_statistics', 'plain')),
    'daily-defs-no-stats': ('[metrics]\ndaily = ["plain"]\n', ('no_statistics', 'plain')),
    '28day-defs-no-stats': ('[metrics]\n28_day = ["plain"]\n', ('no_statistics', 'plain')),
    'preweek-defs-no-stats': ('[metrics]\npreenrollment_weekly = ["plain"]\n', ('no_statistics', 'plain')),
    'own-expr-no-stats-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n', ('no_statistics', 'with_stats')),
    'own-expr-no-stats-new': ('[metrics]\nweekly = ["mine"]\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n', ('no_statistics', 'mine')),
    'own-expr-only-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nselect_expression = "SUM(3)"\n', ('no_statistics', 'with_stats')),
    'own-ds-only-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\ndata_source = "events"\n', ('no_statistics', 'with_stats')),
    'own-expr-stats': ('[metrics]\nweekly = ["mine"]\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n[metrics.mine.statistics.bootstrap_mean]\n', None),
    'own-stats-only-defs-no-stats': ('[metrics]\nweekly = ["plain"]\n[metrics.plain.statistics.bootstrap_mean]\n', None),
    'own-stats-only-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats.statistics.binomial]\n', None),
    'own-empty-stats-table-defs-no-stats': ('[metrics]\nweekly = ["plain"]\n[metrics.plain.statistics]\n', ('no_statistics', 'plain')),
    'own-empty-stats-table-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats.statistics]\n', ('no_statistics', 'with_stats')),
    'own-friendly-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nfriendly_name = "W"\n', ('no_statistics', 'with_stats')),
    'own-friendly-defs-no-stats': ('[metrics]\nweekly = ["plain"]\n[metrics.plain]\nfriendly_name = "P"\n', ('no_statistics', 'plain')),
    'own-bases-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nanalysis_bases = ["exposures"]\n', ('no_statistics', 'with_stats')),
    'own-bases-stats-defs-stats': ('[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nanalysis_bases = ["exposures"]\n[metrics.with_stats.statistics.bootstrap_mean]\n', None),
    'own-desc-unlisted-defs-stats': ('[metrics.with_stats]\ndescription = "D"\n', None),
    'own-desc-unlisted-defs-no-stats': ('[metrics.plain]\ndescription = "D"\n', None),
    'own-expr-unlisted-no-stats': ('[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n', None),
    'default-listed-own-expr-no-stats': ('[metrics.default_listed]\nselect_expression = "SUM(5)"\ndata_source = "clients_daily"\n', None),
    'default-listed-own-friendly': ('[metrics.default_listed]\nfriendly_name = "X"\n', None),
    'default-active-own-expr': ('[metrics.active_hours]\nselect_expression = "SUM(6)"\n', None),
    'default-active-own-empty-stats': ('[metrics.active_hours.statistics]\n', None),
    'default-active-relisted': ('[metrics]\nweekly = ["active_hours"]\n', ('unknown_metric', 'active_hours')),
    'ratio-defs-no-stats': ('[metrics]\nweekly = ["ratio_plain"]\n', ('no_statistics', 'plain')),
    'ratio-defs-stats': ('[metrics]\nweekly = ["ratio_stats"]\n', None),
    'ratio-own-stats-upstream-no-stats': ('[metrics]\nweekly = ["ratio_plain"]\n[metrics.ratio_plain.statistics.population_ratio]\nnumerator = "plain"\ndenominator = "with_stats"\n', ('no_statistics', 'plain')),
    'own-ratio-upstream-own-no-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["mine", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "mine"\ndenominator = "with_stats"\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n', ('no_statistics', 'mine')),
    'own-ratio-upstream-own-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["mine", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "mine"\ndenominator = "with_stats"\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n[metrics.mine.statistics.bootstrap_mean]\n', None),
    'ratio-upstream-stats-given-in-exp': ('[metrics]\nweekly = ["ratio_plain"]\n[metrics.ratio_plain.statistics.population_ratio]\nnumerator = "plain"\ndenominator = "with_stats"\n[metrics.plain.statistics.bootstrap_mean]\n', ('no_statistics', 'plain')),
    'outcome-no-stats': ('[experiment]\noutcomes = ["out_nostats"]\n', ('no_statistics', 'o_plain')),
    'outcome-stats': ('[experiment]\noutcomes = ["out_stats"]\n', None),
    'outcome-listed': ('[experiment]\noutcomes = ["out_listed"]\n', ('no_statistics', 'plain')),
    'outcome-listed-stats-in-exp': ('[experiment]\noutcomes = ["out_listed"]\n[metrics.plain.statistics.bootstrap_mean]\n', None),
    'outcome-no-stats-exp-stats': ('[experiment]\noutcomes = ["out_nostats"]\n[metrics.o_plain.statistics.bootstrap_mean]\n', None),
    'outcome-redef-defs-stats': ('[experiment]\noutcomes = ["out_defs_stats"]\n', ('no_statistics', 'with_stats')),
    'exposures-only-no-stats': ('[metrics]\nweekly = ["mine"]\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\nanalysis_bases = ["exposures"]\n', ('no_statistics', 'mine')),
    'exposures-only-defs-no-stats': ('[metrics]\nweekly = ["plain"]\n[metrics.plain]\nanalysis_bases = ["exposures"]\n', ('no_statistics', 'plain')),
    'rerun-like-a': ('[experiment]\nenrollment_period = 7\nstart_date = "2025-01-01"\nend_date = "2025-02-01"\n[metrics]\nweekly = ["with_stats", "plain"]\noverall = ["with_stats", "plain"]\n[metrics.plain]\nselect_expression = "COUNT(*)"\ndata_source = "clients_daily"\n[metrics.with_stats]\nfriendly_name = "W"\n[metrics.with_stats.statistics.bootstrap_mean]\n', ('no_statistics', 'plain')),
    'rerun-like-b': ('[experiment]\nenrollment_period = 7\nstart_date = "2025-01-01"\nend_date = "2025-02-01"\n[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\nselect_expression = "SUM(7)"\ndata_source = "events"\n', ('no_statistics', 'with_stats')),
    'rerun-like-c': ('[experiment]\nenrollment_period = 7\nstart_date = "2025-01-01"\nend_date = "2025-02-01"\n[metrics]\nweekly = ["with_stats"]\n[metrics.with_stats]\ndata_source = "events"\n[metrics.with_stats.statistics.bootstrap_mean]\n', None),
    'rerun-like-d': ('[experiment]\nenrollment_period = 7\nstart_date = "2025-01-01"\nend_date = "2025-02-01"\noutcomes = ["out_stats"]\n[metrics]\nweekly = ["o_stats"]\n[metrics.o_stats]\nfriendly_name = "x"\n', None),
    'rerun-like-e': ('[experiment]\nenrollment_period = 7\nstart_date = "2025-01-01"\nend_date = "2025-02-01"\noutcomes = ["out_stats"]\n[metrics.o_stats]\nselect_expression = "SUM(8)"\ndata_source = "clients_daily"\n', None),
    'rerun-like-f': ('[experiment]\noutcomes = ["out_stats"]\n[metrics]\nweekly = ["o_stats"]\n', None),
    'wildcard-stats': ('[metrics]\nweekly = ["plain"]\n["metrics.*"]\n', ('rejected', None)),
    # the reference accepts these two (None); we reject them on validation, deliberately (see the module doc)
    'bad-num-samples': ('[metrics]\nweekly = ["plain"]\n[metrics.plain.statistics.bootstrap_mean]\nnum_samples = -1\n', None),
    'bad-num-samples-str': ('[metrics]\nweekly = ["plain"]\n[metrics.plain.statistics.bootstrap_mean]\nnum_samples = "abc"\n', None),
    'ratio-own-full-upstream-defs-no-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["plain", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "plain"\ndenominator = "with_stats"\n[metrics.plain]\nselect_expression = "SUM(9)"\ndata_source = "clients_daily"\n[metrics.plain.statistics.bootstrap_mean]\n', ('no_statistics', 'plain')),
    'ratio-own-full-listed-upstream-defs-no-stats': ('[metrics]\nweekly = ["r", "plain"]\n[metrics.r]\ndepends_on = ["plain", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "plain"\ndenominator = "with_stats"\n[metrics.plain]\nselect_expression = "SUM(9)"\ndata_source = "clients_daily"\n[metrics.plain.statistics.bootstrap_mean]\n', ('no_statistics', 'plain')),
    'ratio-own-nostats-upstream-defs-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["with_stats", "with_stats2"]\n[metrics.r.statistics.population_ratio]\nnumerator = "with_stats"\ndenominator = "with_stats2"\n[metrics.with_stats]\nselect_expression = "SUM(9)"\ndata_source = "clients_daily"\n', None),
    'ratio-outcome-upstream-defs-no-stats': ('[experiment]\noutcomes = ["out_ratio"]\n', ('no_statistics', 'plain')),
    'ratio-own-upstream-empty-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["mine", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "mine"\ndenominator = "with_stats"\n[metrics.mine]\nselect_expression = "SUM(3)"\ndata_source = "clients_daily"\n[metrics.mine.statistics]\n', ('no_statistics', 'mine')),
    'ratio-upstream-defs-empty-stats': ('[metrics]\nweekly = ["r"]\n[metrics.r]\ndepends_on = ["empty_stats", "with_stats"]\n[metrics.r.statistics.population_ratio]\nnumerator = "empty_stats"\ndenominator = "with_stats"\n', ('no_statistics', 'empty_stats')),
    'default-stats-own-expr-listed': ('[metrics]\nweekly = ["default_listed"]\n[metrics.default_listed]\nselect_expression = "SUM(5)"\ndata_source = "clients_daily"\n', ('no_statistics', 'default_listed')),
    'default-stats-listed-overall': ('[metrics]\noverall = ["default_listed"]\n', None),
    'default-active-own-expr-listed': ('[metrics]\nweekly = ["active_hours"]\n[metrics.active_hours]\nselect_expression = "SUM(6)"\n', ('unknown_metric', 'active_hours')),
    'default-active-own-full-listed': ('[metrics]\nweekly = ["active_hours"]\n[metrics.active_hours]\nselect_expression = "SUM(6)"\ndata_source = "clients_daily"\n', ('no_statistics', 'active_hours')),
    'default-stats-own-friendly-listed': ('[metrics]\nweekly = ["default_listed"]\n[metrics.default_listed]\nfriendly_name = "D"\n', ('no_statistics', 'default_listed')),
}

#: where we are stricter than the reference on purpose: case -> (problem kind, field)
STRICTER = {
    "bad-num-samples": (STATISTIC_PARAMETER, "metrics.plain.statistics.bootstrap_mean.num_samples"),
    "bad-num-samples-str": (STATISTIC_PARAMETER, "metrics.plain.statistics.bootstrap_mean.num_samples"),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    files = {**SHARED, **{f"jetstream/{name}.toml": body for name, (body, _) in CASES.items()}}
    root = write_hub(tmp_path_factory.mktemp("treatment-hub"), files)
    paths = [root / "jetstream" / f"{name}.toml" for name in CASES]
    out = validate_configs(paths, synthetic=True, platform="firefox_desktop")
    return {Path(r.path).stem: r for r in out}


@pytest.mark.parametrize("case", list(CASES))
def test_verdict_agrees_with_jetstream(reports, case):
    report, expected = reports[case], CASES[case][1]
    no_statistics = [p for p in report.problems if p.kind == NO_STATISTICS]
    if case in STRICTER:
        kind, field = STRICTER[case]
        assert [(p.kind, p.field) for p in report.problems] == [(kind, field)]
        assert report.problems[0].line is not None
        return
    if expected is None:
        assert report.valid, [p.cause for p in report.problems]
        return
    verdict, metric = expected
    assert not report.valid
    if verdict == "no_statistics":
        named = [p for p in no_statistics if f"{metric!r}" in p.cause]
        assert named, [p.cause for p in report.problems]
        # the message names the file and line at fault, and the metric
        assert all(p.file and p.line for p in named), [(p.file, p.line) for p in named]
    else:
        assert not no_statistics, [p.cause for p in no_statistics]
        if verdict == "unknown_metric":
            assert any(p.kind == UNKNOWN_METRIC and f"{metric!r}" in p.cause for p in report.problems)


def test_a_redefined_metric_whose_statistics_only_the_defaults_give_is_blamed_on_its_own_table(reports):
    """Jetstream's second pass (the config alone) is what rejects it; the problem says so, on the table."""
    (problem,) = reports["default-stats-own-expr-listed"].problems
    assert (Path(problem.file).name, problem.field, problem.line) == (
        "default-stats-own-expr-listed.toml", "metrics.default_listed", 3)
    assert "jetstream/defaults/firefox_desktop.toml" in problem.cause
