"""Dry runs without data: each query compiled by DuckDB against empty tables derived from that query alone.

`validate-config --synthetic` needs no warehouse: a query is parsed once (BigQuery dialect), the tables it
reads get the columns and types its own SQL gives them (`synthetic_schemas`), those tables are created
empty in one in-memory DuckDB connection (with the `mozfun` macros, created once), and the
query, transpiled to DuckDB, is bound there (`DESCRIBE`: names, types, functions; never planned or run). A
verdict therefore depends on the query alone, never on the other files validated in the same call, and an
identical query (the defaults every config shares) is compiled once.
"""

from __future__ import annotations

import duckdb
from duckdb import sqltypes
import pyarrow as pa
from sqlglot import exp

from jetstream_assets.config.limits import DRY_RUN_SECONDS, interrupt_after
from jetstream_assets.sql.mozfun import HIST_TYPE, macro_statements
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


def _never_called(histogram):  # pragma: no cover - queries are only bound, never run
    raise RuntimeError("the synthetic engine compiles queries; it never runs them")


class SyntheticEngine:
    """`dry_run(sql)` as a Warehouse's: raises WarehouseError when the query does not compile."""

    def __init__(self, exclude_datasets: tuple[str, ...] = ("mozanalysis",)) -> None:
        self.exclude = exclude_datasets
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET threads = 1")
        # nothing executes here: `hist.extract`, whose macro is the costliest to bind (dozens of calls per
        # histogram metrics query), is a function of the same signature (tested as a macro elsewhere)
        self.con.create_function(
            "mozfun_hist_extract", _never_called, [sqltypes.VARCHAR], self.con.sqltype(HIST_TYPE),
            null_handling="special",
        )
        for statement in macro_statements(skip=frozenset({"mozfun_hist_extract"})):
            self.con.execute(statement)
        # config SQL is untrusted and this engine needs no file: no file, URL or extension access, for good
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self._registered: dict[tuple[str, str, tuple], str] = {}

    def close(self) -> None:
        self.con.close()

    def _table(self, dataset: str, table: str, columns: list[Column]) -> str:
        """The name of an empty table with these columns (registered once per distinct schema)."""
        key = (dataset, table, tuple((c.name, c.arrow) for c in columns))
        if key not in self._registered:
            schema = pa.schema([pa.field(c.name, c.arrow) for c in columns] or _PLACEHOLDER)
            name = f"synthetic_{len(self._registered)}"
            columns_sql = ", ".join(f"{_quoted(f.name)} {_duckdb_type(f.type)}" for f in schema)
            try:  # a table of DuckDB's own: a fifth of the cost of registering an Arrow table
                self.con.execute(f"CREATE TEMP TABLE {name} ({columns_sql})")
            except (duckdb.Error, KeyError):  # e.g. names equal but for case, which Arrow keeps apart
                self.con.register(name, schema.empty_table())
            self._registered[key] = name
        return self._registered[key]

    def dry_run(self, sql: str) -> None:
        try:
            trees = parse_bigquery(sql)
        except TranspileError as e:
            raise WarehouseError(str(e)) from e
        names = {key: self._table(*key, columns) for key, columns in tree_schemas(trees, self.exclude).items()}

        def resolve(project: str | None, dataset: str, table: str):
            if not dataset:
                return None
            name = names.get((dataset, table))
            if name is None:
                raise WarehouseError(f"Table {dataset}.{table} does not exist in the local warehouse")
            return exp.Table(this=exp.to_identifier(name))  # (`exp.to_table` would parse the name)

        try:
            duck_sql = trees_to_duckdb(trees, resolve)
        except TranspileError as e:
            raise WarehouseError(str(e)) from e
        try:  # binding is what finds the errors (names, types, functions): DESCRIBE binds the query and
            # stops there (PREPARE also plans it, flattening each correlated subquery: twice the time)
            with interrupt_after(self.con, DRY_RUN_SECONDS) as interrupted:
                self.con.execute(f"DESCRIBE {duck_sql}").fetchall()
        except duckdb.Error as e:
            if interrupted.is_set():
                raise WarehouseError(f"Query does not compile within {DRY_RUN_SECONDS:g} s (interrupted)") from e
            raise WarehouseError(f"Query does not compile: {e}") from e
