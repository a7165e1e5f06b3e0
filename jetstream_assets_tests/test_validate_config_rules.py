"""validate-config reports every error Jetstream reports, on the line at fault: statistics without
treatment (a listed metric, a depends_on metric, an outcome's metric), statistic parameters against each
statistic's schema, a data source override whose own SQL does not compile; `(WITH ...)` data sources work."""

from pathlib import Path

import pytest

from jetstream_assets.validation import validate_configs
from jetstream_assets.validation.report import LOCAL_FUNCTION, NO_STATISTICS, STATISTIC_PARAMETER
from jetstream_assets_tests.worlds import write_hub


FILES = {
    "definitions/firefox_desktop.toml": """
        [metrics.active_hours]
        select_expression = "SUM(active_hours_sum)"
        data_source = "clients_daily"

        [metrics.spotlight_impressions]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"

        [data_sources.clients_daily]
        from_expression = "mozdata.telemetry.clients_daily"
    """,
    "jetstream/defaults/firefox_desktop.toml": """
        [metrics]
        weekly = ["active_hours"]
        [metrics.active_hours.statistics.bootstrap_mean]
    """,
    "jetstream/outcomes/firefox_desktop/spotlight.toml": """
        friendly_name = "Spotlight"
        description = "Spotlight metrics"
        [metrics.spotlight_views]
        select_expression = "COUNT(*)"
        data_source = "clients_daily"
    """,
    # a shared metric listed in a period, statistics nowhere
    "jetstream/listed-without-statistics.toml": """
        [metrics]
        weekly = ["spotlight_impressions"]
    """,
    # the metric a ratio depends on has no statistics of its own
    "jetstream/upstream-without-statistics.toml": """
        [metrics]
        weekly = ["ratio"]
        [metrics.ratio]
        depends_on = ["spotlight_impressions", "active_hours"]
        [metrics.ratio.statistics.population_ratio]
        numerator = "spotlight_impressions"
        denominator = "active_hours"
    """,
    "jetstream/outcome-without-statistics.toml": """
        [experiment]
        outcomes = ["spotlight"]
    """,
    "jetstream/bad-parameters.toml": """
        [metrics]
        weekly = ["spotlight_impressions"]
        [metrics.spotlight_impressions.statistics.bootstrap_mean]
        num_samples = -1
        [metrics.spotlight_impressions.statistics.deciles]
        num_samples = "abc"
        [metrics.spotlight_impressions.statistics.kernel_density_estimate]
        bandwidth = "wide"
        [metrics.spotlight_impressions.statistics.binomial]
        confidence = 0.9
        [metrics.active_hours.statistics.linear_model_mean]
        drop_highest = 0.01
    """,
    "jetstream/broken-data-source-override.toml": """
        [metrics]
        weekly = ["spotlight_impressions"]
        [metrics.spotlight_impressions.statistics.bootstrap_mean]

        [data_sources.clients_daily]
        from_expression = "(SELECT *, mozfun.nope.missing(client_id) AS y FROM mozdata.telemetry.clients_daily)"
    """,
    "jetstream/enrollment-columns.toml": """
        [metrics]
        weekly = ["first_day_uris", "treatment_days"]
        [metrics.first_day_uris]
        select_expression = "SUM(IF(submission_date = enrollment_date, uri_count, 0))"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = {} }
        [metrics.treatment_days]
        select_expression = "COUNTIF(branch = 'treatment' AND exposure_date IS NOT NULL)"
        data_source = "clients_daily"
        statistics = { bootstrap_mean = {} }
    """,
    "jetstream/with-data-sources.toml": '''
        [experiment]
        segments = ["heavy"]

        [segments.heavy]
        data_source = "daily_totals"
        select_expression = "COALESCE(LOGICAL_OR(n > 5), FALSE)"

        [segments.data_sources.daily_totals]
        from_expression = """(
          WITH base AS (
            SELECT client_id, submission_date, SUM(n) AS n FROM mozdata.telemetry.clients_daily GROUP BY 1, 2
          )
          SELECT * FROM base
        )"""
        window_start = 0
        window_end = 0

        [experiment.exposure_signal]
        name = "exposed"
        friendly_name = "Exposed"
        description = "Clients with a doubled count"
        select_expression = "n2 > 0"
        data_source = "doubled"
        window_start = 0
        window_end = 7

        [metrics]
        weekly = ["doubled_total"]

        [data_sources.doubled]
        from_expression = """(
          WITH base AS (SELECT client_id, submission_date, n FROM mozdata.telemetry.clients_daily),
          more AS (SELECT client_id, submission_date, n * 2 AS n2 FROM base)
          SELECT base.client_id, base.submission_date, n, n2 FROM base JOIN more USING (client_id, submission_date)
        )"""
        experiments_column_type = "none"

        [metrics.doubled_total]
        select_expression = "SUM(n2)"
        data_source = "doubled"
        statistics = { bootstrap_mean = {} }
    ''',
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = write_hub(tmp_path_factory.mktemp("rules-hub"), FILES)
    paths = [root / rel for rel in FILES if rel.startswith("jetstream/") and "/" not in rel[len("jetstream/"):]]
    out = validate_configs(paths, synthetic=True, platform="firefox_desktop")
    return {Path(r.path).stem: r for r in out}


def where(problem) -> tuple[str, str, int | None]:
    return Path(problem.file).name, problem.field, problem.line


def test_listed_metric_without_statistics(reports):
    [problem] = reports["listed-without-statistics"].problems
    assert problem.kind == NO_STATISTICS
    assert "No statistical treatment defined for metric 'spotlight_impressions'" in problem.cause
    assert where(problem) == ("listed-without-statistics.toml", "metrics.weekly", 2)


def test_depends_on_metric_without_statistics_is_named_not_the_ratio(reports):
    [problem] = reports["upstream-without-statistics"].problems
    assert problem.kind == NO_STATISTICS
    assert "'spotlight_impressions' (metric 'ratio' depends on it)" in problem.cause
    assert where(problem) == ("upstream-without-statistics.toml", "metrics.ratio.depends_on", 4)


def test_outcome_metric_without_statistics(reports):
    [problem] = reports["outcome-without-statistics"].problems
    assert problem.kind == NO_STATISTICS and "'spotlight_views'" in problem.cause
    assert where(problem) == ("spotlight.toml", "metrics.spotlight_views", 3)


def test_statistic_parameters_checked_against_each_schema(reports):
    report = reports["bad-parameters"]
    assert report.kinds == {STATISTIC_PARAMETER}
    found = {p.field: (p.line, p.cause) for p in report.problems}
    base = "metrics.spotlight_impressions.statistics"
    assert set(found) == {f"{base}.bootstrap_mean.num_samples", f"{base}.deciles.num_samples",
                          f"{base}.kernel_density_estimate.bandwidth", f"{base}.binomial.confidence"}
    assert found[f"{base}.bootstrap_mean.num_samples"][0] == 4 and "-1" in found[f"{base}.bootstrap_mean.num_samples"][1]
    assert found[f"{base}.deciles.num_samples"][0] == 6 and "'abc'" in found[f"{base}.deciles.num_samples"][1]
    assert found[f"{base}.kernel_density_estimate.bandwidth"][0] == 8
    assert "unknown parameter" in found[f"{base}.binomial.confidence"][1]
    assert found[f"{base}.binomial.confidence"][0] == 10
    # drop_highest = 0.01 is within linear_model_mean's schema: not a problem


def test_broken_data_source_override_is_blamed_once_on_its_line(reports):
    """Defect: a missing function in the experiment's own [data_sources.x] was blamed on every metric
    reading x (38 default metrics on the real metric-hub)."""
    [problem] = reports["broken-data-source-override"].problems
    assert problem.kind == LOCAL_FUNCTION and "mozfun.nope.missing" in problem.cause
    assert where(problem) == ("broken-data-source-override.toml", "data_sources.clients_daily", 5)


def test_with_data_sources_compile(reports):
    report = reports["with-data-sources"]
    assert report.valid, [str(p) for p in report.problems]
    assert report.dry_runs >= 3  # enrollments (segment + exposure signal), metrics on both bases



def test_enrollment_columns_are_not_made_ambiguous(reports):
    """Defect: an unqualified `branch` or `enrollment_date` in a select_expression (BigQuery reads them from
    the enrollments: the data source has no such column) was given to the synthetic data source table
    too, and DuckDB refused the now ambiguous name."""
    report = reports["enrollment-columns"]
    assert report.valid, [str(p) for p in report.problems]
