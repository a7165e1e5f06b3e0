"""The BigQuery warehouse without credentials: the client calls and job configurations it makes, checked
on a fake `google.cloud.bigquery.Client` (put where `dagster_gcp.BigQueryResource` creates its client)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest
import sqlglot
from dagster_gcp import BigQueryResource
from google.api_core.exceptions import BadRequest, NotFound
from google.cloud import bigquery
from metric_config_parser.metric import AnalysisPeriod
from mozanalysis.experiment import TimeLimits
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets import monitoring
from jetstream_assets.config import load_metric_hub, resolve_config
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import enrollments_sql, metrics_sql
from jetstream_assets.warehouse.base import QueryResult, Warehouse, WarehouseError, query_listener
from jetstream_assets.warehouse.bigquery import BigQueryWarehouse, slot_cost_usd
from jetstream_assets_tests.test_queries import experiment

PROJECT = "moz-fx-data-experiments"
SAMPLE = Path("/work/shared/metric-hub-sample")


class FakeJob:
    def __init__(self, *, rows: pd.DataFrame | None = None, error: Exception | None = None,
                 bytes_processed: int = 0, slot_millis: int = 0):
        self.rows = rows if rows is not None else pd.DataFrame()
        self.error = error
        self.total_bytes_processed = bytes_processed
        self.slot_millis = slot_millis

    def result(self, **_):
        if self.error is not None:
            raise self.error
        return SimpleNamespace(total_rows=len(self.rows), to_dataframe=lambda **_: self.rows.copy())


class FakeClient:
    """Records what the warehouse asks BigQuery and keeps tables as `bigquery.Table` objects."""

    def __init__(self, project=None, location=None, **_):
        self.project = project or "inferred-project"
        self.location = location
        self.queries: list[tuple[str, bigquery.QueryJobConfig]] = []
        self.loads: list[tuple[pd.DataFrame, str, bigquery.LoadJobConfig]] = []
        self.label_updates: list[tuple[str, dict, list]] = []
        self.deleted: list[str] = []
        self.tables: dict[str, bigquery.Table] = {}
        self.datasets: set[str] = set()
        self.next_job: dict = {}

    # helpers for the tests
    def add_table(self, table_id: str, columns: dict[str, str] | None = None, rows: int = 0,
                  view: bool = False, labels: dict | None = None) -> bigquery.Table:
        table = bigquery.Table(table_id, schema=[bigquery.SchemaField(n, t) for n, t in (columns or {}).items()])
        table._properties["numRows"] = str(rows)
        if view:
            table._properties["type"] = "VIEW"
        table.labels = labels or {}
        self.tables[table_id] = table
        self.datasets.add(table_id.rsplit(".", 1)[0])
        return table

    # the client API the warehouse uses
    def query(self, sql, job_config=None, **_):
        self.queries.append((sql, job_config))
        job = FakeJob(**self.next_job)
        self.next_job = {}
        if job_config is not None and job_config.dry_run and "BROKEN" in sql:
            raise BadRequest("Syntax error: Unexpected identifier BROKEN at [1:8]")
        if job_config is not None and job_config.destination is not None and job.error is None:
            dest = job_config.destination
            table_id = f"{dest.project}.{dest.dataset_id}.{dest.table_id}"
            kept = self.tables[table_id].labels if table_id in self.tables else {}  # truncating keeps labels
            self.add_table(table_id, rows=41, labels=kept)
        return job

    def get_table(self, table_id):
        table_id = str(table_id)
        if table_id not in self.tables:
            raise NotFound(f"Not found: Table {table_id}")
        return self.tables[table_id]

    def update_table(self, table, fields):
        table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
        self.label_updates.append((table_id, dict(table.labels), list(fields)))
        return table

    def load_table_from_dataframe(self, df, destination, job_config=None, **_):
        self.loads.append((df.copy(), destination, job_config))
        columns = {f.name: f.field_type for f in job_config.schema}
        self.add_table(destination, columns, rows=len(df))
        return FakeJob()

    def list_tables(self, dataset):
        if dataset not in self.datasets:
            raise NotFound(f"Not found: Dataset {dataset}")
        return [SimpleNamespace(table_id=t.rsplit(".", 1)[1]) for t in self.tables if t.rsplit(".", 1)[0] == dataset]

    def delete_table(self, table_id, not_found_ok=False):
        self.deleted.append(table_id)
        self.tables.pop(table_id, None)


@pytest.fixture
def client(monkeypatch) -> FakeClient:
    """The one fake client; every SQL string the warehouse sends must parse as BigQuery SQL."""
    fake = FakeClient(project=PROJECT)
    made = []

    def factory(project=None, location=None, **kwargs):
        made.append((project, location))
        fake.project = project or "inferred-project"  # what google.auth would find
        return fake

    monkeypatch.setattr(bigquery, "Client", factory)
    fake.made = made
    yield fake
    for sql, _ in fake.queries:
        assert sqlglot.parse_one(sql, read="bigquery") is not None, sql


@pytest.fixture
def warehouse(client) -> BigQueryWarehouse:
    return BigQueryWarehouse(bigquery=BigQueryResource(project=PROJECT, location="US"))


def test_query_into_a_table_truncates_labels_and_prices_slot_time(client, warehouse):
    client.add_table(f"{PROJECT}.mozanalysis.enrollments_x", labels={"owner": "jetstream"})
    client.next_job = {"bytes_processed": 123_456_789, "slot_millis": 7_200_000}  # two slot-hours
    before = int(time.time())
    result = warehouse.run_query("SELECT 1 AS one", "enrollments_x")

    sql, config = client.queries[-1]
    assert sql == "SELECT 1 AS one"
    assert str(config.destination) == f"{PROJECT}.mozanalysis.enrollments_x"
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert str(config.default_dataset) == f"{PROJECT}.mozanalysis"
    assert not config.dry_run
    table_id, labels, fields = client.label_updates[-1]
    assert table_id == f"{PROJECT}.mozanalysis.enrollments_x" and fields == ["labels"]
    assert before <= int(labels["last_updated"]) <= int(time.time())
    assert labels["owner"] == "jetstream"  # other labels are kept
    assert result.destination == "enrollments_x" and result.rows == 41
    assert result.bytes_processed == 123_456_789
    assert result.cost_usd == pytest.approx(2 * 0.06)
    assert client.made == [(PROJECT, "US")]  # through the BigQuery resource, once


def test_cost_is_jetstreams_slot_hour_price():
    assert slot_cost_usd(3_600_000) == pytest.approx(0.06)
    assert slot_cost_usd(90_000) == pytest.approx(90_000 / 1000 / 60 / 60 * 0.06)
    assert slot_cost_usd(None) == 0.0


def test_query_costs_reach_the_monitoring_query_cost_table(client, warehouse):
    seen: list[QueryResult] = []
    token = query_listener.set(lambda w, sql, result, at: seen.append(result))
    try:
        client.next_job = {"bytes_processed": 10, "slot_millis": 1_800_000}
        warehouse.run_query("SELECT 2 AS two", "t")
    finally:
        query_listener.reset(token)
    assert seen and seen[0].cost_usd == pytest.approx(0.03)

    client.next_job = {"bytes_processed": 999, "slot_millis": 360_000}
    with monitoring.collect(warehouse, None):
        warehouse.run_query("SELECT 3 AS three", "metrics_x")
    df, destination, config = client.loads[-1]
    assert destination == f"{PROJECT}.monitoring.query_cost"
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
    row = df.iloc[0]
    assert row["destination_table"] == f"{PROJECT}.mozanalysis.metrics_x"
    assert row["total_bytes_processed"] == 999 and row["cost_usd"] == pytest.approx(0.006)
    types = {f.name: f.field_type for f in config.schema}
    assert types == {
        "submission_timestamp": "TIMESTAMP", "destination_table": "STRING", "query": "STRING",
        "total_bytes_processed": "INT64", "duration_seconds": "FLOAT64", "cost_usd": "FLOAT64",
    }


@pytest.fixture(scope="module")
def desktop():
    return resolve_config(experiment("plain-desktop-experiment", segments=["regular_users_v3"]),
                          load_metric_hub(SAMPLE))


def test_mozanalysis_sql_runs_untranslated(client, warehouse, desktop):
    limits = TimeLimits.for_single_analysis_window(
        first_enrollment_date="2024-01-01", last_date_full_data="2024-01-14",
        analysis_start_days=0, analysis_length_dates=7, num_dates_enrollment=7)
    enrollments = enrollments_sql(desktop, limits)
    ref = warehouse.table_ref(names.enrollments_table("plain-desktop-experiment"))
    metrics = metrics_sql(desktop, limits, AnalysisPeriod.WEEK, AnalysisBasis.ENROLLMENTS, ref)
    warehouse.run_query(enrollments, "enrollments_plain_desktop_experiment")
    warehouse.dry_run(metrics)
    warehouse.run_query(metrics, "plain_desktop_experiment_enrollments_week_1")
    sent = [sql for sql, _ in client.queries]
    assert sent == [enrollments, metrics, metrics]  # byte for byte: no transpiling, no macros
    assert f"`{PROJECT}.mozanalysis.enrollments_plain_desktop_experiment`" in metrics
    assert "mozfun.map.get_key" in enrollments  # BigQuery's own UDFs, not DuckDB macros


def test_shared_metrics_scan_sql_runs_untranslated_and_dry_runs_to_bytes(client, warehouse, desktop):
    """The shared scan's SQL is BigQuery's: sent as it is, and a dry run tells the bytes it would bill."""
    from jetstream_assets.sql.metrics_scan import scan_windows, shared_metrics_sql
    from jetstream_assets.windows import AnalysisWindow

    start = dt.date(2024, 1, 1)
    closing = [(AnalysisWindow(AnalysisPeriod.WEEK, 1, 0, 6), dt.date(2024, 1, 14)),
               (AnalysisWindow(AnalysisPeriod.DAY, 7, 6, 6), dt.date(2024, 1, 14))]
    windows = scan_windows(desktop, start, 7, closing)
    ref = warehouse.table_ref(names.enrollments_table("plain-desktop-experiment"))
    sql = shared_metrics_sql(desktop, windows, ref)
    sqlglot.parse_one(sql, read="bigquery")  # BigQuery syntax
    client.next_job = {"bytes_processed": 123_456}
    assert warehouse.dry_run_bytes(sql) == 123_456
    assert client.queries[-1][0] == sql and client.queries[-1][1].dry_run is True


def test_dry_run_flags_and_errors(client, warehouse):
    warehouse.dry_run("SELECT 1")
    _, config = client.queries[-1]
    assert config.dry_run is True and config.use_query_cache is False and config.destination is None
    with pytest.raises(WarehouseError, match="does not compile on BigQuery.*Unexpected identifier BROKEN"):
        warehouse.dry_run("SELECT BROKEN")
    assert not client.label_updates


def test_failed_query_names_the_table_and_the_cause(client, warehouse):
    client.next_job = {"error": BadRequest("Unrecognized name: hours at [3:5]")}
    with pytest.raises(WarehouseError, match=rf"writing `{PROJECT}.mozanalysis.metrics_x`.*Unrecognized name: hours"):
        warehouse.run_query("SELECT hours FROM t", "metrics_x")


def test_window_view_is_a_wildcard_limited_to_window_numbers(client, warehouse):
    prefix = names.statistics_table_prefix("a", AnalysisPeriod.DAY)
    for n in (1, 2, 10):
        client.add_table(f"{PROJECT}.mozanalysis.{prefix}_{n}")
    client.add_table(f"{PROJECT}.mozanalysis.statistics_a_daily", view=True)
    warehouse.create_window_view(names.statistics_view("a", AnalysisPeriod.DAY), prefix)
    sql, _ = client.queries[-1]
    tree = sqlglot.parse_one(sql, read="bigquery")
    assert isinstance(tree, sqlglot.exp.Create) and tree.args.get("replace") and tree.kind == "VIEW"
    assert f"CREATE OR REPLACE VIEW `{PROJECT}.mozanalysis.statistics_a_daily`" in sql
    assert f"FROM `{PROJECT}.mozanalysis.statistics_a_day_*`" in sql
    assert "WHERE REGEXP_CONTAINS(_TABLE_SUFFIX, r'^[0-9]+$')" in sql
    assert "CAST(_TABLE_SUFFIX AS INT64) AS window_index" in sql


def test_window_view_unions_by_name_when_another_prefix_shares_the_wildcard(client, warehouse):
    # experiment "a_day" has tables statistics_a_day_day_<n>: `statistics_a_day_*` would match them
    # and take its schema from them, so the view of "a" lists its own windows instead
    prefix = names.statistics_table_prefix("a", AnalysisPeriod.DAY)
    for n in (2, 1):
        client.add_table(f"{PROJECT}.mozanalysis.{prefix}_{n}")
    client.add_table(f"{PROJECT}.mozanalysis.{names.statistics_table('a_day', AnalysisPeriod.DAY, 1)}")
    warehouse.create_window_view("statistics_a_daily", prefix)
    sql, _ = client.queries[-1]
    sqlglot.parse_one(sql, read="bigquery")
    assert "_TABLE_SUFFIX" not in sql and "*`" not in sql
    assert f"SELECT *, 1 AS window_index FROM `{PROJECT}.mozanalysis.statistics_a_day_1`" in sql
    assert f"SELECT *, 2 AS window_index FROM `{PROJECT}.mozanalysis.statistics_a_day_2`" in sql
    assert "statistics_a_day_day_1" not in sql and sql.count("UNION ALL") == 1


def test_window_view_without_windows_is_an_error(client, warehouse):
    with pytest.raises(WarehouseError, match="no table named x_enrollments_week_<n>"):
        warehouse.create_window_view("x_enrollments_weekly", "x_enrollments_week")


def test_write_dataframe_loads_with_truncate_an_explicit_schema_and_a_label(client, warehouse):
    df = pd.DataFrame({
        "metric": ["m", "m"], "parameter": [None, None], "point": [1.5, None], "n": [1, 2],
        "flag": [True, False], "day": [dt.date(2024, 1, 1), None],
        "at": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]),
        "label": pd.Series(["a", None], dtype="string"), "count": pd.Series([1, None], dtype="Int64"),
    })
    warehouse.write_dataframe(df, "statistics_x_week_1")
    loaded, destination, config = client.loads[-1]
    assert destination == f"{PROJECT}.mozanalysis.statistics_x_week_1"
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_TRUNCATE
    assert {f.name: f.field_type for f in config.schema} == {
        "metric": "STRING", "parameter": "STRING", "point": "FLOAT64", "n": "INT64", "flag": "BOOL",
        "day": "DATE", "at": "TIMESTAMP", "label": "STRING", "count": "INT64",
    }
    pd.testing.assert_frame_equal(loaded, df)
    assert client.label_updates[-1][0] == destination and "last_updated" in client.label_updates[-1][1]
    with pytest.raises(WarehouseError, match="Column 'nested'.*dict"):
        warehouse.write_dataframe(pd.DataFrame({"nested": [{"a": 1}]}), "t")


def test_append_rows_appends_with_the_existing_schema_and_allows_new_columns(client, warehouse):
    client.add_table(f"{PROJECT}.monitoring.logs", {"message": "STRING", "exception": "STRING",
                                                   "timestamp": "TIMESTAMP"})
    rows = monitoring.logs_frame([{"timestamp": dt.datetime.now(dt.UTC), "message": "hello"}])
    warehouse.append_rows("logs", rows, dataset="monitoring")
    _, destination, config = client.loads[-1]
    assert destination == f"{PROJECT}.monitoring.logs"
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
    assert config.create_disposition == bigquery.CreateDisposition.CREATE_IF_NEEDED
    types = {f.name: f.field_type for f in config.schema}
    assert types["exception"] == "STRING" and types["timestamp"] == "TIMESTAMP"  # all-null column kept typed
    assert config.schema_update_options == [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]  # new columns
    assert not client.label_updates  # an append-only table is not restamped

    warehouse.append_rows("brand_new", pd.DataFrame({"a": [1]}), dataset="monitoring")
    assert client.loads[-1][2].schema_update_options is None  # created by the load

    client.add_table(f"{PROJECT}.monitoring.v", view=True)
    with pytest.raises(WarehouseError, match="is a view"):
        warehouse.append_rows("v", pd.DataFrame({"a": [1]}), dataset="monitoring")


def test_table_operations_go_through_the_client(client, warehouse):
    assert warehouse.list_tables() == []  # a dataset that does not exist yet
    client.add_table(f"{PROJECT}.mozanalysis.enrollments_x", {"analysis_id": "STRING", "branch": "STRING"})
    client.add_table(f"{PROJECT}.mozanalysis.x_enrollments_week_1")
    client.add_table(f"{PROJECT}.mozanalysis.y_enrollments_week_1")
    client.add_table(f"{PROJECT}.monitoring.logs")
    assert warehouse.list_tables("x_") == ["x_enrollments_week_1"]
    assert warehouse.list_tables() == ["enrollments_x", "x_enrollments_week_1", "y_enrollments_week_1"]
    assert warehouse.list_tables(dataset="monitoring") == ["logs"]
    assert warehouse.table_exists("enrollments_x") and not warehouse.table_exists("enrollments_y")
    assert warehouse.table_exists("logs", dataset="monitoring")
    assert warehouse.table_columns("enrollments_x") == ["analysis_id", "branch"]
    assert warehouse.table_columns("missing") == []
    warehouse.delete_tables(["x_enrollments_week_1", "never_there"])
    assert client.deleted == [f"{PROJECT}.mozanalysis.x_enrollments_week_1", f"{PROJECT}.mozanalysis.never_there"]
    assert warehouse.list_tables("x_") == []


def test_read_table_and_query_return_dataframes(client, warehouse):
    client.next_job = {"rows": pd.DataFrame({"branch": ["control"], "n": [3]})}
    df = warehouse.read_table("enrollments_x", columns=["branch", "n"])
    assert df.to_dict("records") == [{"branch": "control", "n": 3}]
    assert client.queries[-1][0] == f"SELECT `branch`, `n` FROM `{PROJECT}.mozanalysis.enrollments_x`"
    client.next_job = {"error": NotFound("Not found: Table enrollments_y")}
    with pytest.raises(WarehouseError, match=f"`{PROJECT}.mozanalysis.enrollments_y` does not exist"):
        warehouse.read_table("enrollments_y")
    client.next_job = {"rows": pd.DataFrame({"one": [1]})}
    assert warehouse.query("SELECT 1 AS one")["one"].tolist() == [1]


def test_private_experiments_write_to_their_own_dataset(client, warehouse):
    private = warehouse.with_dataset("private_results")
    assert warehouse.dataset == "mozanalysis"  # the shared warehouse is untouched
    assert private.table_ref("enrollments_x") == f"{PROJECT}.private_results.enrollments_x"
    private.run_query("SELECT 1 AS one", "enrollments_x")
    _, config = client.queries[-1]
    assert str(config.destination) == f"{PROJECT}.private_results.enrollments_x"
    assert str(config.default_dataset) == f"{PROJECT}.private_results"
    # per call: dataset= on table operations, `dataset.table` for query destinations and views
    warehouse.write_dataframe(pd.DataFrame({"a": [1]}), "statistics_x_week_1", dataset="private_results")
    assert client.loads[-1][1] == f"{PROJECT}.private_results.statistics_x_week_1"
    warehouse.run_query("SELECT 1 AS one", "private_results.x_enrollments_week_1")
    assert str(client.queries[-1][1].destination) == f"{PROJECT}.private_results.x_enrollments_week_1"
    warehouse.create_window_view("private_results.x_enrollments_weekly", "x_enrollments_week")
    assert f"`{PROJECT}.private_results.x_enrollments_week_*`" in client.queries[-1][0]
    assert warehouse.table_ref("t", "private_results") == f"{PROJECT}.private_results.t"
    with pytest.raises(WarehouseError, match="Invalid BigQuery dataset name 'my-private'"):
        warehouse.with_dataset("my-private")
    with pytest.raises(WarehouseError, match="Invalid BigQuery table name"):
        warehouse.run_query("SELECT 1", "bad`name")


def test_results_project_can_differ_from_the_job_project(client):
    warehouse = BigQueryWarehouse(bigquery=BigQueryResource(project="billing-project"), project="results-project")
    warehouse.run_query("SELECT 1 AS one", "t")
    assert str(client.queries[-1][1].destination) == "results-project.mozanalysis.t"
    assert client.made == [("billing-project", None)]
    inferred = BigQueryWarehouse(bigquery=BigQueryResource())  # the credentials' project
    assert inferred.table_ref("t") == "inferred-project.mozanalysis.t"


def test_concurrent_label_update_is_not_an_error(client, warehouse, caplog):
    from google.api_core.exceptions import PreconditionFailed

    def conflict(table, fields):
        raise PreconditionFailed("etag mismatch")

    client.update_table = conflict
    with caplog.at_level(logging.WARNING):
        result = warehouse.run_query("SELECT 1 AS one", "t")
    assert result.rows == 41 and "Concurrent label update" in caplog.text


def test_a_dagster_run_resolves_env_vars_and_uses_the_warehouse(client, monkeypatch):
    @dg.asset
    def enrollments_probe(warehouse: Warehouse) -> dg.MaterializeResult:
        result = warehouse.run_query("SELECT 1 AS one", "enrollments_probe")
        return dg.MaterializeResult(metadata={"table": warehouse.table_ref("enrollments_probe"),
                                              "cost": result.cost_usd})

    monkeypatch.setenv("JETSTREAM_BIGQUERY_PROJECT", "run-time-project")
    monkeypatch.setenv("JETSTREAM_BIGQUERY_DATASET", "results_at_run_time")
    warehouse = BigQueryWarehouse(
        bigquery=BigQueryResource(project=dg.EnvVar("JETSTREAM_BIGQUERY_PROJECT")),
        dataset=dg.EnvVar("JETSTREAM_BIGQUERY_DATASET"),
    )
    client.next_job = {"slot_millis": 36_000}
    result = dg.materialize([enrollments_probe], resources={"warehouse": warehouse})
    assert result.success
    materialization = result.asset_materializations_for_node("enrollments_probe")[0]
    assert materialization.metadata["table"].value == "run-time-project.results_at_run_time.enrollments_probe"
    assert materialization.metadata["cost"].value == pytest.approx(0.0006)
    assert str(client.queries[-1][1].destination) == "run-time-project.results_at_run_time.enrollments_probe"


def test_list_columns_load_as_repeated_fields():
    """Histogram bucket counts (the telemetry aggregates) are ARRAY<INT64> on BigQuery."""
    import numpy as np
    import pandas as pd

    from jetstream_assets.warehouse.bigquery import dataframe_schema

    df = pd.DataFrame({"histogram": [np.array([1, 2, 3]), np.array([0])], "sums": [[1.5], [2.5, 3.5]],
                       "metric": ["GC_MS", "GC_MS"]})
    fields = {f.name: (f.field_type, f.mode) for f in dataframe_schema(df)}
    assert fields == {"histogram": ("INT64", "REPEATED"), "sums": ("FLOAT64", "REPEATED"),
                      "metric": ("STRING", "NULLABLE")}
