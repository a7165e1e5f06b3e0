"""The warehouse interface every asset writes through: BigQuery-dialect SQL in, named tables out.

Assets never see the engine. Two implementations fit here: the embedded DuckDB + Parquet warehouse (the
default, `local.py`) and BigQuery in production. Table names are bare (`enrollments_my_exp`); the
warehouse places them in its results dataset (or, given `dataset`, another one such as the monitoring
dataset) and tells SQL how to reference them (`table_ref`).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from jetstream_assets.warehouse.errors import WarehouseError  # noqa: F401 - re-exported


@dataclass(frozen=True)
class QueryResult:
    """What a query did: the monitoring `query_cost` table is made of these."""

    destination: str | None
    rows: int
    bytes_processed: int
    seconds: float
    cost_usd: float = 0.0


# Told about every successful `run_query` of the current context (thread / task): monitoring sets it
# around an analysis step to fill the query_cost table. Receives (warehouse, sql, result, submitted at).
QueryListener = Callable[["Warehouse", str, QueryResult, dt.datetime], None]
query_listener: ContextVar[QueryListener | None] = ContextVar("jetstream_query_listener", default=None)


class Warehouse(dg.ConfigurableResource, ABC):
    """Runs BigQuery-dialect SQL into named tables of the results dataset and reads them back."""

    dataset: str = "mozanalysis"
    monitoring_dataset: str = "monitoring"

    @abstractmethod
    def table_ref(self, table: str, dataset: str | None = None) -> str:
        """How SQL refers to a table of the results dataset, or of `dataset` (e.g. `monitoring.logs`)."""

    def run_query(self, sql: str, destination: str | None = None) -> QueryResult:
        """Run SQL; with a destination, replace that results table with the result atomically.

        Every successful query is reported to the current `query_listener` (the step's query costs).
        """
        submitted = dt.datetime.now(dt.UTC)
        result = self._run_query(sql, destination)
        self._tell_listener(sql, result, submitted)
        return result

    def _tell_listener(self, sql: str, result: QueryResult, submitted: dt.datetime) -> None:
        listener = query_listener.get()
        if listener is not None:
            try:
                listener(self, sql, result, submitted)
            except Exception:  # monitoring never fails a query that succeeded
                logging.getLogger("jetstream_monitoring").warning("Query listener failed", exc_info=True)

    def run_query_split(
        self, sql: str, column: str, outputs: dict[int, tuple[str, list[str]]]
    ) -> tuple[QueryResult, dict[int, QueryResult]]:
        """Run SQL once and replace several tables with parts of its result: `outputs[v] = (table,
        columns)` gets the rows whose `column` is v, with those columns in that order. Returns the
        query's result and each table's. Every query is reported to the `query_listener`.

        This default stores the result in a scratch table of the results dataset, splits it with one
        query per table and deletes it; an engine can do better (the local one keeps it in memory)."""
        scratch = f"_scratch_{uuid.uuid4().hex[:16]}"
        scanned = self.run_query(sql, scratch)
        try:
            ref = self.table_ref(scratch)
            results = {
                value: self.run_query(
                    f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{ref}` WHERE {column} = {int(value)}",
                    table,
                )
                for value, (table, columns) in outputs.items()
            }
        finally:
            self.delete_tables([scratch])
        return scanned, results

    @abstractmethod
    def _run_query(self, sql: str, destination: str | None) -> QueryResult:
        """The engine's part of `run_query`."""

    @abstractmethod
    def dry_run(self, sql: str) -> None:
        """Check SQL without running it (BigQuery dry run, DuckDB EXPLAIN); raises WarehouseError."""

    @abstractmethod
    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL and return its result."""

    @abstractmethod
    def read_table(
        self, table: str, columns: list[str] | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        """A table or view (of the results dataset unless `dataset` is given) as a DataFrame."""

    @abstractmethod
    def write_dataframe(self, df: pd.DataFrame, table: str, dataset: str | None = None) -> None:
        """Replace a table (of the results dataset unless `dataset` is given) with a DataFrame atomically."""

    @abstractmethod
    def append_rows(self, table: str, df: pd.DataFrame, dataset: str | None = None) -> None:
        """Add rows to a table, creating it if needed; concurrent appends never lose rows and readers
        see each append whole or not at all (the monitoring tables are written this way)."""

    @abstractmethod
    def create_window_view(self, view: str, table_prefix: str) -> None:
        """A view over every `<table_prefix>_<n>` table with `window_index` = n (Jetstream's views)."""

    @abstractmethod
    def table_exists(self, table: str, dataset: str | None = None) -> bool: ...

    @abstractmethod
    def table_columns(self, table: str, dataset: str | None = None) -> list[str]: ...

    @abstractmethod
    def list_tables(self, prefix: str = "", dataset: str | None = None) -> list[str]:
        """Tables and views whose names start with prefix (results dataset unless `dataset` is given)."""

    @abstractmethod
    def delete_tables(self, tables: list[str], dataset: str | None = None) -> None: ...
