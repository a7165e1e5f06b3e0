"""Monitoring without a pipeline: log rows from records, per-step collection, query costs, safe flushing,
and appends to the local warehouse that never lose rows."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import threading

import pandas as pd
import pytest
from mozilla_nimbus_schemas.jetstream import AnalysisErrors

from jetstream_assets import monitoring
from jetstream_assets.exports.errors import LOG_COLUMNS
from jetstream_assets.exports.store import LocalExportStore, errors_path
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets.warehouse.local import LocalWarehouse

logger = logging.getLogger("jetstream_assets.tests")


@pytest.fixture
def warehouse(tmp_path):
    return LocalWarehouse(root=str(tmp_path / "warehouse"))


@pytest.fixture
def store(tmp_path):
    return LocalExportStore(root=str(tmp_path / "exports"))


def _logs(warehouse, slug):
    return warehouse.query(f"SELECT * FROM monitoring.logs WHERE experiment = '{slug}' ORDER BY timestamp")


def test_log_row_takes_extras_and_exception():
    try:
        raise ZeroDivisionError("no clients")
    except ZeroDivisionError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("jetstream_assets.x", logging.ERROR, "stats.py", 7, "mean of %s failed",
                               ("active_hours",), exc_info, func="compute")
    for key, value in {"experiment": "exp-a", "metric": "active_hours", "statistic": "mean",
                       "analysis_basis": "enrollments", "segment": "all", "analysis_period": "week_1"}.items():
        setattr(record, key, value)
    row = monitoring.log_row(record)
    assert set(row) == set(LOG_COLUMNS)
    assert row["message"] == "mean of active_hours failed"
    assert (row["experiment"], row["metric"], row["statistic"]) == ("exp-a", "active_hours", "mean")
    assert (row["analysis_basis"], row["segment"], row["analysis_period"]) == ("enrollments", "all", "week_1")
    assert row["exception_type"] == "ZeroDivisionError" and "no clients" in row["exception"]
    assert (row["log_level"], row["source"], row["filename"], row["func_name"]) == (
        "ERROR", "jetstream", "stats.py", "compute")
    assert row["timestamp"].tzinfo is not None


def test_log_context_fills_fields_records_do_not_carry(warehouse):
    engine = logging.getLogger("jetstream_assets.tests.engine")  # code that knows no experiment
    with monitoring.collect(warehouse, None) as m:
        with monitoring.log_context(experiment="exp-a", metric="m1", segment="all"):
            engine.warning("note")
            logger.warning("own extra wins", extra={"metric": "m2"})
        engine.warning("outside")
    first, second, outside = m.log_rows
    assert (first["experiment"], first["metric"], first["segment"]) == ("exp-a", "m1", "all")
    assert (second["experiment"], second["metric"]) == ("exp-a", "m2")
    assert outside["experiment"] is None and outside["metric"] is None
    with pytest.raises(TypeError, match="branch"):
        with monitoring.log_context(branch="control"):
            pass


def test_step_logs_and_queries_are_appended_once_per_table_and_exported(warehouse, store):
    warehouse.run_query("SELECT range AS x FROM range(1000)", "source_table")  # outside: not recorded
    with monitoring.collect(warehouse, store, ["exp-a", "exp-b"]) as m:
        logger.info("progress is not monitored", extra={"experiment": "exp-a"})
        logger.warning("metric dropped", extra={"experiment": "exp-a", "metric": "m1"})
        try:
            1 / 0
        except ZeroDivisionError:
            logger.error("statistic failed", exc_info=True,
                         extra={"experiment": "exp-a", "metric": "m1", "statistic": "mean"})
        logger.warning("ended", extra={"experiment": "exp-a", "exception_type": "EndedException"})
        logging.getLogger("unrelated").error("not ours", extra={"experiment": "exp-a"})
        result = warehouse.run_query("SELECT sum(x) AS s FROM mozanalysis.source_table", "target_table")
    assert m.problems == []
    # one part file per table for the step
    root = warehouse._dir("monitoring")
    assert len(list((root / "logs").glob("part-*.parquet"))) == 1
    assert len(list((root / "query_cost").glob("part-*.parquet"))) == 1

    logs = _logs(warehouse, "exp-a")
    assert logs["message"].tolist() == ["metric dropped", "statistic failed", "ended"]
    assert logs["log_level"].tolist() == ["WARNING", "ERROR", "WARNING"]
    assert logs["exception_type"].tolist()[1:] == ["ZeroDivisionError", "EndedException"]
    assert set(logs.columns) == set(LOG_COLUMNS)

    costs = warehouse.query("SELECT * FROM monitoring.query_cost")
    assert len(costs) == 1
    row = costs.iloc[0]
    assert row["destination_table"] == "mozanalysis.target_table"
    assert row["total_bytes_processed"] == result.bytes_processed > 0
    assert row["cost_usd"] == 0 and row["duration_seconds"] >= 0 and "sum(x)" in row["query"]

    # the errors export: this experiment's rows, validated, the expected skip left out
    exported = store.read_json(errors_path("exp-a"))
    AnalysisErrors.model_validate(exported)
    assert [e["message"] for e in exported] == ["metric dropped", "statistic failed"]
    assert exported[1]["metric"] == "m1" and exported[1]["exception_type"] == "ZeroDivisionError"
    # an experiment of the step that logged nothing gets an empty export (stale errors disappear)
    assert store.read_json(errors_path("exp-b")) == []


def test_errors_export_keeps_rows_of_the_current_run_and_weekly_cycle(warehouse, store):
    started = dt.datetime.now(dt.UTC)
    with monitoring.collect(warehouse, store, ["exp-a"], analysis_start_time=started):
        logger.error("first step", extra={"experiment": "exp-a"})
    # a later step of the same run keeps the first step's rows ...
    with monitoring.collect(warehouse, store, ["exp-a"], analysis_start_time=started):
        logger.error("second step", extra={"experiment": "exp-a"})
    assert [e["message"] for e in store.read_json(errors_path("exp-a"))] == ["first step", "second step"]
    # ... a run that starts later (no weekly cycle yet: enrollment just ended) starts a fresh export
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    with monitoring.collect(warehouse, store, ["exp-a"], analysis_start_time=later,
                            enrollment_end=lambda slug: later.date()):
        pass
    assert store.read_json(errors_path("exp-a")) == []
    # ... while a run within the weekly cycle that began before the first rows keeps them all
    week_start = started - dt.timedelta(days=1)
    with monitoring.collect(warehouse, store, ["exp-a"], analysis_start_time=later,
                            enrollment_end=lambda slug: (week_start - dt.timedelta(days=1)).date()):
        pass
    assert len(store.read_json(errors_path("exp-a"))) == 2


def test_exceptions_escaping_the_step_still_flush(warehouse, store):
    with pytest.raises(RuntimeError, match="step broke"):
        with monitoring.collect(warehouse, store, ["exp-a"]):
            logger.error("before the crash", extra={"experiment": "exp-a"})
            raise RuntimeError("step broke")
    assert _logs(warehouse, "exp-a")["message"].tolist() == ["before the crash"]
    assert store.read_json(errors_path("exp-a"))[0]["message"] == "before the crash"


class _BrokenWarehouse(LocalWarehouse):
    def append_rows(self, table, df, dataset=None):
        raise WarehouseError("disk full")


def test_monitoring_failures_are_reported_and_swallowed_not_recorded(tmp_path, store, caplog):
    broken = _BrokenWarehouse(root=str(tmp_path / "w"))
    caplog.set_level(logging.WARNING, logger="jetstream_monitoring")
    with monitoring.collect(broken, store, ["exp-a"]) as m:
        logger.error("analysis error", extra={"experiment": "exp-a"})
        value = 42  # the step's own work goes on and returns
    assert value == 42
    assert any("disk full" in p for p in m.problems) and "monitoring_problems" in m.metadata
    assert any("disk full" in r.getMessage() for r in caplog.records if r.name == "jetstream_monitoring")
    # only the analysis record was collected, not monitoring's own complaint
    assert [r["message"] for r in m.log_rows] == ["analysis error"]
    # no export was written without the step's rows
    assert not store.exists(errors_path("exp-a"))


def test_parallel_steps_in_threads_keep_their_own_rows(warehouse):
    barrier = threading.Barrier(2)
    collectors = {}

    def step(slug):
        with monitoring.collect(warehouse, None, [slug]) as m:
            barrier.wait()
            for i in range(20):
                logger.warning(f"{slug} {i}", extra={"experiment": slug})
            warehouse.run_query(f"SELECT '{slug}' AS s", f"t_{slug}")
            barrier.wait()
        collectors[slug] = m

    threads = [threading.Thread(target=step, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for slug in ("a", "b"):
        assert {r["experiment"] for r in collectors[slug].log_rows} == {slug}
        assert len(collectors[slug].log_rows) == 20
        assert [r["destination_table"] for r in collectors[slug].query_rows] == [f"mozanalysis.t_{slug}"]
    assert len(warehouse.query("SELECT * FROM monitoring.logs")) == 40


def _append_many(root: str, writer: int, times: int) -> None:
    w = LocalWarehouse(root=root)
    for i in range(times):
        w.append_rows("appended", pd.DataFrame({"writer": [writer] * 3, "i": [i] * 3}), "monitoring")


def test_concurrent_appends_from_processes_lose_no_rows_and_readers_see_whole_appends(warehouse):
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_append_many, args=(warehouse.root, n, 40)) for n in range(2)]
    for p in writers:
        p.start()
    seen = []
    while any(p.is_alive() for p in writers):  # read while they write: never half an append
        if warehouse.table_exists("appended", "monitoring"):
            seen.append(len(warehouse.read_table("appended", dataset="monitoring")))
    for p in writers:
        p.join()
        assert p.exitcode == 0
    assert all(n % 3 == 0 for n in seen) and seen == sorted(seen)
    rows = warehouse.read_table("appended", dataset="monitoring")
    assert len(rows) == 2 * 40 * 3
    assert rows.groupby("writer")["i"].nunique().tolist() == [40, 40]
    assert warehouse.list_tables(dataset="monitoring") == ["appended"]
    leftovers = [p.name for p in (warehouse._dir("monitoring") / "appended").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_append_only_and_replaced_tables_do_not_mix(warehouse):
    warehouse.write_dataframe(pd.DataFrame({"x": [1]}), "whole", dataset="monitoring")
    with pytest.raises(WarehouseError, match="monitoring.whole.*write_dataframe"):
        warehouse.append_rows("whole", pd.DataFrame({"x": [2]}), "monitoring")
    warehouse.append_rows("parts", pd.DataFrame({"x": [1]}), "monitoring")
    warehouse.append_rows("parts", pd.DataFrame({"x": [2], "y": ["new column"]}), "monitoring")
    both = warehouse.read_table("parts", dataset="monitoring").sort_values("x")
    assert both["x"].tolist() == [1, 2] and both["y"].isna().tolist() == [True, False]
    assert warehouse.table_columns("parts", "monitoring") == ["x", "y"]
    warehouse.delete_tables(["parts"], dataset="monitoring")
    assert not warehouse.table_exists("parts", "monitoring")
    assert warehouse.list_tables(dataset="monitoring") == ["whole"]
