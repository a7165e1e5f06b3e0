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
