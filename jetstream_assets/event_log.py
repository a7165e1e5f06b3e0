"""The event log of the local Dagster instance: Dagster's sqlite storage (one database per run plus an index
database, in `<DAGSTER_HOME>/history/runs/`, as by default), with its connections kept open.

Dagster's `SqliteEventLogStorage` creates an engine, opens a connection, commits and closes it for every event
it stores, and a run records several events per (experiment, date) cell (planned, materialized, its checks,
a log line): a rerun of one experiment spent a sixth of its time there. This storage keeps one engine and
connection per database (the most recently used ones) and sets `synchronous=NORMAL`, which in the WAL mode
Dagster already uses still never corrupts a database; only a power cut can lose the last events written.
The files and their schema are Dagster's own, so the UI, the daemon and the default storage read them alike.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as db
from dagster._config import StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.pool import NullPool, QueuePool

from jetstream_assets.sqlite_storage import create_database

OPEN_DATABASES = 8  # engines kept: the index, the run being written, and a few runs the UI reads


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage whose databases stay connected between events (see the module's docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

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
