"""Dry runs without data: each query compiled by DuckDB against empty tables derived from that query alone.

`validate-config --synthetic` needs no warehouse: a query is parsed once (BigQuery dialect), the tables it
reads get the columns and types its own SQL gives them (`synthetic_schemas`), those tables are created
empty in one in-memory DuckDB connection (with the `mozfun` macros the queries call, each created once),
and the query, transpiled to DuckDB, is bound there (`DESCRIBE`: names, types, functions; never planned or
run). A verdict therefore depends on the query alone, never on the other files validated in the same call,
and an identical query (the defaults every config shares) is compiled once.

Everything runs in the calling thread: DuckDB 2.0.1's Python `execute` keeps the GIL while it binds
(measured: a thread binding queries next to a thread running Python takes the sum of both), so a worker
thread would not overlap the two halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
from duckdb import sqltypes
import pyarrow as pa
from sqlglot import exp

from jetstream_assets.config import limits
from jetstream_assets.config.limits import Watchdog
from jetstream_assets.sql.mozfun import HIST_TYPE, macro_statement, macros_called
from jetstream_assets.sql.transpile import TranspileError, parse_bigquery, trees_to_duckdb
from jetstream_assets.validation.synthetic_schemas import Column, tree_schemas
from jetstream_assets.warehouse.errors import WarehouseError

#: a table the SQL reads without naming any column still needs columns to exist
_PLACEHOLDER = [pa.field("client_id", pa.string()), pa.field("submission_date", pa.date32())]


_DUCKDB_TYPES = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE", pa.timestamp("us"): "TIMESTAMP",
}


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duckdb_type(arrow: pa.DataType) -> str:
    """DuckDB's spelling of the Arrow types synthetic columns have (KeyError for any other)."""
    if pa.types.is_struct(arrow):
        return "STRUCT(" + ", ".join(f"{_quoted(f.name)} {_duckdb_type(f.type)}" for f in arrow) + ")"
    if pa.types.is_list(arrow):
        return f"{_duckdb_type(arrow.value_type)}[]"
    return _DUCKDB_TYPES[arrow]


#: the connection's settings, given at connect (no statement each)
_SETTINGS = {
    "threads": 1,
    # DuckDB 2 runs its optimizer on every statement, DESCRIBE and CREATE TABLE included (~5% of this
    # engine's DuckDB time), yet a plan that is never run needs no optimising, and the optimizer finds no
    # error binding did not (its constant folding leaves an expression that fails as it was)
    "enable_optimizer": False,
    # config SQL is untrusted and this engine needs no file: no file, URL or extension access, for good
    "enable_external_access": False,
    "lock_configuration": True,
}


def _never_called(histogram):  # pragma: no cover - queries are only bound, never run
    raise RuntimeError("the synthetic engine compiles queries; it never runs them")


@dataclass(frozen=True)
class _Compile:
    """The DuckDB half of one dry run: create the `tables` it reads that do not exist yet (name,
    columns as DuckDB SQL, Arrow schema), then bind `duck_sql`."""

    tables: tuple[tuple[str, str, pa.Schema], ...]
    duck_sql: str


class SyntheticEngine:
    """`dry_run(sql)` as a Warehouse's: raises WarehouseError when the query does not compile."""

    def __init__(self, exclude_datasets: tuple[str, ...] = ("mozanalysis",)) -> None:
        self.exclude = exclude_datasets
        self.con = duckdb.connect(":memory:", config=_SETTINGS)
        # nothing executes here: `hist.extract`, whose macro is the costliest to bind (dozens of calls per
        # histogram metrics query), is a function of the same signature (tested as a macro elsewhere)
        self.con.create_function(
            "mozfun_hist_extract", _never_called, [sqltypes.VARCHAR], self.con.sqltype(HIST_TYPE),
            null_handling="special",
        )
        self._names: dict[tuple[str, str, tuple], tuple[str, str, pa.Schema]] = {}
        self._created: set[str] = {"mozfun_hist_extract"}  # tables and macros made on the connection
        self._watchdog = Watchdog()

    def close(self) -> None:
        self._watchdog.close()
        self.con.close()

    def _table(self, dataset: str, table: str, columns: list[Column]) -> tuple[str, str, pa.Schema]:
        """(name, columns SQL, schema) of an empty table with these columns (one per distinct schema)."""
        key = (dataset, table, tuple((c.name, c.arrow) for c in columns))
        if key not in self._names:
            schema = pa.schema([pa.field(c.name, c.arrow) for c in columns] or _PLACEHOLDER)
            columns_sql = ", ".join(f"{_quoted(f.name)} {_duckdb_type(f.type)}" for f in schema)
            self._names[key] = (f"synthetic_{len(self._names)}", columns_sql, schema)
        return self._names[key]

    def prepare(self, sql: str) -> _Compile:
        """The Python half of a dry run: parse, derive the tables, write the DuckDB SQL (WarehouseError
        when the SQL does not parse or reads a table without a dataset)."""
        try:
            trees = parse_bigquery(sql)
        except TranspileError as e:
            raise WarehouseError(str(e)) from e
        tables = {key: self._table(*key, columns) for key, columns in tree_schemas(trees, self.exclude).items()}

        def resolve(project: str | None, dataset: str, table: str):
            if not dataset:
                return None
            found = tables.get((dataset, table))
            if found is None:
                raise WarehouseError(f"Table {dataset}.{table} does not exist in the local warehouse")
            return exp.Table(this=exp.to_identifier(found[0]))  # (`exp.to_table` would parse the name)

        try:
            duck_sql = trees_to_duckdb(trees, resolve)
        except TranspileError as e:
            raise WarehouseError(str(e)) from e
        return _Compile(tuple(tables.values()), duck_sql)

    def _compile(self, job: _Compile) -> None:
        """The DuckDB half: the tables and macros the query needs, then the binding."""
        for name in macros_called(job.duck_sql):
            if name not in self._created:
                self.con.execute(macro_statement(name))
                self._created.add(name)
        for name, columns_sql, schema in job.tables:
            if name in self._created:
                continue
            try:  # a table of DuckDB's own: a fifth of the cost of registering an Arrow table
                self.con.execute(f"CREATE TEMP TABLE {name} ({columns_sql})")
            except duckdb.Error:  # e.g. names equal but for case, which Arrow keeps apart
                self.con.register(name, schema.empty_table())
            self._created.add(name)
        seconds = limits.DRY_RUN_SECONDS
        try:  # binding is what finds the errors (names, types, functions): DESCRIBE binds the query and
            # stops there (PREPARE also plans it, flattening each correlated subquery: twice the time)
            with self._watchdog.guard(self.con, seconds) as interrupted:
                self._describe(job.duck_sql)
        except duckdb.Error as e:
            if interrupted.is_set():
                raise WarehouseError(f"Query does not compile within {seconds:g} s (interrupted)") from e
            raise WarehouseError(f"Query does not compile: {e}") from e

    def _describe(self, duck_sql: str) -> None:
        self.con.execute(f"DESCRIBE {duck_sql}").fetchall()

    def dry_run(self, sql: str) -> None:
        self._compile(self.prepare(sql))
