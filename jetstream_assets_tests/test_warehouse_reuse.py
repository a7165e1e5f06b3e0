"""The local warehouse opens one DuckDB connection per thread, not one per query, and transpiles each
statement once."""

import threading

import pandas as pd
import pytest

from jetstream_assets.sql import transpile
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets.warehouse.local import LocalWarehouse


@pytest.fixture
def counted(tmp_path, monkeypatch):
    warehouse = LocalWarehouse(root=str(tmp_path / "wh"))
    opened = []
    original = LocalWarehouse._connect

    def counting(self):
        opened.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(LocalWarehouse, "_connect", counting)
    return warehouse, opened


def test_one_connection_for_many_queries_and_writes(counted):
    warehouse, opened = counted
    warehouse.write_dataframe(pd.DataFrame({"x": [1, 2, 3]}), "t")
    for _ in range(5):
        warehouse.run_query("SELECT x * 2 AS y FROM mozanalysis.t", "u")
        assert warehouse.read_table("u")["y"].sum() == 12
    assert warehouse.table_columns("u") == ["y"]
    assert len(opened) == 1


def test_a_failed_query_does_not_break_the_next(counted):
    warehouse, opened = counted
    warehouse.write_dataframe(pd.DataFrame({"x": [1]}), "t")
    with pytest.raises(WarehouseError):
        warehouse.query("SELECT no_such_column FROM mozanalysis.t")
    assert warehouse.query("SELECT x FROM mozanalysis.t")["x"].tolist() == [1]


def test_each_thread_has_its_own_connection(counted):
    warehouse, opened = counted
    warehouse.write_dataframe(pd.DataFrame({"x": [1]}), "t")
    results = []
    threads = [threading.Thread(target=lambda: results.append(warehouse.query("SELECT x FROM mozanalysis.t")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(opened)) == len(opened) == 4


def test_statements_are_transpiled_once_per_resolution(counted, monkeypatch):
    warehouse, _ = counted
    warehouse.write_dataframe(pd.DataFrame({"x": [1]}), "t")
    parses = []
    original = transpile.sqlglot.parse

    def counting(*args, **kwargs):
        parses.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(transpile.sqlglot, "parse", counting)
    sql = "SELECT x + 41 AS answer FROM `project.mozanalysis.t` -- reuse"
    for _ in range(4):
        assert warehouse.query(sql)["answer"].tolist() == [42]
    assert len(parses) == 1
    # a new table behind the same name is resolved again, not served stale
    warehouse.write_dataframe(pd.DataFrame({"x": [2]}), "t")
    assert warehouse.query(sql)["answer"].tolist() == [43]


def test_split_query_writes_each_part_with_its_columns_and_matches_the_generic_way(counted):
    from jetstream_assets.warehouse.base import Warehouse

    warehouse, _ = counted
    warehouse.write_dataframe(pd.DataFrame({"k": [0, 0, 1, 2], "a": [1, 2, 3, 4], "b": [5, 6, 7, 8]}), "src")
    sql = "SELECT k AS part, a, b, a + b AS c FROM mozanalysis.src"
    outputs = {0: ("p0", ["c", "a"]), 1: ("p1", ["b"]), 3: ("p3", ["a"])}
    scanned, results = warehouse.run_query_split(sql, "part", outputs)
    assert scanned.rows == 4 and {v: r.rows for v, r in results.items()} == {0: 2, 1: 1, 3: 0}
    local = {t: warehouse.read_table(t) for t, _ in outputs.values()}
    assert list(local["p0"].columns) == ["c", "a"] and sorted(local["p0"]["c"]) == [6, 8]
    assert local["p1"]["b"].tolist() == [7] and local["p3"].empty
    Warehouse.run_query_split(warehouse, sql, "part", outputs)  # the engine-neutral default (BigQuery's)
    for table, frame in local.items():
        pd.testing.assert_frame_equal(warehouse.read_table(table).sort_values(list(frame.columns)).reset_index(drop=True),
                                      frame.sort_values(list(frame.columns)).reset_index(drop=True))
    assert not [t for t in warehouse.list_tables() if t.startswith("_scratch")]


def test_constant_date_bounds_are_dates_so_parquet_scans_prune(counted):
    """mozanalysis bounds segment reads with DATE_ADD('<date>', INTERVAL n DAY); DuckDB would make that a
    TIMESTAMP and read every row group. Folded to a DATE, the same rows come back."""
    warehouse, _ = counted
    sql = ("SELECT COUNT(*) AS n FROM UNNEST(GENERATE_DATE_ARRAY('2026-10-01', '2026-10-31')) AS d "
           "WHERE d BETWEEN DATE_ADD('2026-10-18', INTERVAL -7 DAY) AND DATE_ADD('2026-10-20', INTERVAL 1 DAY)")
    duck = transpile.to_duckdb(sql, lambda *a: None)
    assert "BETWEEN CAST('2026-10-11' AS DATE) AND CAST('2026-10-21' AS DATE)" in duck
    assert warehouse.query(sql)["n"].tolist() == [11]
