"""Every firefox_desktop default and outcome metric of the real metric-hub sample runs on the local engine.

Synthetic tables shaped after the configs' own SQL (`validation.synthetic_tables`) are written once; then the
enrollments query (with every desktop segment) and one metrics query per config (every metric, one
window) run through `LocalWarehouse.run_query` / `query`.
"""

import datetime as dt
from pathlib import Path

import pytest
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config import load_metric_hub, resolve_config
from jetstream_assets.validation.sql import experiment_queries, unique_summaries
from jetstream_assets.validation.synthetic_schemas import SampleTablesError, table_schemas
from jetstream_assets.validation.synthetic_tables import SampleExperiment, write_sample_tables
from jetstream_assets.sql.names import enrollments_table
from jetstream_assets.warehouse.local import LocalWarehouse

SAMPLE = Path("/work/shared/metric-hub-sample")
PLATFORM = "firefox_desktop"
EXPERIMENT = SampleExperiment("sample-desktop-experiment", dt.date(2024, 3, 4))
CLIENTS = 40

#: Metrics that genuinely cannot run locally, with the reason. Asserted exactly: a metric that starts
#: to fail must be added here with its reason, one that starts to work must be removed.
EXCLUDED: dict[str, str] = {}


class World:
    def __init__(self, root: Path):
        self.loaded = load_metric_hub(SAMPLE)
        self.warehouse = LocalWarehouse(root=str(root))
        self.enrollments = enrollments_table(EXPERIMENT.slug)
        ref = self.warehouse.table_ref(self.enrollments)
        self.segments = sorted(
            name
            for d in self.loaded.configs.definitions if d.platform == PLATFORM
            for name in d.spec.segments.definitions
        )
        self.outcomes = [o for o in self.loaded.configs.outcomes if o.platform == PLATFORM]
        self.defaults = resolve_config(EXPERIMENT.experiment(segments=self.segments), self.loaded)
        # defaults: both bases; outcomes: only their own metrics (the defaults' run above)
        self.queries = [("defaults", q) for q in experiment_queries(
            self.defaults, EXPERIMENT, ref, bases=[AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES])]
        self.outcome_configs = {}
        for outcome in self.outcomes:
            resolved = resolve_config(EXPERIMENT.experiment(outcomes=[outcome.slug]), self.loaded)
            self.outcome_configs[outcome.slug] = resolved
            queries = experiment_queries(resolved, EXPERIMENT, ref, names=set(outcome.spec.metrics))
            self.queries += [(outcome.slug, q) for q in queries if q.label != "enrollments"]
        self.tables = write_sample_tables(root, [q.sql for _, q in self.queries], [EXPERIMENT], clients=CLIENTS)
        enrollments_sql = self.queries[0][1]
        assert enrollments_sql.label == "enrollments"
        self.warehouse.run_query(enrollments_sql.sql, self.enrollments)
        self.results = {}  # (config, basis) -> DataFrame, or the error
        for config, query in self.queries[1:]:
            try:
                self.results[(config, query.basis)] = self.warehouse.query(query.sql)
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                self.results[(config, query.basis)] = e


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("real_configs"))


def columns_needed(resolved, names=None):
    """metric -> the columns its analysis needs (its own, or its depends_on metrics' for ratios)."""
    out = {}
    for summary in unique_summaries(resolved, names):
        metric = summary.metric
        if metric.select_expression:
            out[metric.name] = {metric.name}
        else:
            out[metric.name] = {d.metric.name for d in metric.depends_on or []}
            assert out[metric.name], f"{metric.name} has neither SQL nor depends_on"
    return out


def check(world, config, needed, basis=AnalysisBasis.ENROLLMENTS):
    """Metrics whose columns are missing (or whose query failed), with the reason."""
    result = world.results[(config, basis)]
    enrolled = len(world.warehouse.read_table(world.enrollments))
    failures = {}
    for metric, columns in needed.items():
        if isinstance(result, Exception):
            failures[metric] = str(result).splitlines()[0]
            continue
        assert len(result) == enrolled, f"{config}: one row per enrolled client"
        missing = sorted(c for c in columns if c not in result.columns)
        if missing:
            failures[metric] = f"no column {missing}"
            continue
        empty = sorted(c for c in columns if result[c].notna().sum() == 0)
        if empty:  # the seeded synthetic data gives every metric some values
            failures[metric] = f"column {empty} is all NULL"
    return failures


def test_enrollments_with_every_desktop_segment(world):
    enrolled = world.warehouse.read_table(world.enrollments)
    assert 0 < len(enrolled) < CLIENTS  # some clients enroll through Normandy events, some never do
    assert set(enrolled["branch"]) == set(EXPERIMENT.branches)
    dates = enrolled["enrollment_date"].dt.date
    assert dates.between(EXPERIMENT.start_date, EXPERIMENT.last_enrollment_date).all()
    assert len(world.segments) >= 40
    for segment in world.segments:  # one boolean column per segment
        assert segment in enrolled.columns
        assert set(enrolled[segment].dropna().unique()) <= {True, False}
    assert (enrolled["num_exposure_events"] > 0).any()


def test_every_desktop_default_metric_runs(world):
    needed = columns_needed(world.defaults)
    listed = world.loaded.raw[world.loaded.defaults_path(PLATFORM)]["metrics"]
    every_default = {m for key, names in listed.items() if isinstance(names, list) for m in names}
    assert set(needed) == every_default and len(needed) > 15
    failures = check(world, "defaults", needed)
    failures |= check(world, "defaults", needed, AnalysisBasis.EXPOSURES)
    assert failures == {m: EXCLUDED[m] for m in failures if m in EXCLUDED}
    assert set(failures) == set(EXCLUDED) & set(needed)


def test_every_desktop_outcome_metric_runs(world):
    assert len(world.outcomes) >= 30
    failures, covered = {}, set()
    for outcome in world.outcomes:
        needed = columns_needed(world.outcome_configs[outcome.slug], set(outcome.spec.metrics))
        assert set(needed) == set(outcome.spec.metrics), f"{outcome.slug}: every metric it defines resolves"
        covered |= set(needed)
        failures |= check(world, outcome.slug, needed)
    assert len(covered) > 150
    assert failures == {m: EXCLUDED[m] for m in failures if m in EXCLUDED}, failures
    assert set(failures) == set(EXCLUDED) - set(columns_needed(world.defaults))


def test_sample_tables_cover_the_data_sources_configs_read(world):
    tables = set(world.tables.tables)
    for key in [("telemetry", "clients_daily"), ("telemetry", "events"), ("telemetry", "clients_last_seen"),
                ("search", "search_clients_engines_sources_daily"), ("telemetry", "desktop_active_users"),
                ("telemetry_stable", "main_v5"), ("firefox_desktop", "metrics"),
                ("firefox_desktop", "newtab_clients_daily")]:
        assert key in tables
    assert ("mozanalysis", world.enrollments) not in tables  # results are not telemetry
    main = {c.name: c for c in world.tables.schemas[("telemetry_stable", "main_v5")]}
    # histograms are JSON strings, keyed ones key/value lists, as in BigQuery
    payload = {f.name: f for f in main["payload"].fields}
    histograms = {f.name: f for f in payload["histograms"].fields}
    assert histograms["gc_ms"].kind == "hist"
    keyed = {f.name: f for f in payload["keyed_histograms"].fields}
    assert keyed["http3_ech_outcome"].kind == "list"


def test_glean_app_enrolls_through_events_stream(tmp_path):
    loaded = load_metric_hub(SAMPLE)
    fenix = SampleExperiment("sample-fenix-experiment", dt.date(2024, 3, 4), app_name="fenix")
    warehouse = LocalWarehouse(root=str(tmp_path))
    queries = experiment_queries(resolve_config(fenix.experiment(), loaded), fenix,
                                 warehouse.table_ref("enrollments_fenix"))
    tables = write_sample_tables(tmp_path, [q.sql for q in queries], [fenix], clients=30)
    assert ("fenix", "events_stream") in tables.tables  # the app's Glean dataset
    warehouse.run_query(queries[0].sql, "enrollments_fenix")
    enrolled = warehouse.read_table("enrollments_fenix")
    assert 0 < len(enrolled) < 30 and set(enrolled["branch"]) == set(fenix.branches)
    metrics = warehouse.query(queries[1].sql)
    assert len(metrics) == len(enrolled) and set(queries[1].names) <= set(metrics.columns)


# ---- schema derivation on small SQL ------------------------------------------------------------


def schema(sql):
    return {key: {c.name: c for c in columns} for key, columns in table_schemas([sql]).items()}


def test_columns_follow_stars_aliases_and_unnests():
    tables = schema("""
        SELECT COUNTIF(ds.event = 'CLICK') AS clicks, LOGICAL_OR(ds.flag) AS any_flag,
               SUM(ds.n) AS total, `mozfun.map.get_key`(ds.experiments, 'exp').branch AS b,
               (SELECT SUM(value) FROM UNNEST(mozfun.hist.extract(ds.h).values)) AS h_count
        FROM enrollments e
        LEFT JOIN (
            SELECT *, DATE(submission_timestamp) AS submission_date, environment.experiments
            FROM `moz-fx-data-shared-prod.telemetry_stable.main_v5` p
            CROSS JOIN UNNEST(p.events) AS ev
            WHERE ev.category = 'x'
        ) ds ON ds.client_id = e.analysis_id
    """)
    assert set(tables) == {("telemetry_stable", "main_v5")}
    main = tables[("telemetry_stable", "main_v5")]
    assert main["event"].kind == "str" and main["event"].literals == ("CLICK",)
    assert main["flag"].kind == "bool"
    assert main["n"].kind == "int"
    assert main["h"].kind == "hist"
    assert main["submission_timestamp"].kind == "ts"
    assert main["client_id"].kind == "id"
    # environment.experiments: a key/value list whose value has a branch (native experiments column)
    experiments = {f.name: f for f in main["environment"].fields}["experiments"]
    assert str(experiments.arrow) == "list<item: struct<key: string, value: struct<branch: string>>>"
    events = main["events"]  # UNNEST(p.events) AS ev; ev.category
    assert events.kind == "list" and [f.name for f in events.element.fields] == ["category"]


def test_except_and_using_columns_exist_in_the_source():
    tables = schema("""
        SELECT * EXCEPT (secret) FROM (
            SELECT * FROM mozdata.fenix.usage p LEFT JOIN (SELECT submission_date, SUM(dau) AS dau
            FROM mozdata.telemetry.aggregates GROUP BY submission_date) USING (submission_date))
    """)
    assert {"secret", "submission_date"} <= set(tables[("fenix", "usage")])
    assert {"dau", "submission_date"} <= set(tables[("telemetry", "aggregates")])


def test_unparsable_sql_is_a_clear_error_or_collected():
    with pytest.raises(SampleTablesError, match="does not parse"):
        table_schemas(["SELECT FROM WHERE ("])
    unparsable = []
    assert table_schemas(["SELECT FROM WHERE (", "SELECT a FROM t.x"], unparsable=unparsable) == {
        ("t", "x"): table_schemas(["SELECT a FROM t.x"])[("t", "x")]}
    assert unparsable == ["SELECT FROM WHERE ("]


def test_empty_tables_for_dry_runs(tmp_path):
    written = write_sample_tables(tmp_path, ["SELECT SUM(x) AS s FROM telemetry.t WHERE y = 'a'"], [], clients=0)
    warehouse = LocalWarehouse(root=str(tmp_path))
    assert warehouse.query("SELECT count(*) AS n FROM telemetry.t")["n"][0] == 0
    assert {c.name for c in written.schemas[("telemetry", "t")]} == {"x", "y"}
    with pytest.raises(SampleTablesError, match="SampleExperiment"):
        write_sample_tables(tmp_path, ["SELECT x FROM telemetry.t"], [], clients=5)
