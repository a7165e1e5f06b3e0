"""The embedded warehouse: BigQuery SQL on DuckDB over Parquet, atomic tables, Jetstream views."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from jetstream_assets.sql import names
from jetstream_assets.sql.transpile import to_duckdb
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets.warehouse.local import LocalWarehouse


@pytest.fixture
def warehouse(tmp_path):
    w = LocalWarehouse(root=str(tmp_path / "warehouse"))
    events = pd.DataFrame(
        {
            "submission_date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"]).date,
            "client_id": ["a", "b", "a"],
            "hours": [1.0, 2.0, 3.0],
        }
    )
    (tmp_path / "warehouse" / "telemetry").mkdir(parents=True)
    w.write_dataframe(events, "clients_daily")  # into the results dataset ...
    (tmp_path / "warehouse" / "mozanalysis" / "clients_daily.parquet").rename(
        tmp_path / "warehouse" / "telemetry" / "clients_daily.parquet"  # ... then moved to telemetry
    )
    return w


def test_bigquery_sql_runs_on_duckdb_with_project_qualified_tables(warehouse):
    df = warehouse.query(
        """
        SELECT client_id, SUM(hours) AS hours, COUNTIF(hours > 1) AS big,
               DATE_ADD(MIN(submission_date), INTERVAL 1 DAY) AS next_day
        FROM `moz-fx-data-shared-prod.telemetry.clients_daily` cd
        GROUP BY ALL ORDER BY client_id
        """
    )
    assert df["client_id"].tolist() == ["a", "b"]
    assert df["hours"].tolist() == [4.0, 2.0]
    assert df["big"].tolist() == [1, 1]
    assert str(df["next_day"].iloc[0])[:10] == "2024-01-02"
    # the same table under mozdata.* and dataset-only names
    assert len(warehouse.query("SELECT * FROM mozdata.telemetry.clients_daily")) == 3
    assert len(warehouse.query("SELECT * FROM telemetry.clients_daily")) == 3


def test_mozfun_functions_work_quoted_and_unquoted(warehouse):
    sql = """
        SELECT `mozfun.map.get_key`(m, 'a') AS quoted, mozfun.map.get_key(m, 'b') AS plain,
               mozfun.map.get_key(m, 'zz') AS missing,
               mozfun.bits28.days_since_seen(4) AS since
        FROM (SELECT MAP(['a', 'b'], ['x', 'y']) AS m)
    """
    row = warehouse.query(sql).iloc[0]
    assert (row["quoted"], row["plain"], row["since"]) == ("x", "y", 2)
    assert row["missing"] is None or pd.isna(row["missing"])


def test_ctes_are_not_mistaken_for_tables():
    seen = []
    to_duckdb(
        "WITH clients_daily AS (SELECT 1 AS x) SELECT * FROM clients_daily JOIN telemetry.events e ON TRUE",
        lambda project, dataset, table: seen.append((dataset, table)),
    )
    assert seen == [("telemetry", "events")]


def test_query_into_table_replaces_atomically_and_failures_keep_the_old_table(warehouse):
    warehouse.run_query("SELECT 1 AS x UNION ALL SELECT 2", "t")
    assert warehouse.read_table("t")["x"].sum() == 3
    with pytest.raises(WarehouseError, match="mozanalysis.t"):
        warehouse.run_query("SELECT no_such_column FROM telemetry.clients_daily", "t")
    assert warehouse.read_table("t")["x"].sum() == 3  # untouched
    leftovers = [p.name for p in (warehouse.table_path("t").parent).iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_readers_never_see_half_a_table(warehouse):
    warehouse.run_query("SELECT range AS x FROM range(200000)", "big")
    errors, sums = [], []

    def read():
        for _ in range(20):
            try:
                sums.append(int(warehouse.read_table("big")["x"].count()))
            except Exception as e:  # pragma: no cover - the assertion below reports it
                errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(5):
        warehouse.run_query("SELECT range AS x FROM range(200000)", "big")
    reader.join()
    assert errors == [] and set(sums) == {200000}


def test_missing_table_error_says_what_to_do(warehouse):
    with pytest.raises(WarehouseError, match="telemetry.nope does not exist.*materialize"):
        warehouse.query("SELECT * FROM telemetry.nope")


def test_window_views_union_windows_with_window_index(warehouse):
    slug = "my-exp.v2"
    for index in (1, 2, 10):
        warehouse.run_query(
            f"SELECT {index} AS w, 'c' AS analysis_id",
            names.metrics_table(slug, "enrollments", names.AnalysisPeriod.WEEK, index),
        )
    # a table of another experiment whose name starts the same way must not leak into the view
    warehouse.run_query("SELECT 99 AS w", "my_exp_v2_enrollments_week_x_1")
    view = names.metrics_view(slug, "enrollments", names.AnalysisPeriod.WEEK)
    warehouse.create_window_view(view, names.metrics_table_prefix(slug, "enrollments", names.AnalysisPeriod.WEEK))
    df = warehouse.read_table(view).sort_values("window_index")
    assert view == "my_exp_v2_enrollments_weekly"
    assert df["window_index"].tolist() == [1, 2, 10] and df["w"].tolist() == [1, 2, 10]
    assert "window_index" in warehouse.table_columns(view)


def test_dry_run_reports_binder_errors_without_running(warehouse):
    warehouse.dry_run("SELECT hours FROM telemetry.clients_daily")
    with pytest.raises(WarehouseError, match="nope"):
        warehouse.dry_run("SELECT nope FROM telemetry.clients_daily")


def test_experiment_tables_finds_only_that_experiments_tables():
    tables = [
        "enrollments_exp_a", "exp_a_enrollments_week_1", "exp_a_exposures_weekly", "statistics_exp_a_week_1",
        "statistics_exp_a_weekly", "exp_a_b_enrollments_week_1", "enrollments_exp_a_b", "exp_a_other",
    ]
    assert names.experiment_tables("exp-a", tables) == tables[:5]
