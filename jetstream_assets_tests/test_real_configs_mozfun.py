"""mozfun/udf functions and BigQuery constructs the real configs use, run on the local engine as they are
written in metric-hub (BigQuery spelling, through the warehouse's transpiler)."""

import json

import pandas as pd
import pytest

from jetstream_assets.sql.mozfun import KV_LIST_TYPES
from jetstream_assets.sql.transpile import to_duckdb
from jetstream_assets.warehouse.local import LocalWarehouse

HIST = json.dumps({"bucket_count": 3, "histogram_type": 1, "sum": 17, "range": [1, 2],
                   "values": {"0": 2, "1": 5, "5": 10, "2": 0}})


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return LocalWarehouse(root=str(tmp_path_factory.mktemp("mozfun")))


def one(warehouse, sql):
    return warehouse.query(sql).iloc[0]


def test_histogram_functions(warehouse):
    row = one(warehouse, f"""
        SELECT mozfun.hist.extract('{HIST}').sum AS total,
               (SELECT SUM(value) FROM UNNEST(mozfun.hist.extract('{HIST}').values)) AS count,
               mozfun.map.get_key(mozfun.hist.extract('{HIST}').values, 0) AS zeros,
               mozfun.hist.threshold_count('{HIST}', 1) AS at_least_one,
               `moz-fx-data-shared-prod`.udf.histogram_max_key_with_nonzero_value('{HIST}') AS max_key,
               mozfun.hist.extract('3;1;6;1,2;0:1,4:5').sum AS compact_sum,
               mozfun.hist.extract(NULL) IS NULL AS null_in_null_out
    """)
    assert (row["total"], row["count"], row["zeros"]) == (17, 17, 2)
    assert (row["at_least_one"], row["max_key"], row["compact_sum"]) == (15, 5, 6)
    assert row["null_in_null_out"]


def test_histogram_merge_and_percentiles(warehouse):
    df = warehouse.query(f"""
        SELECT g, mozfun.hist.percentiles(mozfun.hist.merge(ARRAY_AGG(mozfun.hist.extract(h) IGNORE NULLS)),
                                          [0.1, 0.5])[SAFE_OFFSET(1)].value AS median,
                  mozfun.hist.merge(ARRAY_AGG(mozfun.hist.extract(h))).sum AS merged_sum
        FROM (SELECT 1 AS g, '{HIST}' AS h UNION ALL SELECT 1, '3;1;4;1,2;0:1,7:3'
              UNION ALL SELECT 2, '3;1;9;1,2;9:20') GROUP BY g ORDER BY g
    """)
    # group 1 merged: 0:3, 1:5, 2:0, 5:10, 7:3 (21 observations): the median bucket is 5
    assert df["median"].tolist() == [5, 9]
    assert df["merged_sum"].tolist() == [21, 9]


def test_get_key_on_bigquery_key_value_lists_and_maps(warehouse):
    row = one(warehouse, """
        SELECT mozfun.map.get_key([STRUCT('a' AS key, 3 AS value), STRUCT('b' AS key, 4 AS value)], 'b') AS counter,
               `mozfun.map.get_key`([STRUCT('x' AS key, TRUE AS value)], 'x') AS flag,
               mozfun.map.get_key([STRUCT('x' AS key, 'v' AS value)], 'missing') AS missing,
               mozfun.map.get_key([STRUCT('exp' AS key, STRUCT('treatment' AS branch) AS value)], 'exp').branch AS branch,
               mozfun.map.extract_keyed_scalar_sum([STRUCT('a' AS key, 3 AS value), STRUCT('b' AS key, 4 AS value)]) AS keyed_sum,
               `moz-fx-data-shared-prod`.udf.keyed_histogram_get_sum([STRUCT('gpu' AS key, '3;1;11;1,2;1:1' AS value)], 'gpu') AS keyed_hist_sum
    """)
    assert (row["counter"], row["flag"], row["branch"]) == (4, True, "treatment")
    assert pd.isna(row["missing"])
    assert (row["keyed_sum"], row["keyed_hist_sum"]) == (7, 11)
    # the demo's DuckDB MAPs keep working
    assert one(warehouse, "SELECT mozfun.map.get_key(MAP(['a'], ['x']), 'a') AS v")["v"] == "x"
    assert "STRUCT(key VARCHAR, value BIGINT)[]" in KV_LIST_TYPES


def test_normalisation_and_statistics_helpers(warehouse):
    row = one(warehouse, """
        SELECT mozfun.norm.os('Windows_NT') AS win, mozfun.norm.os('Darwin') AS mac, mozfun.norm.os('Linux') AS linux,
               mozfun.norm.windows_version_info('Windows_NT', '10.0', 22631) AS w11,
               mozfun.norm.windows_version_info('Windows_NT', '10.0', 19045) AS w10,
               mozfun.norm.windows_version_info('Windows_NT', '6.1', 7601) AS w7,
               CAST(mozfun.norm.fenix_build_to_datetime('21571434') AS STRING) AS old_build,
               CAST(mozfun.norm.fenix_build_to_datetime('2015757667') AS STRING) AS new_build,
               mozfun.stats.mode_last(['a', 'b', 'b', 'a']) AS tie_goes_to_last,
               mozfun.stats.mode_last(['a', 'b', 'b']) AS mode,
               mozfun.bits28.days_since_seen(4) AS since
    """)
    assert (row["win"], row["mac"], row["linux"]) == ("Windows", "Mac", "Linux")
    assert (row["w11"], row["w10"], row["w7"]) == ("Windows 11", "Windows 10", "Windows 7")
    assert row["old_build"].startswith("2020-06-05 14:34") and row["new_build"].startswith("2020-08-13 04:00")
    assert (row["tie_goes_to_last"], row["mode"], row["since"]) == ("a", "b", 2)


def test_bigquery_constructs_duckdb_lacks(warehouse):
    row = one(warehouse, """
        SELECT ARRAY_AGG(x ORDER BY ts DESC LIMIT 1)[SAFE_OFFSET(0)] AS latest,
               (SELECT SUM(value) FROM UNNEST([STRUCT(1 AS key, 2 AS value), STRUCT(2 AS key, 5 AS value)])) AS total
        FROM (SELECT 'old' AS x, 1 AS ts UNION ALL SELECT 'new', 2)
    """)
    assert (row["latest"], row["total"]) == ("new", 7)
    sql = to_duckdb("SELECT ARRAY_AGG(x ORDER BY y LIMIT 2) FROM t", lambda *a: None)
    assert "LIMIT" not in sql.upper() and "LIST_SLICE" in sql.upper()
