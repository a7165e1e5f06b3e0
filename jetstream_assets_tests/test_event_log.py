"""The home's Dagster instance keeps its event log databases connected between events (instead of a new
connection per event), records exactly what the default storage would (one materialization and one check
evaluation per cell), in files Dagster's own storage reads, and refuses a dagster.yaml written for another
home rather than writing the events elsewhere."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.events import BATCH_WRITABLE_EVENTS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from jetstream_assets.event_log import PooledSqliteEventLogStorage
from jetstream_assets.partitions import cell_key
from jetstream_assets.runner import prepare_instance, run_experiment
from jetstream_assets.sqlite_storage import SCRATCH_PREFIX
from jetstream_assets_tests.worlds import build_world

SLUG = "demo-live"
DATES = [dt.date(2026, 11, 15), dt.date(2026, 11, 16)]
ANALYSIS = ("analysis_plan", "enrollments", "metrics", "statistics", "metadata_export", "statistics_export")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("event-log") / "home", clients=500) as world:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_HOME", str(world.home / "dagster"))  # prepare_instance points it home
            mp.setenv("JETSTREAM_HOME", str(world.home))
            instance = prepare_instance(world.home)
            connections = Counter()  # database file -> connections opened to it

            def listener(dbapi_connection, record):
                [(_, _, path)] = dbapi_connection.execute("PRAGMA database_list").fetchall()
                connections[path] += 1

            batches = []  # the events Dagster handed the storage together, by type
            store_batch = PooledSqliteEventLogStorage.store_event_batch

            def spy(storage, events):
                batches.append(Counter(e.dagster_event_type.value for e in events))
                store_batch(storage, events)

            mp.setattr(PooledSqliteEventLogStorage, "store_event_batch", spy)
            sa.event.listen(sa.pool.Pool, "connect", listener)
            try:
                summary = run_experiment(instance, world.defs, SLUG, DATES)
            finally:
                sa.event.remove(sa.pool.Pool, "connect", listener)
            world.extra["batches"] = batches
            yield world, instance, summary, connections


def _events(storage, run_id: str, kind: dg.DagsterEventType) -> list:
    return [r.event_log_entry for r in storage.get_records_for_run(run_id, of_type=kind).records]


def test_the_instance_stores_events_through_a_few_kept_connections(run):
    world, instance, summary, connections = run
    assert summary.success, summary.errors
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    stored = len(instance.event_log_storage.get_records_for_run(summary.run_id).records)
    assert stored > 50
    # Dagster's storage opens a connection per event (two for an asset event): ~100 here. This one opens a
    # connection per database, and a few more while it creates or checks the database's tables (the index
    # also holds the experiment locks' concurrency tables, checked once each).
    # (the run's database is created in a scratch folder next to it, then moved in: sqlite_storage.py)
    creating = {path: n for path, n in connections.items() if f"/{SCRATCH_PREFIX}" in path}
    assert {p.rsplit("/", 1)[-1] for p in creating} == {f"{summary.run_id}.db"}
    assert sum(creating.values()) <= 5, creating
    event_log = {path: n for path, n in connections.items() if "/history/runs/" in path and path not in creating}
    assert {p.rsplit("/", 1)[-1] for p in event_log} == {"index.db", f"{summary.run_id}.db"}
    assert max(event_log.values()) <= 5, event_log
    assert sum(event_log.values()) * 10 < stored, (event_log, stored)


def test_every_cell_keeps_its_materialization_and_checks_readable_by_dagsters_own_storage(run):
    world, instance, summary, _ = run
    default = SqliteEventLogStorage(str(world.home / "dagster" / "history" / "runs"))
    for storage in (instance.event_log_storage, default):
        materialized = Counter(
            (e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition)
            for e in _events(storage, summary.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION)
        )
        cells = {str(cell_key(SLUG, d)) for d in DATES}
        assert materialized == Counter({(a, c): 1 for a in ANALYSIS for c in cells})
        checked = Counter(
            (e.dagster_event.event_specific_data.asset_key.to_user_string(),
             e.dagster_event.event_specific_data.check_name, e.dagster_event.event_specific_data.partition)
            for e in _events(storage, summary.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        assert checked and set(checked.values()) == {1}
        assert {partition for _, _, partition in checked} == cells
    # the cross-run index (what the UI's partition views read) has every cell too
    for asset in ANALYSIS:
        partitions = default.get_materialized_partitions(dg.AssetKey(asset))
        assert partitions >= {str(cell_key(SLUG, d)) for d in DATES}


def test_a_dagster_yaml_written_for_another_home_is_refused(run, tmp_path, monkeypatch):
    world, *_ = run
    moved = tmp_path / "moved"
    shutil.copytree(world.home / "dagster", moved / "dagster")
    with pytest.raises(ValueError, match="written for a home at another place"):
        dg.DagsterInstance.from_config(str(moved / "dagster"))
    monkeypatch.setenv("DAGSTER_HOME", str(moved / "dagster"))
    monkeypatch.setenv("JETSTREAM_HOME", str(moved))
    instance = prepare_instance(moved)  # any command with the home rewrites it
    assert instance.event_log_storage._base_dir == str(moved / "dagster" / "history" / "runs")


def test_events_dagster_emits_together_are_stored_together(run):
    """A run's planned events, and each step's materializations of its cells, reach the storage as one batch
    (stored in one transaction per database instead of one or two per event)."""
    world, instance, summary, _ = run
    cells = len(DATES)
    planned, *steps = world.extra["batches"]
    assert planned["ASSET_MATERIALIZATION_PLANNED"] == cells * len(ANALYSIS)
    assert set(planned) == {"ASSET_MATERIALIZATION_PLANNED", "ASSET_CHECK_EVALUATION_PLANNED"}
    assert steps == [Counter({"ASSET_MATERIALIZATION": cells})] * len(ANALYSIS)


def _rows(path, table: str, columns: str) -> list:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()
    finally:
        connection.close()


def test_a_batch_stores_the_rows_one_event_at_a_time_stores(run, tmp_path):
    world, instance, summary, _ = run
    events = [r.event_log_entry for r in instance.event_log_storage.get_records_for_run(summary.run_id).records]
    together = [e for e in events if e.is_dagster_event and e.dagster_event_type in BATCH_WRITABLE_EVENTS]
    assert {e.dagster_event_type for e in together} >= {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                                        dg.DagsterEventType.ASSET_MATERIALIZATION}
    stores = {}
    for way in ("one_by_one", "batch"):
        storage = PooledSqliteEventLogStorage(str(tmp_path / way))
        if way == "batch":
            storage.store_event_batch(together)
        else:
            for event in together:
                storage.store_event(event)
        storage.dispose()
        stores[way] = tmp_path / way
    one, batch = stores["one_by_one"], stores["batch"]
    tables = {  # database -> table -> columns compared (ids and timestamps are the storage's own)
        f"{summary.run_id}.db": {"event_logs": "event, dagster_event_type, asset_key, partition, step_key"},
        "index.db": {
            "event_logs": "id, event, dagster_event_type, asset_key, partition",
            "asset_keys": "asset_key, last_materialization, last_run_id, last_materialization_timestamp, "
                          "cached_status_data",
            "asset_event_tags": "event_id, asset_key, key, value",
            "asset_check_executions": "asset_key, check_name, partition, run_id, execution_status, "
                                      "evaluation_event, evaluation_event_storage_id",
        },
    }
    for database, columns_of in tables.items():
        for table, columns in columns_of.items():
            assert _rows(batch / database, table, columns) == _rows(one / database, table, columns), table
    assert _rows(batch / "index.db", "asset_keys", "asset_key")  # not two empty tables
