"""validate-config does each piece of work once: a config's metrics are one query (split per data source only
when it fails, so blame stays on the metric), configs differing only in their sample size share their
enrollments query, a metric's select_expression renders once per call however many experiments use it,
and importing validation needs neither Dagster nor scipy.stats."""

import subprocess
import sys
from pathlib import Path

import pytest

from jetstream_assets.config import render_cache
from jetstream_assets.validation import validate_configs
from jetstream_assets.validation.report import LOCAL_FUNCTION
from jetstream_assets.validation.synthetic_engine import SyntheticEngine
from jetstream_assets_tests.worlds import write_hub

DEFINITIONS = """
    [metrics.active_hours]
    select_expression = "SUM({{ 'active_hours_sum' }})"
    data_source = "clients_daily"
    [metrics.active_hours.statistics.bootstrap_mean]

    [metrics.searches]
    select_expression = "SUM(search_count)"
    data_source = "search_clients"
    [metrics.searches.statistics.bootstrap_mean]

    [data_sources.clients_daily]
    from_expression = "mozdata.telemetry.clients_daily"

    [data_sources.search_clients]
    from_expression = "mozdata.search.search_clients_engines_sources_daily"
"""

FILES = {
    "definitions/firefox_desktop.toml": DEFINITIONS,
    "jetstream/defaults/firefox_desktop.toml": """
        [metrics]
        weekly = ["active_hours"]
    """,
    # own metrics on two data sources, all compiling
    "jetstream/two-sources.toml": """
        [metrics]
        weekly = ["searches", "uris"]
        [metrics.uris]
        select_expression = "SUM(uri_count)"
        data_source = "clients_daily"
        [metrics.uris.statistics.bootstrap_mean]
    """,
    # the same, one metric calling a function the local engine lacks
    "jetstream/two-sources-one-broken.toml": """
        [metrics]
        weekly = ["searches", "uris"]
        [metrics.uris]
        select_expression = "SUM(mozfun.nope.missing(uri_count))"
        data_source = "clients_daily"
        [metrics.uris.statistics.bootstrap_mean]
    """,
    # an outcome no config below uses, redefining a default metric
    "jetstream/outcomes/firefox_desktop/unused.toml": """
        friendly_name = "Unused"
        description = "An outcome no config here uses"
        [metrics.active_hours]
        select_expression = "SUM(active_hours_sum)"
        data_source = "clients_daily"
        [metrics.active_hours.statistics.bootstrap_mean]
    """,
    "jetstream/sampled-ten.toml": """
        [experiment]
        sample_size = 10
    """,
    "jetstream/sampled-twenty.toml": """
        [experiment]
        sample_size = 20
    """,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_hub(tmp_path_factory.mktemp("work-hub"), FILES)


@pytest.fixture
def compiled(monkeypatch):
    """Every SQL text the synthetic engine compiles, in order."""
    seen: list[str] = []
    original = SyntheticEngine.dry_run

    def dry_run(self, sql):
        seen.append(sql)
        return original(self, sql)

    monkeypatch.setattr(SyntheticEngine, "dry_run", dry_run)
    return seen


def _validate(hub: Path, *stems: str):
    reports = validate_configs([hub / "jetstream" / f"{s}.toml" for s in stems], synthetic=True,
                               platform="firefox_desktop")
    return {Path(r.path).stem: r for r in reports}


def test_own_metrics_of_several_data_sources_compile_as_one_query(hub, compiled):
    report = _validate(hub, "two-sources")["two-sources"]
    assert report.valid, [str(p) for p in report.problems]
    own = [sql for sql in compiled if "search_count" in sql or "uri_count" in sql]
    assert len(own) == 1 and "search_count" in own[0] and "uri_count" in own[0]


def test_default_metrics_stay_one_query_for_every_config_when_an_unused_outcome_redefines_one(hub, compiled):
    reports = _validate(hub, "two-sources", "sampled-ten")
    assert all(r.valid for r in reports.values())
    assert len([sql for sql in compiled if "active_hours_sum" in sql]) == 1  # compiled once for both


def test_a_failing_bundle_is_split_and_blamed_on_the_metric(hub, compiled):
    report = _validate(hub, "two-sources-one-broken")["two-sources-one-broken"]
    [problem] = report.problems
    assert problem.kind == LOCAL_FUNCTION and "mozfun.nope.missing" in problem.cause
    assert (Path(problem.file).name, problem.field, problem.line) == (
        "two-sources-one-broken.toml", "metrics.uris", 3)
    # the bundle, then each data source on its own: the search metric compiled without the broken one
    assert any("search_count" in sql and "uri_count" not in sql for sql in compiled)


def test_configs_differing_only_in_sample_size_share_their_enrollments_query(hub, compiled):
    reports = _validate(hub, "sampled-ten", "sampled-twenty")
    assert all(r.valid for r in reports.values()), {k: [str(p) for p in r.problems] for k, r in reports.items()}
    enrollments = [sql for sql in compiled if "sample_id" in sql]
    assert len(enrollments) == 1  # compiled once for both configs
    assert all(r.dry_runs >= 1 for r in reports.values())


def test_a_select_expression_renders_once_for_every_experiment_using_it(hub, monkeypatch):
    renders: list[str] = []
    original = render_cache._RENDER

    def counted(params, template, configs):
        renders.append(template)
        return original(params, template, configs)

    monkeypatch.setattr(render_cache, "_RENDER", counted)
    render_cache._CACHE.clear()
    reports = _validate(hub, "two-sources", "sampled-ten", "sampled-twenty")
    assert all(r.valid for r in reports.values())
    assert renders.count("SUM({{ 'active_hours_sum' }})") == 1  # the defaults' metric, in three experiments


def test_renders_of_other_parameters_or_functions_are_not_shared(monkeypatch):
    from metric_config_parser.parameter import ParameterDefinition

    class Configs:
        def __init__(self, functions):
            self.functions = functions

        def get_env(self):
            from jetstream_assets.config.sandbox import BoundedSandbox

            env = BoundedSandbox()
            env.globals["pick"] = self.functions
            return env

    render_cache._CACHE.clear()
    template = "{{ parameters.threshold }} < {{ pick('x') }}"
    first = Configs(lambda s: f"f1({s})")
    second = Configs(lambda s: f"f2({s})")
    params = lambda v: {"threshold": ParameterDefinition(name="threshold", value=v)}  # noqa: E731
    render = render_cache.generate_select_expression
    assert render(params("5"), template, first) == "5 < f1(x)"
    assert render(params("7"), template, first) == "7 < f1(x)"
    assert render(params("5"), template, second) == "5 < f2(x)"
    assert render(params("5"), template, first) == "5 < f1(x)"


@pytest.mark.parametrize("text", [
    "SUM(x)", "SUM(x)\n", "SUM(x)\n\n", "a\r\nb\rc\n", "", "\n", "  COUNT(*)  ", "a\n\r\n",
    "IF(a, 'x#y', \"%s\") -- #}", "-- comment\nSUM(y)\r\n", "x\r", "tab\there\n \n",
])
def test_plain_text_renders_as_jinja_renders_it_without_a_template(text):
    import jinja2

    from jetstream_assets.config.sandbox import BoundedSandbox

    env = BoundedSandbox(autoescape=False, undefined=jinja2.StrictUndefined)
    assert render_cache._plain(text) == env.from_string(text).render()
    assert render_cache._plain("SUM({{ x }})") is None


def test_a_failing_render_is_not_memoised():
    class Configs:
        functions = None

        def get_env(self):
            from jetstream_assets.config.sandbox import BoundedSandbox

            return BoundedSandbox()

    render_cache._CACHE.clear()
    for _ in range(2):
        with pytest.raises(Exception, match="undefined|not_defined"):
            render_cache.generate_select_expression({}, "{{ not_defined }}", Configs())
    assert not render_cache._CACHE


def test_validation_imports_neither_dagster_nor_scipy_stats():
    """validate-config reads metric-hub files and checks statistic parameters: Dagster (the resources) and
    scipy.stats (the estimators) are imported only by what runs analyses."""
    code = ("import sys, jetstream_assets.validation, jetstream_assets.statistics; "
            "print(sorted(m for m in ('dagster', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_outcomes_are_copied_for_each_experiment_only_when_asked_for(hub):
    import datetime as dt

    from jetstream_assets.config import load_metric_hub
    from jetstream_assets.config.scoped import scoped_collection
    from jetstream_assets.validation.resolution import stand_in_experiment

    loaded = load_metric_hub(hub)
    experiment = stand_in_experiment("x", "firefox_desktop", dt.date(2026, 1, 1))
    first, second = scoped_collection(loaded, experiment), scoped_collection(loaded, experiment)
    assert first.outcomes == []  # nothing copied before an outcome is asked for
    mine = first.spec_for_outcome("unused", "firefox_desktop")
    original = loaded.configs.spec_for_outcome("unused", "firefox_desktop")
    assert mine is not None and mine is first.spec_for_outcome("unused", "firefox_desktop")
    assert mine is not original and mine is not second.spec_for_outcome("unused", "firefox_desktop")
    assert list(mine.metrics) == list(original.metrics) == ["active_hours"]
    assert first.spec_for_outcome("unused", "fenix") is None and first.spec_for_outcome("nope", "firefox_desktop") is None


def test_configs_listing_the_defaults_in_another_order_share_their_query(tmp_path, compiled):
    """A config that also lists a default metric in an earlier period puts it first in its own order; the
    defaults' query is written in an order of its own, so both configs compile the same one."""
    files = {
        "definitions/firefox_desktop.toml": DEFINITIONS + """
            [metrics.days]
            select_expression = "COUNT(submission_date)"
            data_source = "clients_daily"
            [metrics.days.statistics.bootstrap_mean]
        """,
        "jetstream/defaults/firefox_desktop.toml": """
            [metrics]
            weekly = ["active_hours", "days"]
        """,
        "jetstream/plain.toml": "",
        "jetstream/daily-hours.toml": """
            [metrics]
            daily = ["active_hours"]
        """,
    }
    hub = write_hub(tmp_path, files)
    reports = _validate(hub, "plain", "daily-hours")
    assert all(r.valid for r in reports.values()), {k: [str(p) for p in r.problems] for k, r in reports.items()}
    defaults = [sql for sql in compiled if "active_hours_sum" in sql]
    assert len(defaults) == 1 and "COUNT(submission_date)" in defaults[0]
