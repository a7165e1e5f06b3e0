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


# ---- the functions real configs call that had no macro: one test each, against the documented behaviour --


def test_normalize_search_engine(warehouse):
    """udf.normalize_search_engine: the engine family by case-insensitive prefix, else 'Other'; NULL stays NULL."""
    row = one(warehouse, """
        SELECT `moz-fx-data-shared-prod`.udf.normalize_search_engine('google-b-1-d') AS google,
               `moz-fx-data-shared-prod.udf.normalize_search_engine`('Google') AS google_capital,
               udf.normalize_search_engine('ddg-abc') AS ddg, udf.normalize_search_engine('DuckDuckGo') AS duck,
               udf.normalize_search_engine('bing') AS bing, udf.normalize_search_engine('yasearch') AS yandex,
               udf.normalize_search_engine('amazondotcom') AS amazon, udf.normalize_search_engine('ebay-de') AS ebay,
               udf.normalize_search_engine('not-google') AS other, udf.normalize_search_engine('qwant') AS qwant,
               udf.normalize_search_engine(NULL) IS NULL AS null_stays_null
    """)
    assert (row["google"], row["google_capital"], row["ddg"], row["duck"]) == ("Google", "Google", "DuckDuckGo", "DuckDuckGo")
    assert (row["bing"], row["yandex"], row["amazon"], row["ebay"]) == ("Bing", "Yandex", "Amazon", "Ebay")
    assert (row["other"], row["qwant"]) == ("Other", "Other")  # a prefix, not a substring
    assert row["null_stays_null"]


def test_extract_version(warehouse):
    """mozfun.norm.extract_version: one part of a dotted version as a number; NULL when it is missing."""
    row = one(warehouse, """
        SELECT mozfun.norm.extract_version('120.0.3', 'major') AS major,
               mozfun.norm.extract_version('120.07.3', 'minor') AS minor,
               mozfun.norm.extract_version('7.2.11-linux-build', 'patch') AS patch,
               mozfun.norm.extract_version('121', 'minor') IS NULL AS no_minor,
               mozfun.norm.extract_version('beta-2', 'major') IS NULL AS not_a_version,
               mozfun.norm.extract_version('1.2.3', 'build') IS NULL AS unknown_level,
               mozfun.norm.extract_version('99.1', 'major') > mozfun.norm.extract_version('100.1', 'major') AS numeric_order
    """)
    assert (float(row["major"]), float(row["minor"]), float(row["patch"])) == (120, 7, 11)
    assert row["no_minor"] and row["not_a_version"] and row["unknown_level"]
    assert not row["numeric_order"]  # compared as numbers, not text


def test_truncate_version(warehouse):
    """mozfun.norm.truncate_version: the version cut to major or major.minor, as a number."""
    row = one(warehouse, """
        SELECT mozfun.norm.truncate_version('14.6.2', 'minor') AS minor,
               mozfun.norm.truncate_version('14.06.2', 'minor') AS leading_zero,
               mozfun.norm.truncate_version('14.6.2', 'major') AS major,
               mozfun.norm.truncate_version('22', 'minor') AS bare,
               mozfun.norm.truncate_version('3.4.1-rc', 'minor') AS suffixed,
               mozfun.norm.truncate_version('3.4.1', 'patch') IS NULL AS unknown_level,
               mozfun.norm.truncate_version('rolling', 'minor') IS NULL AS not_a_version
    """)
    assert [float(row[c]) for c in ("minor", "leading_zero", "major", "bare", "suffixed")] == [14.6, 14.06, 14, 22, 3.4]
    assert row["unknown_level"] and row["not_a_version"]


def test_json_extract_histogram_and_threshold_count_are_the_mozfun_ones(warehouse):
    """udf.json_extract_histogram and udf.histogram_to_threshold_count wrap mozfun.hist.extract and
    mozfun.hist.threshold_count (observations in buckets whose key is at least the threshold)."""
    hist = json.dumps({"bucket_count": 5, "histogram_type": 0, "sum": 40, "range": [1, 50],
                       "values": {"0": 4, "3": 2, "9": 6, "20": 1}})
    row = one(warehouse, f"""
        SELECT udf.json_extract_histogram('{hist}').sum AS total,
               `moz-fx-data-shared-prod`.udf.json_extract_histogram('{hist}').values[OFFSET(2)].key AS third_key,
               udf.histogram_to_threshold_count('{hist}', 9) AS from_nine,
               udf.histogram_to_threshold_count('{hist}', 4) AS from_four,
               udf.histogram_to_threshold_count('{hist}', 21) AS none_left
    """)
    assert (row["total"], row["third_key"]) == (40, 9)
    assert (row["from_nine"], row["from_four"], row["none_left"]) == (7, 7, 0)


def test_get_key_legacy_spellings(warehouse):
    """udf.get_key (also written mozdata.udf.get_key) is mozfun.map.get_key."""
    row = one(warehouse, """
        SELECT udf.get_key([STRUCT('x' AS key, 5 AS value), STRUCT('y' AS key, 8 AS value)], 'y') AS udf_spelling,
               mozdata.udf.get_key([STRUCT('x' AS key, 'on' AS value)], 'x') AS mozdata_spelling,
               `mozdata.udf.get_key`([STRUCT(3 AS key, TRUE AS value)], 3) AS quoted,
               mozdata.udf.get_key([STRUCT('x' AS key, 1 AS value)], 'z') IS NULL AS absent
    """)
    assert (row["udf_spelling"], row["mozdata_spelling"], row["quoted"]) == (8, "on", True)
    assert row["absent"]


def test_monetized_search_public_definition(warehouse):
    """udf.monetized_search: Mozilla's agreements are private; the public definition says FALSE for all."""
    df = warehouse.query("""
        SELECT `moz-fx-data-shared-prod.udf.monetized_search`(engine, 'US', CAST(NULL AS STRING), DATE '2024-05-01') AS m
        FROM UNNEST(['google', 'bing', CAST(NULL AS STRING)]) AS engine
    """)
    assert df["m"].tolist() == [False, False, False]
