"""A new instance's and a new run's SQLite databases are created by Dagster's own code in a scratch folder
without a disk sync per statement, then moved into place: they hold exactly what Dagster's own creation
writes (schemas, alembic stamps, data-migration marks, WAL mode), the instance works (runs, partitions,
sensors' state), nothing is left in the scratch folders, and a database that exists already is kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

from jetstream_assets.event_log import PooledSqliteEventLogStorage
from jetstream_assets.instance import prepare_instance
from jetstream_assets.sqlite_storage import (
    SCRATCH_PREFIX,
    create_database,
    create_instance_storage,
    unsynced_under,
)

DATABASES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
TIMES = ("create_timestamp", "migration_completed", "update_timestamp", "timestamp")


def contents(path: Path) -> dict:
    """A database's schema, journal mode and rows (timestamps left out: they say when it was created)."""
    connection = sqlite3.connect(path)
    try:
        schema = sorted(connection.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        rows = {}
        for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            columns = [c[1] for c in connection.execute(f"PRAGMA table_info('{table}')") if c[1] not in TIMES]
            if columns:
                quoted = ", ".join(f'"{c}"' for c in columns)
                rows[table] = sorted(connection.execute(f"SELECT {quoted} FROM '{table}'"))
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
        return {"schema": schema, "rows": rows, "journal_mode": journal}
    finally:
        connection.close()


def dagsters_own(folder: Path) -> Path:
    """The databases Dagster's storages create by themselves on first use."""
    for storage in (SqliteRunStorage.from_local(str(folder / "history")),
                    SqliteEventLogStorage(str(folder / "history" / "runs")),
                    SqliteScheduleStorage.from_local(str(folder / "schedules"))):
        storage.dispose()
    return folder


@pytest.fixture
def fresh_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after; prepare_instance points it home
    monkeypatch.setenv("JETSTREAM_HOME", str(tmp_path))
    home = tmp_path / "home"
    instance = prepare_instance(home)
    yield home, instance
    instance.dispose()


def test_a_new_instance_holds_what_dagster_itself_creates(fresh_instance, tmp_path):
    home, instance = fresh_instance
    reference = dagsters_own(tmp_path / "reference")
    for name in DATABASES:
        ours, theirs = contents(home / "dagster" / name), contents(reference / name)
        assert ours["journal_mode"] == "wal"
        assert ours == theirs, name
    assert [p.name for p in (home / "dagster").rglob(f"{SCRATCH_PREFIX}*")] == []
    # Dagster finds nothing to create or migrate, and the instance works
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    instance.add_dynamic_partitions("experiments", ["demo-live"])
    assert instance.get_dynamic_partitions("experiments") == ["demo-live"]
    run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
    assert instance.get_run_by_id(run.run_id) is not None
    assert instance.schedule_storage.all_instigator_state() == []
    assert instance.run_storage.alembic_version() == instance.event_log_storage.alembic_version()


def test_a_new_runs_database_holds_what_dagster_itself_creates(fresh_instance, tmp_path):
    home, instance = fresh_instance
    storage = instance.event_log_storage
    with storage.run_connection("0123abcd"):
        pass
    reference = SqliteEventLogStorage(str(tmp_path / "reference"))
    with reference.run_connection("0123abcd"):
        pass
    runs = home / "dagster" / "history" / "runs"
    assert contents(runs / "0123abcd.db") == contents(tmp_path / "reference" / "0123abcd.db")
    assert [p.name for p in runs.iterdir() if p.name.startswith(SCRATCH_PREFIX)] == []


def test_an_existing_instance_is_kept(fresh_instance, monkeypatch):
    home, instance = fresh_instance
    dagster_home = home / "dagster"
    instance.add_dynamic_partitions("experiments", ["demo-live"])
    before = {name: (dagster_home / name).stat().st_ino for name in DATABASES}
    assert not create_instance_storage(dagster_home)
    again = prepare_instance(home)
    assert again.get_dynamic_partitions("experiments") == ["demo-live"]
    assert {name: (dagster_home / name).stat().st_ino for name in DATABASES} == before
    again.dispose()


def test_a_database_created_meanwhile_by_another_process_is_kept(tmp_path):
    target = tmp_path / "run.db"

    def initialize(url: str) -> None:  # another process finishes the same database first
        sqlite3.connect(target).execute("CREATE TABLE theirs (x)").connection.commit()
        sqlite3.connect(url.removeprefix("sqlite:///")).execute("CREATE TABLE ours (x)").connection.commit()

    assert not create_database(target, initialize)
    assert [r[0] for r in sqlite3.connect(target).execute("SELECT name FROM sqlite_master")] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.db"]
    assert not create_database(target, initialize)  # and one that exists is not created again


def test_only_databases_in_the_scratch_folder_skip_the_disk_sync(tmp_path):
    import sqlalchemy as sa

    (tmp_path / "scratch").mkdir()

    def synchronous(path: Path) -> int:
        engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            return connection.exec_driver_sql("PRAGMA synchronous").scalar()

    with unsynced_under(tmp_path / "scratch"):
        assert synchronous(tmp_path / "scratch" / "a.db") == 0  # OFF
        assert synchronous(tmp_path / "b.db") == 2  # FULL, SQLite's default
    assert synchronous(tmp_path / "scratch" / "a.db") == 2


def test_schemas_are_created_unsynced_in_a_scratch_folder_only(tmp_path, monkeypatch):
    """Every CREATE statement of a new instance and of a new run's database runs on a scratch database that
    does not sync to disk (Dagster alone runs each one on the final file, synced: ~200 disk syncs)."""
    import sqlalchemy as sa

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("JETSTREAM_HOME", str(tmp_path))
    created = []  # (database file, synchronous setting) of each CREATE statement

    def listener(_connection, cursor, statement, *_args):
        if statement.lstrip().upper().startswith("CREATE"):
            dbapi = cursor.connection
            path = next(row[2] for row in dbapi.execute("PRAGMA database_list") if row[1] == "main")
            created.append((path, dbapi.execute("PRAGMA synchronous").fetchone()[0]))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listener)
    try:
        instance = prepare_instance(tmp_path / "home")
        with instance.event_log_storage.run_connection("0123abcd"):
            pass
        instance.dispose()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listener)
    files = {Path(path).name for path, _ in created}
    assert files == {"runs.db", "index.db", "schedules.db", "0123abcd.db"}
    assert all(f"/{SCRATCH_PREFIX}" in path and synchronous == 0 for path, synchronous in created), created


def test_dagsters_migration_scripts_are_read_once_per_process(tmp_path, monkeypatch):
    """Dagster reads its ~100 alembic migration scripts for every schema check and stamp (a dozen times for a
    new instance and its first run); they are read once per process, and any other scripts as alembic does."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from jetstream_assets import sqlite_storage

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("JETSTREAM_HOME", str(tmp_path))
    reads = []
    read = ScriptDirectory.from_config.__func__

    def counted(cls, config, *args, **kwargs):
        reads.append(config.get_main_option("script_location"))
        return read(cls, config, *args, **kwargs)

    monkeypatch.setattr(ScriptDirectory, "from_config", classmethod(counted))
    monkeypatch.setattr(sqlite_storage._RememberedScripts, "_read", {})
    for name in ("home", "other-home"):
        instance = prepare_instance(tmp_path / name)
        with instance.event_log_storage.run_connection("0123abcd"):
            pass
        instance.dispose()
    assert reads == ["dagster:_core/storage/alembic"]

    mine = Config()
    mine.set_main_option("script_location", str(tmp_path / "migrations"))
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    reads.clear()
    first, second = (sqlite_storage._RememberedScripts.from_config(mine) for _ in range(2))
    assert first is not second and len(reads) == 2
