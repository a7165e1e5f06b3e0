"""Creating the local Dagster instance's SQLite databases without a disk sync per statement.

Dagster creates each database of a new instance (`history/runs.db`, the event log's `history/runs/index.db`,
`schedules/schedules.db`) and of each new run (`history/runs/<run id>.db`) statement by statement: every
CREATE TABLE and CREATE INDEX is its own transaction, synced to disk before the next one starts. A new
instance took about 200 such statements (half a second to a second, depending on the disk), a new run about 30.

Here Dagster's own code still creates them (its schemas, alembic stamps and data-migration marks, nothing of
ours), but in a scratch place with `synchronous=OFF` (SQLite writes without waiting for the disk); the finished
files are synced once and then moved to where Dagster expects them, in one rename that either happens
completely or not at all. A crash during creation leaves only scratch files behind, never a half-written
database, and an instance or run database that already exists (another process was quicker) is kept.

Dagster also reads its alembic migration scripts (executing each of about a hundred files) every time it
checks or stamps a database's schema revision: a dozen times for a new instance and its first run, five times
for a run on an existing one. Those files do not change while a process runs, so the directory read the first
time serves the later checks (`remember_dagster_migrations`).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import alembic.command
import dagster._core.storage.sql as dagster_sql
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine

SCRATCH_PREFIX = ".creating-"
DAGSTER_MIGRATIONS = "dagster:"  # the script_location of Dagster's alembic migrations (package:folder)


@contextmanager
def unsynced_under(folder: Path) -> Iterator[None]:
    """While open, SQLite connections this process opens (through SQLAlchemy) to databases under `folder`
    do not sync to disk; connections to any other database are left alone."""
    prefix = os.path.join(os.path.realpath(folder), "")

    def on_connect(dbapi_connection, _record) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        if files and files[0] and os.path.realpath(files[0]).startswith(prefix):
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    event.listen(Engine, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Engine, "connect", on_connect)


def _sync(path: Path) -> None:
    """fsync a file or a folder (its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders that list them
        _sync(path)
    _sync(folder)


def create_instance_storage(dagster_home: Path) -> bool:
    """Create the databases of a new instance in `dagster_home` (runs, event log index, schedules) as Dagster
    would on first use; False (nothing done) when any of its storage folders exists already."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

    folders = ("history", "schedules")
    if any((dagster_home / name).exists() for name in folders):
        return False
    remember_dagster_migrations()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=dagster_home))
    try:
        with unsynced_under(scratch):
            runs = SqliteRunStorage.from_local(str(scratch / "history"))
            events = SqliteEventLogStorage(str(scratch / "history" / "runs"))
            schedules = SqliteScheduleStorage.from_local(str(scratch / "schedules"))
            for storage in (runs, events, schedules):
                storage.dispose()  # every connection closed: the WAL files are folded in and removed
        _sync_tree(scratch)
        for name in folders:
            try:
                os.rename(scratch / name, dagster_home / name)
            except OSError:  # created meanwhile by another process: theirs is kept
                pass
        _sync(dagster_home)
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def create_database(path: Path, initialize: Callable[[str], None]) -> bool:
    """Create the SQLite database `path` with `initialize(connection string)` (Dagster's schema creation)
    unsynced in a scratch file next to it, then put it in place unless `path` appeared meanwhile; False
    when it exists already."""
    if path.exists():
        return False
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=path.parent))
    try:
        with unsynced_under(scratch):
            initialize(f"sqlite:///{scratch / path.name}")
        for leftover in scratch.iterdir():
            if leftover.name != path.name:  # -wal/-shm of connections still open would mean a bug above
                raise RuntimeError(f"{leftover} was left open while creating {path}")
        _sync(scratch / path.name)
        try:
            os.link(scratch / path.name, path)  # fails if the database appeared meanwhile: that one is kept
        except FileExistsError:
            return False
        _sync(path.parent)
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _RememberedScripts(ScriptDirectory):
    """alembic's ScriptDirectory, read once per process for Dagster's own migrations (any other directory is
    read each time, as alembic does)."""

    _read: dict[str, ScriptDirectory] = {}
    _lock = threading.Lock()

    @classmethod
    def from_config(cls, config, *args, **kwargs) -> ScriptDirectory:
        location = config.get_main_option("script_location")
        if args or kwargs or not (location or "").startswith(DAGSTER_MIGRATIONS):
            return ScriptDirectory.from_config(config, *args, **kwargs)
        with cls._lock:
            if location not in cls._read:
                cls._read[location] = ScriptDirectory.from_config(config)
            return cls._read[location]


def remember_dagster_migrations() -> None:
    """Have Dagster's schema checks and stamps (`dagster._core.storage.sql`, `alembic.command`) read its
    migration scripts once per process."""
    dagster_sql.ScriptDirectory = _RememberedScripts
    alembic.command.ScriptDirectory = _RememberedScripts
