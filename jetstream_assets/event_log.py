"""The event log of the local Dagster instance: Dagster's sqlite storage (one database per run plus an index
database, in `<DAGSTER_HOME>/history/runs/`, as by default), with its connections kept open.

Dagster's `SqliteEventLogStorage` creates an engine, opens a connection, commits and closes it for every event
it stores, and a run records several events per (experiment, date) cell (planned, materialized, its checks,
a log line): a rerun of one experiment spent a sixth of its time there. This storage keeps one engine and
connection per database (the most recently used ones) and sets `synchronous=NORMAL`, which in the WAL mode
Dagster already uses still never corrupts a database; only a power cut can lose the last events written.
The events Dagster emits together (a run's planned events, a step's materializations of its range of cells)
are stored in one transaction per database (`store_event_batch`), and a new run's database is created as
`sqlite_storage.create_database` does. The files and their schema are Dagster's own, so the UI, the daemon
and the default storage read them alike.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as db
from dagster._config import StringSource
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.pool import NullPool, QueuePool

from jetstream_assets.sqlite_storage import create_database, remember_dagster_migrations

EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
BATCH_EVENTS = 1000  # events stored together at most
OPEN_DATABASES = 8  # engines kept: the index, the run being written, and a few runs the UI reads

remember_dagster_migrations()  # the processes that use this storage read Dagster's migrations once


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage whose databases stay connected between events (see the module's docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)
        # Dagster hands `store_event_batch` the events it emits together (a step's materializations of a
        # range of cells, a run's planned events) only when this is set; one event at a time otherwise.
        os.environ.setdefault(EVENT_BATCH_SIZE, str(BATCH_EVENTS))

    @classmethod
    def config_type(cls):
        return {"base_dir": StringSource}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        expected = os.path.join(os.path.realpath(instance.root_directory), "history", "runs")
        if os.path.realpath(self._base_dir) != expected:  # a home moved since its dagster.yaml was written
            raise ValueError(
                f"The dagster.yaml of {instance.root_directory} keeps its event log in {self._base_dir}, not in "
                f"{expected}: it was written for a home at another place. Run any `jetstream-assets` command "
                "with this home (e.g. `jetstream-assets run --home ...`) to rewrite it, or fix base_dir."
            )

    def has_table(self, table_name: str) -> bool:
        """Dagster asks before each check evaluation and partition change, with a new engine each time; a
        table once there stays (migrations only add tables)."""
        if table_name not in self._tables:
            if not super().has_table(table_name):
                return False
            self._tables.add(table_name)
        return True

    def _engine(self, shard: str) -> db.Engine:
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        db.event.listen(engine, "connect", _synchronous_normal)
        if shard not in self._initialized_dbs:
            if not create_database(Path(self.path_for_shard(shard)), self._create_shard):  # a new run's
                self._initdb(engine)  # an existing database: Dagster checks its schema is current
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def _create_shard(self, url: str) -> None:
        engine = db.create_engine(url, poolclass=NullPool)
        try:
            self._initdb(engine)
        finally:
            engine.dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:  # as Dagster's: one connection in use at a time, across threads
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store the events as `store_event` stores each (the same rows in the run's database and the index),
        in one transaction per database instead of one or two per event. Dagster stores a batch that fails
        again one event at a time, so its events are committed in both databases together, at the end (the
        rows of planned checks follow, written by Dagster's own code)."""
        if len({event.run_id for event in events}) != 1:
            super().store_event_batch(events)  # one event at a time
            return
        checks = []
        # an asset's row in the index holds what its latest event of a kind says: an event followed in the
        # batch by one of the same kind for the same asset would only be overwritten
        latest = {(e.dagster_event.asset_key, e.dagster_event_type): i
                  for i, e in enumerate(events) if e.is_dagster_event}
        with self._db_lock:
            with self._engine(events[0].run_id).connect() as run, self._engine(INDEX_SHARD_NAME).connect() as index:
                with run.begin(), index.begin():
                    for i, event in enumerate(events):
                        statement = self.prepare_insert_event(event)
                        run.execute(statement)
                        kind = event.dagster_event_type if event.is_dagster_event else None
                        if kind in ASSET_EVENTS:  # mirrored in the index, with the asset's tags and latest event
                            event_id = index.execute(statement).inserted_primary_key[0]
                            self._store_asset_event_tags(index, [event], [event_id])
                            if latest[(event.dagster_event.asset_key, kind)] == i:
                                self._store_asset_event(index, event, event_id)
                        if kind in ASSET_CHECK_EVENTS:
                            checks.append((event, index.execute(statement).inserted_primary_key[0]))
                        if kind in EVENT_TYPE_TO_PIPELINE_RUN_STATUS:
                            index.execute(statement)
        for event, event_id in checks:  # the check's execution row: Dagster's code, on its own connection
            self.store_asset_check_event(event, event_id)

    def wipe(self) -> None:
        self._close_all()
        self._tables = set()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _synchronous_normal(connection, _record) -> None:
    connection.execute("PRAGMA synchronous=NORMAL")
