"""The embedded warehouse: DuckDB as the engine, every table a Parquet file.

Layout: `<root>/<dataset>/<table>.parquet`; a Jetstream view is `<root>/<dataset>/<view>.view.json`;
an append-only table (the monitoring logs and query costs) is a folder of part files
`<root>/<dataset>/<table>/part-<time>-<uuid>.parquet`, one per append, read together.
Queries run on one in-memory DuckDB connection per process and thread (opened, configured and given
the `mozfun` macros once, not per query) and each table (or part) is written to a temporary file beside
it and renamed, so parallel runs and readers never see half a table, never lose each other's
appends and never wait on a database lock. References to `project.dataset.table` ignore the project:
locally there is one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import Field

from jetstream_assets.config.limits import DRY_RUN_SECONDS, interrupt_after
from jetstream_assets.sql.mozfun import macro_statements
from jetstream_assets.sql.transpile import TranspileError, to_duckdb
from jetstream_assets.warehouse.base import QueryResult, Warehouse, WarehouseError

_VIEW_SUFFIX = ".view.json"
_PART = re.compile(r"part-[0-9]+-[0-9a-f]+\.parquet")
# how tables are written: zstd at level 1 with Parquet 2's encodings writes the shared scan's per-window
# tables of the demo rerun with 0.64x the CPU of zstd's default level 3 and Parquet 1 (0.68 s against 1.07 s
# for 54 tables, 1.45 M rows), into files of about the same size (+0.4%); pyarrow and DuckDB read both
_PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARQUET_VERSION V2"


# (pid, root, threads, memory_limit) -> connection, per thread: DuckDB connections are not to be shared
# between threads, and a forked child must not reuse its parent's.
_connections = threading.local()
SCAN_LOG = "JETSTREAM_SCAN_LOG"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def confine(con: duckdb.DuckDBPyConnection, home: str | Path) -> duckdb.DuckDBPyConnection:
    """Let `con` read and write files only under `home`, for good.

    Defence in depth behind the SQL check of config SQL (`jetstream_assets.sql.safety`): with external
    access off, `read_text('/etc/passwd')`, `COPY ... TO '/tmp/x'`, `ATTACH`, `INSTALL` and URLs fail
    with a permission error, and `lock_configuration` stops SQL from switching it back on. Set the
    temp_directory (inside `home`) before: it is allowed too."""
    folders = {os.path.abspath(home), os.path.realpath(home)}
    listed = ", ".join(_sql_string(f.rstrip(os.sep) + os.sep) for f in sorted(folders))
    con.execute(f"SET allowed_directories = [{listed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def close_connections() -> None:
    """Close this thread's DuckDB connections (their temporary files go with them); the next query opens
    new ones. The CLI calls it before its quick exit, which skips the interpreter's own teardown."""
    for con in getattr(_connections, "by_key", {}).values():
        try:
            con.close()
        except duckdb.Error:
            pass
    _connections.by_key = {}


class LocalWarehouse(Warehouse):
    """DuckDB over Parquet files under `root`; the default engine of the demo and the tests."""

    root: str = Field(description="Folder holding <dataset>/<table>.parquet files.")
    threads: int = Field(default=2, description="DuckDB threads per query.")
    memory_limit: str = Field(default="8GB", description="DuckDB memory limit per query.")

    # -- locations -------------------------------------------------------------------------------
    def _dir(self, dataset: str | None = None) -> Path:
        return Path(self.root) / (dataset or self.dataset)

    def table_path(self, table: str, dataset: str | None = None) -> Path:
        return self._dir(dataset) / f"{table}.parquet"

    def _view_path(self, view: str, dataset: str | None = None) -> Path:
        return self._dir(dataset) / f"{view}{_VIEW_SUFFIX}"

    def _parts_dir(self, table: str, dataset: str | None = None) -> Path:
        return self._dir(dataset) / table

    def _parts(self, table: str, dataset: str | None = None) -> list[Path]:
        """The part files of an append-only table, oldest first; temporary files never match."""
        folder = self._parts_dir(table, dataset)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _PART.fullmatch(p.name))

    def table_ref(self, table: str, dataset: str | None = None) -> str:
        return f"{dataset or self.dataset}.{table}"

    # -- engine ----------------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        con.execute(f"SET threads = {int(self.threads)}")
        con.execute(f"SET memory_limit = {_sql_string(self.memory_limit)}")
        con.execute("SET preserve_insertion_order = false")
        tmp = Path(self.root) / ".duckdb_tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {_sql_string(str(tmp))}")
        if os.environ.get(SCAN_LOG):  # before `confine` locks the configuration
            con.execute("SET enable_profiling = 'json'")
            con.execute("SET profiling_coverage = 'ALL'")
            con.execute(f"SET profiling_output = {_sql_string(str(self._profile_path()))}")
        confine(con, self.root)
        for statement in macro_statements():
            con.execute(statement)
        return con

    def _connection_key(self) -> tuple:
        return (os.getpid(), str(Path(self.root).absolute()), int(self.threads), self.memory_limit,
                bool(os.environ.get(SCAN_LOG)))

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection for this warehouse, made by `_connect` the first time."""
        cache = getattr(_connections, "by_key", None)
        if cache is None:
            cache = _connections.by_key = {}
        key = self._connection_key()
        con = cache.get(key)
        if con is None:
            con = cache[key] = self._connect()
        return con

    def _profile_path(self) -> Path:
        return Path(self.root) / ".duckdb_tmp" / f"profile-{os.getpid()}-{threading.get_ident()}.json"

    def _log_scans(self, destination: str | None) -> None:
        """With JETSTREAM_SCAN_LOG set (benchmarks), append the Parquet row groups each query read per file
        (DuckDB's profile of the query) to that JSON-lines file. Row groups, not DuckDB's `rows_scanned`:
        that counts rows left after pushed-down filters, while a row group is read whole."""
        path = self._profile_path()
        try:
            profile = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        scans: dict[str, int] = {}

        def walk(node: dict) -> None:
            if node.get("type") == "TABLE_SCAN":
                files = str(node.get("extra_info", {}).get("Filename(s)", ""))
                scans[files] = scans.get(files, 0) + int(node.get("row_groups_scanned", 0))
            for child in node.get("children", []):
                walk(child)

        for node in profile.get("operator", []):
            walk(node)
        with open(os.environ[SCAN_LOG], "a") as log:
            log.write(json.dumps({"destination": destination, "row_groups": scans}) + "\n")

    def _discard_connection(self) -> None:
        """Forget this thread's connection after an engine error (it may be invalidated); the next query
        opens a new one."""
        con = getattr(_connections, "by_key", {}).pop(self._connection_key(), None)
        if con is not None:
            try:
                con.close()
            except duckdb.Error:
                pass

    def _source_select(self, dataset: str, table: str, read: list[Path]) -> str:
        """SELECT reading a stored table or a window view; records the files it reads."""
        path = self.table_path(table, dataset)
        if path.exists():
            read.append(path)
            return f"SELECT * FROM read_parquet({_sql_string(str(path))})"
        view = self._view_path(table, dataset)
        if view.exists():
            spec = json.loads(view.read_text())
            files = self._window_tables(spec["prefix"], dataset)
            if not files:
                raise WarehouseError(
                    f"View {dataset}.{table} has no tables yet (none named {spec['prefix']}_<n>)."
                )
            read.extend(files.values())
            paths = ", ".join(_sql_string(str(p)) for p in files.values())
            return (
                f"SELECT * EXCLUDE (filename), CAST(regexp_extract(filename, '_([0-9]+)[.]parquet$', 1) "
                f"AS BIGINT) AS window_index FROM read_parquet([{paths}], union_by_name = true, "
                f"filename = true)"
            )
        parts = self._parts(table, dataset)
        if parts:  # the parts listed now are the table as of this query: later appends are not half-seen
            read.extend(parts)
            paths = ", ".join(_sql_string(str(p)) for p in parts)
            return f"SELECT * FROM read_parquet([{paths}], union_by_name = true)"
        raise WarehouseError(
            f"Table {dataset}.{table} does not exist in the local warehouse ({self._dir(dataset)}). "
            f"Generate the telemetry (`jetstream-assets demo`) or materialize the upstream asset first."
        )

    def _window_tables(self, prefix: str, dataset: str | None = None) -> dict[int, Path]:
        pattern = re.compile(re.escape(prefix) + r"_([0-9]+)\.parquet$")
        found = {}
        folder = self._dir(dataset)
        if folder.exists():
            for p in folder.iterdir():
                m = pattern.fullmatch(p.name)
                if m:
                    found[int(m.group(1))] = p
        return dict(sorted(found.items()))

    def _translate(self, sql: str) -> tuple[str, list[Path]]:
        read: list[Path] = []

        def resolve(project: str | None, dataset: str, table: str):
            if not dataset:
                return None
            return self._source_select(dataset, table, read)

        try:
            return to_duckdb(sql, resolve), read
        except TranspileError as e:
            raise WarehouseError(str(e)) from e

    def _execute(self, sql: str, destination: str | None):
        duck_sql, read = self._translate(sql)
        started = time.monotonic()
        con = self._connection()
        try:
            if destination is None:
                df = con.execute(duck_sql).df()
                rows = len(df)
            else:
                df = None
                rows = self._copy_to_table(con, duck_sql, destination)
            if os.environ.get(SCAN_LOG):
                self._log_scans(destination)
        except duckdb.Error as e:
            self._discard_connection()
            where = f" writing {self.table_ref(destination)}" if destination else ""
            raise WarehouseError(f"Query failed{where}: {e}") from e
        result = QueryResult(
            destination=destination,
            rows=int(rows),
            bytes_processed=sum(p.stat().st_size for p in read if p.exists()),
            seconds=time.monotonic() - started,
        )
        return result, df

    def run_query_split(
        self, sql: str, column: str, outputs: dict[int, tuple[str, list[str]]]
    ) -> tuple[QueryResult, dict[int, QueryResult]]:
        """The result is kept in a DuckDB table of this thread's in-memory database (spilling to the temp
        directory when large) instead of a Parquet file written and read back, and the tables are written
        from it by `threads` cursors at once (a table's write is mostly single-threaded)."""
        submitted = dt.datetime.now(dt.UTC)
        duck_sql, read = self._translate(sql)
        started = time.monotonic()
        con = self._connection()
        scratch = f"_scan_{uuid.uuid4().hex}"
        # only the columns some table takes are kept (the query's helper columns are not computed)
        kept = ", ".join(map(_identifier, dict.fromkeys([c for _, cs in outputs.values() for c in cs] + [column])))
        try:
            con.execute(f"CREATE TABLE {scratch} AS SELECT {kept} FROM ({duck_sql})")
            if os.environ.get(SCAN_LOG):
                self._log_scans(None)
            rows = con.execute(f"SELECT count(*) FROM {scratch}").fetchone()[0]
            scanned = QueryResult(None, int(rows), sum(p.stat().st_size for p in read if p.exists()),
                                  time.monotonic() - started)
            self._tell_listener(sql, scanned, submitted)
            selected = {value: ", ".join(map(_identifier, columns)) for value, (_, columns) in outputs.items()}
            written = self._write_selects(con, {
                value: (table, f"SELECT {selected[value]} FROM {scratch} WHERE {column} = {int(value)}")
                for value, (table, _) in outputs.items()
            })
        except duckdb.Error as e:
            self._discard_connection()
            raise WarehouseError(f"Query failed writing {len(outputs)} tables split by {column}: {e}") from e
        except OSError as e:  # a table that cannot be replaced: the caller falls back to one query per table
            raise WarehouseError(f"Query could not write one of {len(outputs)} tables split by {column}: {e}") from e
        finally:
            try:
                con.execute(f"DROP TABLE IF EXISTS {scratch}")
            except duckdb.Error:
                pass
        results = {}
        for value, (result, at) in written.items():
            results[value] = result
            self._tell_listener(f"-- split of the query above\nSELECT {selected[value]} WHERE {column} = {value}",
                                result, at)
        return scanned, results

    def _write_selects(self, con: duckdb.DuckDBPyConnection, selects: dict[int, tuple[str, str]]
                       ) -> dict[int, tuple[QueryResult, dt.datetime]]:
        """Write each (table, SELECT) of `selects`, each table to a temporary file then renamed, from up to
        `threads` cursors of `con` at once; (result, submitted at) per key. Raises the first failure."""
        keys = list(selects)
        workers = max(1, min(int(self.threads), len(keys)))

        def write(share: list[int]) -> dict[int, tuple[QueryResult, dt.datetime]]:
            done = {}
            cursor = con.cursor()
            try:
                for key in share:
                    table, select = selects[key]
                    submitted, started = dt.datetime.now(dt.UTC), time.monotonic()
                    rows = self._copy_to_table(cursor, select, table)
                    done[key] = (QueryResult(table, int(rows), 0, time.monotonic() - started), submitted)
            finally:
                cursor.close()
            return done

        shares = [keys[i::workers] for i in range(workers)]
        if workers == 1:
            return write(shares[0])
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(write, share) for share in shares]
        out: dict[int, tuple[QueryResult, dt.datetime]] = {}
        for future in futures:  # every share has finished; the first failure is raised
            out.update(future.result())
        return {key: out[key] for key in keys}

    def _copy_to_table(self, con: duckdb.DuckDBPyConnection, select: str, table: str) -> int:
        """Write the rows of `select` as `table`: to a temporary file, renamed over the table's file once
        complete (never a half-written table); the number of rows written."""
        target = self.table_path(table)
        tmp = self._tmp_path(target)
        try:
            # COPY answers with the number of rows written
            rows = con.execute(f"COPY ({select}) TO {_sql_string(str(tmp))} ({_PARQUET})").fetchone()[0]
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return int(rows)

    def _tmp_path(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f".{target.stem}.{uuid.uuid4().hex}.tmp"

    # -- interface -------------------------------------------------------------------------------
    def _run_query(self, sql: str, destination: str | None) -> QueryResult:
        return self._execute(sql, destination)[0]

    def query(self, sql: str) -> pd.DataFrame:
        return self._execute(sql, None)[1]

    def dry_run(self, sql: str) -> None:
        duck_sql, _ = self._translate(sql)
        con = self._connection()
        try:
            with interrupt_after(con, DRY_RUN_SECONDS) as interrupted:
                con.execute(f"EXPLAIN {duck_sql}")
        except duckdb.Error as e:
            self._discard_connection()
            if interrupted.is_set():
                raise WarehouseError(f"Query does not compile within {DRY_RUN_SECONDS:g} s (interrupted)") from e
            raise WarehouseError(f"Query does not compile: {e}") from e

    def read_table(
        self, table: str, columns: list[str] | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        cols = ", ".join(f"`{c}`" for c in columns) if columns else "*"
        return self.query(f"SELECT {cols} FROM `{self.table_ref(table, dataset)}`")

    def _write_frame(self, df: pd.DataFrame, target: Path, tmp: Path) -> None:
        con = self._connection()
        name = f"frame_{uuid.uuid4().hex}"
        try:
            con.register(name, df)
            try:
                con.execute(f"COPY {name} TO {_sql_string(str(tmp))} ({_PARQUET})")
            finally:
                con.unregister(name)
            os.replace(tmp, target)
        except duckdb.Error as e:
            self._discard_connection()
            raise WarehouseError(f"Cannot write {target}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)

    def write_dataframe(self, df: pd.DataFrame, table: str, dataset: str | None = None) -> None:
        target = self.table_path(table, dataset)
        self._write_frame(df, target, self._tmp_path(target))

    def append_rows(self, table: str, df: pd.DataFrame, dataset: str | None = None) -> None:
        if self.table_path(table, dataset).exists() or self._view_path(table, dataset).exists():
            raise WarehouseError(
                f"Cannot append to {self.table_ref(table, dataset)}: it is a replaced-whole table or view, "
                "not an append-only one; write it with write_dataframe or pick another table name."
            )
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
        target = self._parts_dir(table, dataset) / name
        self._write_frame(df, target, self._tmp_path(target))

    def create_window_view(self, view: str, table_prefix: str) -> None:
        path = self._view_path(view)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_path(path)
        tmp.write_text(json.dumps({"kind": "windows", "prefix": table_prefix}))
        os.replace(tmp, path)

    def table_exists(self, table: str, dataset: str | None = None) -> bool:
        return (
            self.table_path(table, dataset).exists()
            or self._view_path(table, dataset).exists()
            or bool(self._parts(table, dataset))
        )

    def table_columns(self, table: str, dataset: str | None = None) -> list[str]:
        if not self.table_exists(table, dataset):
            return []
        read: list[Path] = []
        select = self._source_select(dataset or self.dataset, table, read)
        try:
            return [d[0] for d in self._connection().execute(f"DESCRIBE {select}").fetchall()]
        except duckdb.Error as e:
            self._discard_connection()
            raise WarehouseError(f"Cannot read the columns of {self.table_ref(table, dataset)}: {e}") from e

    def list_tables(self, prefix: str = "", dataset: str | None = None) -> list[str]:
        folder = self._dir(dataset)
        if not folder.exists():
            return []
        names = []
        for p in folder.iterdir():
            if p.name.startswith("."):
                continue
            if p.name.endswith(".parquet"):
                names.append(p.name[: -len(".parquet")])
            elif p.name.endswith(_VIEW_SUFFIX):
                names.append(p.name[: -len(_VIEW_SUFFIX)])
            elif p.is_dir() and self._parts(p.name, dataset):
                names.append(p.name)
        return sorted(n for n in names if n.startswith(prefix))

    def delete_tables(self, tables: list[str], dataset: str | None = None) -> None:
        for table in tables:
            self.table_path(table, dataset).unlink(missing_ok=True)
            self._view_path(table, dataset).unlink(missing_ok=True)
            if self._parts(table, dataset):
                shutil.rmtree(self._parts_dir(table, dataset), ignore_errors=True)
