"""Statistics without treatment: validate-config agrees with Jetstream on every way a metric reaches a period.

The expected verdicts were obtained from the reference, mozilla-metric-config-parser's resolution in the order
Jetstream's `validate-config` runs it (`Config.validate`: defaults, config, outcomes; then the config's own
spec resolved alone, `config.spec.resolve`), one fresh collection per case, and are written here literally:
the test imports neither Jetstream nor the parser. `None` means the reference accepts the file;
("no_statistics", m) that it raises "No statistical treatment defined for metric 'm'" (or "Metric m has no
statistical treatment defined."); ("unknown_metric", m) that it cannot locate m; ("rejected", None) that
the file does not load. Cases the first step alone accepts and the second rejects: `default-active-relisted`
and the `default-*-listed` ones. Bad statistic parameters pass the reference (Jetstream fails them at run
time): we reject them on validation, deliberately (last cases).
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
    "defs-no-stats": ("""
        [metrics]
        weekly = ["plain"]
    """, ('no_statistics', 'plain')),
    "defs-with-stats": ("""
        [metrics]
        weekly = ["with_stats"]
    """, None),
    "defs-empty-stats": ("""
        [metrics]
        weekly = ["empty_stats"]
    """, ('no_statistics', 'empty_stats')),
    "overall-defs-no-stats": ("""
        [metrics]
        overall = ["plain"]
    """, ('no_statistics', 'plain')),
    "daily-defs-no-stats": ("""
        [metrics]
        daily = ["plain"]
    """, ('no_statistics', 'plain')),
    "28day-defs-no-stats": ("""
        [metrics]
        28_day = ["plain"]
    """, ('no_statistics', 'plain')),
    "preweek-defs-no-stats": ("""
        [metrics]
        preenrollment_weekly = ["plain"]
    """, ('no_statistics', 'plain')),
    "own-expr-no-stats-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
    """, ('no_statistics', 'with_stats')),
    "own-expr-no-stats-new": ("""
        [metrics]
        weekly = ["mine"]
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
    """, ('no_statistics', 'mine')),
    "own-expr-only-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        select_expression = "SUM(3)"
    """, ('no_statistics', 'with_stats')),
    "own-ds-only-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        data_source = "events"
    """, ('no_statistics', 'with_stats')),
    "own-expr-stats": ("""
        [metrics]
        weekly = ["mine"]
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
        [metrics.mine.statistics.bootstrap_mean]
    """, None),
    "own-stats-only-defs-no-stats": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain.statistics.bootstrap_mean]
    """, None),
    "own-stats-only-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats.statistics.binomial]
    """, None),
    "own-empty-stats-table-defs-no-stats": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain.statistics]
    """, ('no_statistics', 'plain')),
    "own-empty-stats-table-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats.statistics]
    """, ('no_statistics', 'with_stats')),
    "own-friendly-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        friendly_name = "W"
    """, ('no_statistics', 'with_stats')),
    "own-friendly-defs-no-stats": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain]
        friendly_name = "P"
    """, ('no_statistics', 'plain')),
    "own-bases-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        analysis_bases = ["exposures"]
    """, ('no_statistics', 'with_stats')),
    "own-bases-stats-defs-stats": ("""
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        analysis_bases = ["exposures"]
        [metrics.with_stats.statistics.bootstrap_mean]
    """, None),
    "own-desc-unlisted-defs-stats": ("""
        [metrics.with_stats]
        description = "D"
    """, None),
    "own-desc-unlisted-defs-no-stats": ("""
        [metrics.plain]
        description = "D"
    """, None),
    "own-expr-unlisted-no-stats": ("""
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
    """, None),
    "default-listed-own-expr-no-stats": ("""
        [metrics.default_listed]
        select_expression = "SUM(5)"
        data_source = "clients_daily"
    """, None),
    "default-listed-own-friendly": ("""
        [metrics.default_listed]
        friendly_name = "X"
    """, None),
    "default-active-own-expr": ("""
        [metrics.active_hours]
        select_expression = "SUM(6)"
    """, None),
    "default-active-own-empty-stats": ("""
        [metrics.active_hours.statistics]
    """, None),
    "default-active-relisted": ("""
        [metrics]
        weekly = ["active_hours"]
    """, ('unknown_metric', 'active_hours')),
    "ratio-defs-no-stats": ("""
        [metrics]
        weekly = ["ratio_plain"]
    """, ('no_statistics', 'plain')),
    "ratio-defs-stats": ("""
        [metrics]
        weekly = ["ratio_stats"]
    """, None),
    "ratio-own-stats-upstream-no-stats": ("""
        [metrics]
        weekly = ["ratio_plain"]
        [metrics.ratio_plain.statistics.population_ratio]
        numerator = "plain"
        denominator = "with_stats"
    """, ('no_statistics', 'plain')),
    "own-ratio-upstream-own-no-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["mine", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "mine"
        denominator = "with_stats"
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
    """, ('no_statistics', 'mine')),
    "own-ratio-upstream-own-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["mine", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "mine"
        denominator = "with_stats"
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
        [metrics.mine.statistics.bootstrap_mean]
    """, None),
    "ratio-upstream-stats-given-in-exp": ("""
        [metrics]
        weekly = ["ratio_plain"]
        [metrics.ratio_plain.statistics.population_ratio]
        numerator = "plain"
        denominator = "with_stats"
        [metrics.plain.statistics.bootstrap_mean]
    """, ('no_statistics', 'plain')),
    "outcome-no-stats": ("""
        [experiment]
        outcomes = ["out_nostats"]
    """, ('no_statistics', 'o_plain')),
    "outcome-stats": ("""
        [experiment]
        outcomes = ["out_stats"]
    """, None),
    "outcome-listed": ("""
        [experiment]
        outcomes = ["out_listed"]
    """, ('no_statistics', 'plain')),
    "outcome-listed-stats-in-exp": ("""
        [experiment]
        outcomes = ["out_listed"]
        [metrics.plain.statistics.bootstrap_mean]
    """, None),
    "outcome-no-stats-exp-stats": ("""
        [experiment]
        outcomes = ["out_nostats"]
        [metrics.o_plain.statistics.bootstrap_mean]
    """, None),
    "outcome-redef-defs-stats": ("""
        [experiment]
        outcomes = ["out_defs_stats"]
    """, ('no_statistics', 'with_stats')),
    "exposures-only-no-stats": ("""
        [metrics]
        weekly = ["mine"]
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
        analysis_bases = ["exposures"]
    """, ('no_statistics', 'mine')),
    "exposures-only-defs-no-stats": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain]
        analysis_bases = ["exposures"]
    """, ('no_statistics', 'plain')),
    "rerun-like-a": ("""
        [experiment]
        enrollment_period = 7
        start_date = "2025-01-01"
        end_date = "2025-02-01"
        [metrics]
        weekly = ["with_stats", "plain"]
        overall = ["with_stats", "plain"]
        [metrics.plain]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
        [metrics.with_stats]
        friendly_name = "W"
        [metrics.with_stats.statistics.bootstrap_mean]
    """, ('no_statistics', 'plain')),
    "rerun-like-b": ("""
        [experiment]
        enrollment_period = 7
        start_date = "2025-01-01"
        end_date = "2025-02-01"
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        select_expression = "SUM(7)"
        data_source = "events"
    """, ('no_statistics', 'with_stats')),
    "rerun-like-c": ("""
        [experiment]
        enrollment_period = 7
        start_date = "2025-01-01"
        end_date = "2025-02-01"
        [metrics]
        weekly = ["with_stats"]
        [metrics.with_stats]
        data_source = "events"
        [metrics.with_stats.statistics.bootstrap_mean]
    """, None),
    "rerun-like-d": ("""
        [experiment]
        enrollment_period = 7
        start_date = "2025-01-01"
        end_date = "2025-02-01"
        outcomes = ["out_stats"]
        [metrics]
        weekly = ["o_stats"]
        [metrics.o_stats]
        friendly_name = "x"
    """, None),
    "rerun-like-e": ("""
        [experiment]
        enrollment_period = 7
        start_date = "2025-01-01"
        end_date = "2025-02-01"
        outcomes = ["out_stats"]
        [metrics.o_stats]
        select_expression = "SUM(8)"
        data_source = "clients_daily"
    """, None),
    "rerun-like-f": ("""
        [experiment]
        outcomes = ["out_stats"]
        [metrics]
        weekly = ["o_stats"]
    """, None),
    "wildcard-stats": ("""
        [metrics]
        weekly = ["plain"]
        ["metrics.*"]
    """, ('rejected', None)),
    # the reference accepts these two (None); we reject them on validation, deliberately (see the module doc)
    "bad-num-samples": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain.statistics.bootstrap_mean]
        num_samples = -1
    """, None),
    "bad-num-samples-str": ("""
        [metrics]
        weekly = ["plain"]
        [metrics.plain.statistics.bootstrap_mean]
        num_samples = "abc"
    """, None),
    "ratio-own-full-upstream-defs-no-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["plain", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "plain"
        denominator = "with_stats"
        [metrics.plain]
        select_expression = "SUM(9)"
        data_source = "clients_daily"
        [metrics.plain.statistics.bootstrap_mean]
    """, ('no_statistics', 'plain')),
    "ratio-own-full-listed-upstream-defs-no-stats": ("""
        [metrics]
        weekly = ["r", "plain"]
        [metrics.r]
        depends_on = ["plain", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "plain"
        denominator = "with_stats"
        [metrics.plain]
        select_expression = "SUM(9)"
        data_source = "clients_daily"
        [metrics.plain.statistics.bootstrap_mean]
    """, ('no_statistics', 'plain')),
    "ratio-own-nostats-upstream-defs-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["with_stats", "with_stats2"]
        [metrics.r.statistics.population_ratio]
        numerator = "with_stats"
        denominator = "with_stats2"
        [metrics.with_stats]
        select_expression = "SUM(9)"
        data_source = "clients_daily"
    """, None),
    "ratio-outcome-upstream-defs-no-stats": ("""
        [experiment]
        outcomes = ["out_ratio"]
    """, ('no_statistics', 'plain')),
    "ratio-own-upstream-empty-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["mine", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "mine"
        denominator = "with_stats"
        [metrics.mine]
        select_expression = "SUM(3)"
        data_source = "clients_daily"
        [metrics.mine.statistics]
    """, ('no_statistics', 'mine')),
    "ratio-upstream-defs-empty-stats": ("""
        [metrics]
        weekly = ["r"]
        [metrics.r]
        depends_on = ["empty_stats", "with_stats"]
        [metrics.r.statistics.population_ratio]
        numerator = "empty_stats"
        denominator = "with_stats"
    """, ('no_statistics', 'empty_stats')),
    "default-stats-own-expr-listed": ("""
        [metrics]
        weekly = ["default_listed"]
        [metrics.default_listed]
        select_expression = "SUM(5)"
        data_source = "clients_daily"
    """, ('no_statistics', 'default_listed')),
    "default-stats-listed-overall": ("""
        [metrics]
        overall = ["default_listed"]
    """, None),
    "default-active-own-expr-listed": ("""
        [metrics]
        weekly = ["active_hours"]
        [metrics.active_hours]
        select_expression = "SUM(6)"
    """, ('unknown_metric', 'active_hours')),
    "default-active-own-full-listed": ("""
        [metrics]
        weekly = ["active_hours"]
        [metrics.active_hours]
        select_expression = "SUM(6)"
        data_source = "clients_daily"
    """, ('no_statistics', 'active_hours')),
    "default-stats-own-friendly-listed": ("""
        [metrics]
        weekly = ["default_listed"]
        [metrics.default_listed]
        friendly_name = "D"
    """, ('no_statistics', 'default_listed')),
}

#: where we are stricter than the reference on purpose: case -> (problem kind, field)
STRICTER = {
    "bad-num-samples": (STATISTIC_PARAMETER, "metrics.plain.statistics.bootstrap_mean.num_samples"),
    "bad-num-samples-str": (STATISTIC_PARAMETER, "metrics.plain.statistics.bootstrap_mean.num_samples"),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    files = {**SHARED, **{f"jetstream/{name}.toml": body for name, (body, _) in CASES.items()}}  # dedented
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
