"""The warehouse interface every asset writes through: BigQuery-dialect SQL in, named tables out.

Assets never see the engine. Two implementations fit here: the embedded DuckDB + Parquet warehouse (the
default, `local.py`) and BigQuery in production. Table names are bare (`enrollments_my_exp`); the
warehouse places them in its results dataset and tells SQL how to reference them (`table_ref`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import dagster as dg
import pandas as pd


@dataclass(frozen=True)
class QueryResult:
    """What a query did: the monitoring `query_cost` table is made of these."""

    destination: str | None
    rows: int
    bytes_processed: int
    seconds: float
    cost_usd: float = 0.0


class WarehouseError(RuntimeError):
    """A query or table operation failed; the message names the table and the engine's reason."""


class Warehouse(dg.ConfigurableResource, ABC):
    """Runs BigQuery-dialect SQL into named tables of the results dataset and reads them back."""

    dataset: str = "mozanalysis"

    @abstractmethod
    def table_ref(self, table: str) -> str:
        """How SQL refers to a results table (e.g. `mozanalysis.enrollments_x` or `proj.ds.x`)."""

    @abstractmethod
    def run_query(self, sql: str, destination: str | None = None) -> QueryResult:
        """Run SQL; with a destination, replace that results table with the result atomically."""

    @abstractmethod
    def dry_run(self, sql: str) -> None:
        """Check SQL without running it (BigQuery dry run, DuckDB EXPLAIN); raises WarehouseError."""

    @abstractmethod
    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL and return its result."""

    @abstractmethod
    def read_table(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A results table or view as a DataFrame."""

    @abstractmethod
    def write_dataframe(self, df: pd.DataFrame, table: str) -> None:
        """Replace a results table with a DataFrame atomically."""

    @abstractmethod
    def create_window_view(self, view: str, table_prefix: str) -> None:
        """A view over every `<table_prefix>_<n>` table with `window_index` = n (Jetstream's views)."""

    @abstractmethod
    def table_exists(self, table: str) -> bool: ...

    @abstractmethod
    def table_columns(self, table: str) -> list[str]: ...

    @abstractmethod
    def list_tables(self, prefix: str = "") -> list[str]:
        """Results tables and views whose names start with prefix."""

    @abstractmethod
    def delete_tables(self, tables: list[str]) -> None: ...
