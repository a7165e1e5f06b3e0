"""The benchmarks' scan log (JETSTREAM_SCAN_LOG) works on a confined connection: profiling is switched on
before `confine` locks DuckDB's configuration, and each query's row groups are recorded."""

import json

import pandas as pd

from jetstream_assets.warehouse.local import SCAN_LOG, LocalWarehouse


def test_scan_log_records_the_row_groups_a_query_read(tmp_path, monkeypatch):
    log = tmp_path / "scans.jsonl"
    monkeypatch.setenv(SCAN_LOG, str(log))
    warehouse = LocalWarehouse(root=str(tmp_path / "wh"))
    warehouse.write_dataframe(pd.DataFrame({"x": range(10)}), "t")
    warehouse.run_query("SELECT x * 2 AS y FROM mozanalysis.t", "u")
    assert warehouse.read_table("u")["y"].sum() == 90
    written = [e for e in map(json.loads, log.read_text().splitlines()) if e["destination"] == "u"]
    assert len(written) == 1
    assert any(name.endswith("t.parquet") and groups >= 1 for name, groups in written[0]["row_groups"].items())
