"""validate-config on a small metric-hub with one problem per file: each is found, named (file, line,
field) and classified; valid files pass; the CLI exits 0 / 1 / 2."""

import textwrap
from pathlib import Path

import pytest

from jetstream_assets.cli import main
from jetstream_assets.validation.report import (
    LOCAL_FUNCTION,
    MISSING_TABLE,
    PARSE,
    PRE_TREATMENT,
    SQL,
    UNKNOWN_METRIC,
    UNKNOWN_OUTCOME,
    UNKNOWN_STATISTIC,
)
from jetstream_assets.validation import validate_configs
from jetstream_assets.warehouse.local import LocalWarehouse

SAMPLE = Path("/work/shared/metric-hub-sample")

FILES = {
    "definitions/functions.toml": (SAMPLE / "definitions/functions.toml").read_text(),
    "definitions/firefox_desktop.toml": """
        [metrics.active_hours]
        select_expression = "{{agg_sum('active_hours_sum')}}"
        data_source = "clients_daily"

        [metrics.uri_count]
        select_expression = "COALESCE(SUM(scalar_parent_browser_engagement_total_uri_count_sum), 0)"
        data_source = "clients_daily"

        [metrics.broken_definition]
        select_expression = "SUM(active_hours_sum) +* 2"
        data_source = "clients_daily"

        [data_sources.clients_daily]
        from_expression = "mozdata.telemetry.clients_daily"
        experiments_column_type = "simple"

        [segments.regular_users_v3]
        data_source = "clients_last_seen"
        select_expression = "COALESCE(LOGICAL_OR(is_regular_user_v3), FALSE)"

        [segments.data_sources.clients_last_seen]
        from_expression = "mozdata.telemetry.clients_last_seen"
        window_start = 0
        window_end = 0
    """,
    "jetstream/defaults/firefox_desktop.toml": """
        [metrics]
        weekly = ["active_hours"]
        overall = ["active_hours", "uri_count"]

        [metrics.active_hours.statistics.bootstrap_mean]
        [metrics.uri_count.statistics.bootstrap_mean]
    """,
    "jetstream/outcomes/firefox_desktop/good_outcome.toml": """
        friendly_name = "Good"
        description = "Fine"

        [metrics.pings]
        select_expression = "COALESCE(SUM(pings_aggregated_by_this_row), 0)"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = {} }
    """,
    "jetstream/outcomes/firefox_desktop/bad_outcome.toml": """
        friendly_name = "Bad"
        description = "A statistic that does not exist"

        [metrics.pings]
        select_expression = "COALESCE(SUM(pings_aggregated_by_this_row), 0)"
        data_source = "clients_daily"
        statistics = { bootstrap_maen = {} }
    """,
    "jetstream/valid-experiment.toml": """
        [experiment]
        enrollment_period = 7
        segments = ["regular_users_v3"]
        outcomes = ["good_outcome"]
    """,
    "jetstream/bad-references.toml": """
        [experiment]
        outcomes = ["no_such_outcome"]

        [metrics]
        weekly = ["active_hours", "no_such_metric"]

        [metrics.active_hours.statistics.bootstrap_meen]
    """,
    "jetstream/bad-sql.toml": """
        [metrics]
        weekly = ["broken_sql", "missing_udf", "fine", "ratio"]

        [metrics.broken_sql]
        select_expression = "SUM(active_hours_sum) +* 2"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = {} }

        [metrics.missing_udf]
        select_expression = "SUM(mozfun.nope.nothing(active_hours_sum))"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = {} }

        [metrics.fine]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = { pre_treatments = ["not_a_pre_treatment"] } }

        [metrics.ratio]
        depends_on = ["fine"]
        [metrics.ratio.statistics.population_ratio]
        numerator = "fine"
        denominator = "not_computed"
    """,
    "jetstream/bad-segment.toml": """
        [experiment]
        segments = ["regular_users_v3", "bad_segment"]

        [segments.bad_segment]
        data_source = "clients_last_seen"
        select_expression = "COALESCE(LOGICAL_OR(no_such_function(is_regular_user_v3)), FALSE)"
    """,
    "jetstream/bad-enrollment-query.toml": """
        [experiment]
        enrollment_query = "SELECT client_id, 'control' AS branch, submission_date AS enrollment_date, 1 AS num_enrollment_events FROM mozdata.telemetry.clients_daily"
    """,
    "jetstream/broken-toml.toml": """
        [metrics
        weekly = []
    """,
    "jetstream/example.toml.example": "not even TOML",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def reports(hub):
    paths = [hub / rel for rel in FILES if rel != "definitions/functions.toml"]
    return {Path(r.path).relative_to(hub).as_posix(): r for r in validate_configs(paths, synthetic=True)}


def problems(report):
    return {(p.field, p.kind) for p in report.problems}


def test_valid_files_pass(reports):
    for name in ("jetstream/valid-experiment.toml", "jetstream/outcomes/firefox_desktop/good_outcome.toml",
                 "jetstream/defaults/firefox_desktop.toml"):
        assert reports[name].valid, [str(p) for p in reports[name].problems]
        assert reports[name].dry_runs >= 2
    assert reports["jetstream/valid-experiment.toml"].platform == "firefox_desktop"
    assert reports["jetstream/defaults/firefox_desktop.toml"].kind == "defaults"
    example = reports["jetstream/example.toml.example"]
    assert example.valid and example.kind == "skipped"


def test_unknown_metrics_statistics_and_outcomes(reports):
    report = reports["jetstream/bad-references.toml"]
    assert problems(report) == {
        ("metrics.weekly", UNKNOWN_METRIC),
        ("metrics.active_hours.statistics.bootstrap_meen", UNKNOWN_STATISTIC),
        ("experiment.outcomes", UNKNOWN_OUTCOME),
    }
    statistic = next(p for p in report.problems if p.kind == UNKNOWN_STATISTIC)
    assert statistic.file.endswith("bad-references.toml") and statistic.line == 8
    assert "bootstrap_mean" in statistic.cause  # says what would be valid
    assert problems(reports["jetstream/outcomes/firefox_desktop/bad_outcome.toml"]) == {("metrics.pings.statistics.bootstrap_maen", UNKNOWN_STATISTIC)}


def test_sql_errors_are_blamed_on_their_metric(reports):
    report = reports["jetstream/bad-sql.toml"]
    assert problems(report) == {
        ("metrics.broken_sql", SQL),
        ("metrics.missing_udf", LOCAL_FUNCTION),
        ("metrics.fine.statistics.bootstrap_mean.pre_treatments", PRE_TREATMENT),
        ("metrics.ratio.statistics.population_ratio.denominator", UNKNOWN_METRIC),
    }
    by_field = {p.field: p for p in report.problems}
    assert by_field["metrics.broken_sql"].line == 5
    assert "mozfun_nope_nothing" in by_field["metrics.missing_udf"].cause
    assert "not_computed" in by_field["metrics.ratio.statistics.population_ratio.denominator"].cause
    # the definitions file: every metric it defines is dry-run, the broken one is named
    definitions = reports["definitions/firefox_desktop.toml"]
    assert definitions.kind == "definitions"
    assert problems(definitions) == {("metrics.broken_definition", SQL)}
    assert next(iter(definitions.problems)).line == 10


def test_enrollment_problems_name_the_segment_or_query(reports):
    assert problems(reports["jetstream/bad-segment.toml"]) == {("segments.bad_segment", SQL)}
    assert "no_such_function" in reports["jetstream/bad-segment.toml"].problems[0].cause
    [problem] = reports["jetstream/bad-enrollment-query.toml"].problems
    assert (problem.field, problem.kind) == ("experiment.enrollment_query", SQL)
    assert "client_id AS analysis_id" in problem.cause


def test_unreadable_file(reports):
    [problem] = reports["jetstream/broken-toml.toml"].problems
    assert problem.kind == PARSE and "TOML" in problem.cause


def test_file_outside_the_hub_and_a_warehouse_without_tables(hub, tmp_path):
    outside = tmp_path / "new-experiment.toml"
    outside.write_text("[metrics]\nweekly = ['uri_count']\n")
    [report] = validate_configs([outside], metric_hub=hub, platform="firefox_desktop",
                                warehouse=LocalWarehouse(root=str(tmp_path / "empty")))
    assert report.kinds == {MISSING_TABLE}
    assert all("--synthetic" in p.cause for p in report.problems)
    [report] = validate_configs([outside], metric_hub=hub, synthetic=True)
    assert report.valid
    [report] = validate_configs([tmp_path / "nowhere" / "x.toml"])
    assert report.kinds == {PARSE}


def test_cli_exit_codes_and_one_line_per_problem(hub, capsys):
    assert main(["validate-config", "--synthetic", str(hub / "jetstream/valid-experiment.toml")]) == 0
    assert "1 of 1 file(s) valid" in capsys.readouterr().out
    assert main(["validate-config", "--synthetic", str(hub / "jetstream/bad-references.toml"),
                 str(hub / "jetstream/valid-experiment.toml")]) == 1
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert len(lines) == 3
    assert any(line.startswith(f"{hub}/jetstream/bad-references.toml:8: "
                               "metrics.active_hours.statistics.bootstrap_meen: unknown statistic")
               for line in lines)
    assert main(["validate-config", "--platform", "netscape", str(hub / "jetstream/valid-experiment.toml")]) == 2
    assert "netscape" in capsys.readouterr().err
