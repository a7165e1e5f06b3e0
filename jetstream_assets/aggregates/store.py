"""Reading the stored aggregates for the HTTP API, through the `Warehouse` that wrote them.

Two readers with one interface:
- `LocalAggregateStore` (the local warehouse): read-only in-memory DuckDB connections, each query over the
  Parquet files of the tables it needs, filters as bound parameters (pushed down to the Parquet scan).
  Tables are replaced by atomic renames, so a reader sees a table before or after a pipeline rerun, never
  half of it, and nothing takes a lock.
- `WarehouseAggregateStore` (any warehouse, BigQuery in production): BigQuery SQL through
  `Warehouse.query`. Only values the service checked or found in the data (channel, version, metric,
  dates) reach the SQL, as escaped literals; the other filters are applied to the fetched rows.

Both keep, per stored table, what the channels, dates and filters endpoints list (distinct channels,
versions, dates and dimension values), computed once per version of the table: a changed or new table is
read again, the others are not.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 -- pa.compute

from jetstream_assets.aggregates.compute import (
    AGGREGATES_DATASET,
    DIMENSIONS,
    bq_string,
    parse_table_name,
)
from jetstream_assets.warehouse.base import Warehouse, WarehouseError
from jetstream_assets.warehouse.local import LocalWarehouse, confine

CHANNEL_ORDER = ("nightly", "beta", "release")
OPTION_DIMENSIONS = ("metric", *DIMENSIONS)
# the filters endpoint's `os`: "name,version" pairs, as the service lists them
OS_PAIR = "os_pair"
_DATE_KEY = "#date"


class StoreError(RuntimeError):
    """The stored aggregates cannot be read (missing, inconsistent or unreachable); the API answers 503."""


@dataclass(frozen=True)
class MetricQuery:
    """One aggregates request after validation: dates are YYYYMMDD strings, filters exact values."""

    family: str
    channel: str
    version: str
    metric: str
    dates: tuple[str, ...]
    filters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _TableInfo:
    stamp: tuple  # changes whenever the table is replaced
    keys: pd.DataFrame  # distinct channel, version, date
    options: pd.DataFrame  # distinct channel, version, dimension, value


def channel_sort_key(channel: str) -> tuple:
    return (CHANNEL_ORDER.index(channel), "") if channel in CHANNEL_ORDER else (len(CHANNEL_ORDER), channel)


def _catalog_sql(source: str) -> str:
    """BigQuery SQL listing a table's distinct (channel, version, dimension, value), dates as '#date'."""
    parts = [f"SELECT channel, version, '{_DATE_KEY}' AS dimension, date AS value FROM {source} GROUP BY 1, 2, 4"]
    for dim in OPTION_DIMENSIONS:
        parts.append(f"SELECT channel, version, '{dim}' AS dimension, {dim} AS value FROM {source} GROUP BY 1, 2, 4")
    parts.append(f"SELECT channel, version, '{OS_PAIR}' AS dimension, CONCAT(os, ',', osVersion) AS value "
                 f"FROM {source} GROUP BY 1, 2, 4")
    return "\nUNION ALL\n".join(parts)


@dataclass(frozen=True)
class MetricData:
    """The API's reply body for one metric: its layout and `data` per (date, label)."""

    kind: str
    buckets: list
    data: list[dict]


def reduce_rows(rows: pd.DataFrame | pa.Table, metric: str) -> MetricData | None:
    """Add up matching rows per (date, label): the API's `data`, dates ascending then labels; the layout is
    the one stored with the rows (all rows of a metric must share it)."""
    columns = ["date", "label", "count", "sum", "histogram", "kind", "buckets"]
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows[columns], preserve_index=False)
    if table.num_rows == 0:
        return None
    layouts = pa.compute.unique(table.column("buckets")).to_pylist()
    kinds = pa.compute.unique(table.column("kind")).to_pylist()
    if len(layouts) != 1 or len(kinds) != 1:
        raise StoreError(
            f"Stored aggregates of {metric} have {len(layouts)} bucket layouts for these dates; rerun the "
            "telemetry_aggregates partitions written with the old definition.")
    buckets = json.loads(layouts[0])
    n_buckets = len(buckets)
    hist = table.column("histogram").combine_chunks()
    lengths = np.asarray(hist.value_lengths().to_numpy(zero_copy_only=False))
    if (lengths != n_buckets).any():
        raise StoreError(f"Stored aggregates of {metric} have rows whose histogram does not match its "
                         f"{n_buckets} buckets; rerun their telemetry_aggregates partitions.")
    matrix = np.asarray(hist.flatten().to_numpy(zero_copy_only=False), dtype=np.int64).reshape(-1, n_buckets)
    keys = pd.DataFrame({"date": table.column("date").to_pandas(), "label": table.column("label").to_pandas()})
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    n = len(uniques)
    summed = np.zeros((n, n_buckets), dtype=np.int64)
    np.add.at(summed, codes, matrix)
    counts = np.bincount(codes, weights=table.column("count").to_numpy(), minlength=n)
    sums = np.bincount(codes, weights=table.column("sum").to_numpy(), minlength=n)
    out = [
        {"date": str(date), "label": str(label), "count": int(counts[i]), "sum": int(sums[i]),
         "histogram": summed[i].tolist()}
        for i, (date, label) in enumerate(uniques)
    ]
    return MetricData(kinds[0], buckets, sorted(out, key=lambda row: (row["date"], row["label"])))


class AggregateStore(ABC):
    """What the API needs from the stored aggregates."""

    def __init__(self, warehouse: Warehouse, dataset: str = AGGREGATES_DATASET):
        self.warehouse = warehouse
        self.dataset = dataset
        self._tables: dict[str, _TableInfo] = {}
        self._combined: dict[tuple, tuple[pd.DataFrame, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def for_warehouse(warehouse: Warehouse, dataset: str = AGGREGATES_DATASET) -> AggregateStore:
        """The fast local reader for the local warehouse, the SQL reader for any other."""
        if isinstance(warehouse, LocalWarehouse):
            return LocalAggregateStore(warehouse, dataset)
        return WarehouseAggregateStore(warehouse, dataset)

    # -- engine parts ------------------------------------------------------------------------------
    @abstractmethod
    def _stamps(self) -> dict[str, tuple]:
        """Every aggregates table with a stamp that changes when the table is replaced."""

    @abstractmethod
    def _catalog(self, table: str) -> pd.DataFrame:
        """The table's distinct (channel, version, dimension, value) rows (see `_catalog_sql`)."""

    @abstractmethod
    def _metric_rows(self, query: MetricQuery, tables: list[str]) -> pa.Table | pd.DataFrame:
        """Rows of `tables` matching the query: date, label, count, sum, histogram, kind, buckets."""

    # -- catalog -----------------------------------------------------------------------------------
    def _tables_of(self, family: str | None = None) -> dict[str, tuple]:
        stamps = self._stamps()
        if family is None:
            return stamps
        return {t: s for t, s in stamps.items() if parse_table_name(t)[0] == family}

    def _info(self, table: str, stamp: tuple) -> _TableInfo:
        info = self._tables.get(table)
        if info is not None and info.stamp == stamp:
            return info
        catalog = self._catalog(table).astype(str)
        dates = catalog["dimension"] == _DATE_KEY
        keys = catalog[dates].rename(columns={"value": "date"})[["channel", "version", "date"]]
        info = _TableInfo(stamp, keys.reset_index(drop=True), catalog[~dates].reset_index(drop=True))
        with self._lock:
            self._tables[table] = info
        return info

    def _combined_catalog(self, stamps: dict[str, tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(keys tagged with their family, options) of these tables, cached per set of table stamps."""
        signature = tuple(sorted(stamps.items()))
        cached = self._combined.get(signature)
        if cached is not None:
            return cached
        keys, options = [], []
        for table, stamp in sorted(stamps.items()):
            info = None
            for _ in range(2):  # a table replaced meanwhile reads fine the second time
                try:
                    info = self._info(table, stamp)
                    break
                except (duckdb.IOException, WarehouseError, FileNotFoundError):
                    continue
            if info is None:  # the table went away (a rerun of a date without pings): skip it
                continue
            family = parse_table_name(table)[0]
            keys.append(info.keys.assign(family=family))
            options.append(info.options)
        key_frame = (pd.concat(keys, ignore_index=True).drop_duplicates() if keys
                     else pd.DataFrame(columns=["channel", "version", "date", "family"]))
        option_frame = (pd.concat(options, ignore_index=True).drop_duplicates() if options
                        else pd.DataFrame(columns=["channel", "version", "dimension", "value"]))
        with self._lock:
            if len(self._combined) > 8:
                self._combined.clear()
            self._combined[signature] = (key_frame, option_frame)
        return key_frame, option_frame

    def channels(self, family: str) -> list[str]:
        keys, _ = self._combined_catalog(self._tables_of(family))
        return sorted(set(keys["channel"]), key=channel_sort_key)

    def dates(self, family: str, channel: str) -> list[dict[str, str]]:
        """[{date, version}] of a channel, newest date first (then highest version)."""
        keys, _ = self._combined_catalog(self._tables_of(family))
        rows = keys[keys["channel"] == channel][["date", "version"]].drop_duplicates()
        pairs = sorted(zip(rows["date"], rows["version"]), key=lambda p: (p[0], _version_key(p[1])), reverse=True)
        return [{"date": d, "version": v} for d, v in pairs]

    def versions(self, channel: str) -> set[str]:
        keys, _ = self._combined_catalog(self._tables_of())
        return set(keys.loc[keys["channel"] == channel, "version"])

    def filter_options(self, channel: str, version: str) -> dict[str, list[str]]:
        """Every value of each dimension seen on (channel, version), in either family."""
        _, options = self._combined_catalog(self._tables_of())
        rows = options[(options["channel"] == channel) & (options["version"] == version)]
        out = {}
        for dim in (*OPTION_DIMENSIONS, OS_PAIR):
            values = sorted(set(rows.loc[rows["dimension"] == dim, "value"]) - {""})
            if values:
                out[dim] = values
        return out

    def has_channel(self, family: str, channel: str) -> bool:
        return channel in self.channels(family)

    # -- aggregates --------------------------------------------------------------------------------
    def _tables_for(self, query: MetricQuery) -> list[str]:
        tables = self._tables_of(query.family)
        if query.family == "submission_date":
            wanted = {f"submission_date_{d}" for d in query.dates}
            return sorted(t for t in tables if t in wanted)
        # a build date's pings arrive on that date or later
        first = min(query.dates)
        return sorted(t for t in tables if parse_table_name(t)[1] >= first)

    def aggregates(self, query: MetricQuery) -> MetricData | None:
        """The API's reply for a query: per (date, label), the sum over every matching row."""
        for attempt in range(2):
            tables = self._tables_for(query)
            if not tables:
                return None
            try:
                rows = self._metric_rows(query, tables)
                break
            except (duckdb.IOException, FileNotFoundError, WarehouseError) as e:
                if attempt:  # a table vanished twice in a row: report, do not guess
                    raise StoreError(f"Aggregates tables changed while being read: {e}") from e
        return reduce_rows(rows, query.metric)


def _version_key(version: str) -> tuple:
    return (0, int(version)) if version.isdigit() else (-1, version)


class LocalAggregateStore(AggregateStore):
    """DuckDB over the local warehouse's Parquet files; a small pool of in-memory connections."""

    def __init__(self, warehouse: LocalWarehouse, dataset: str = AGGREGATES_DATASET, connections: int = 4,
                 threads: int = 2):
        super().__init__(warehouse, dataset)
        self._pool: queue.LifoQueue[duckdb.DuckDBPyConnection] = queue.LifoQueue()
        self._created = 0
        self._max = connections
        self._threads = threads
        self._pool_lock = threading.Lock()

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            con = self._pool.get_nowait()
        except queue.Empty:
            with self._pool_lock:
                create = self._created < self._max
                self._created += create
            if create:
                con = confine(duckdb.connect(":memory:", config={"threads": self._threads}), self.warehouse.root)
            else:
                con = self._pool.get()
        try:
            yield con
        finally:
            self._pool.put(con)

    def _path(self, table: str) -> str:
        return str(self.warehouse.table_path(table, self.dataset))

    def _stamps(self) -> dict[str, tuple]:
        out = {}
        folder = self.warehouse.table_path("x", self.dataset).parent
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return {}
        for entry in entries:
            if not entry.name.endswith(".parquet") or parse_table_name(entry.name[: -len(".parquet")]) is None:
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            out[entry.name[: -len(".parquet")]] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return out

    def _catalog(self, table: str) -> pd.DataFrame:
        source = f"read_parquet({_duck_string(self._path(table))})"
        with self._connection() as con:
            return con.execute(_catalog_sql(source)).df()

    def _metric_rows(self, query: MetricQuery, tables: list[str]) -> pa.Table:
        files = ", ".join(_duck_string(self._path(t)) for t in tables)
        where = ["channel = ?", "version = ?", "metric = ?", "list_contains(?, date)"]
        params: list = [query.channel, query.version, query.metric, list(query.dates)]
        for dim, value in query.filters:
            if dim not in DIMENSIONS:
                raise StoreError(f"Unknown dimension {dim!r}")
            where.append(f'"{dim}" = ?')
            params.append(value)
        sql = (f'SELECT date, label, "count", "sum", histogram, kind, buckets FROM read_parquet([{files}]) '
               f"WHERE {' AND '.join(where)}")
        with self._connection() as con:
            return con.sql(sql, params=params).to_arrow_table()


def _duck_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class WarehouseAggregateStore(AggregateStore):
    """BigQuery SQL through `Warehouse.query`; table stamps are re-listed at most every `ttl` seconds."""

    def __init__(self, warehouse: Warehouse, dataset: str = AGGREGATES_DATASET, ttl: float = 60.0):
        super().__init__(warehouse, dataset)
        self._ttl = ttl
        self._listed: tuple[float, dict[str, tuple]] | None = None

    def _stamps(self) -> dict[str, tuple]:
        now = time.monotonic()
        if self._listed is not None and now - self._listed[0] < self._ttl:
            return self._listed[1]
        tables = [t for t in self.warehouse.list_tables("", self.dataset) if parse_table_name(t)]
        # without modification times, a table is re-read when the listing is refreshed
        stamps = {t: (int(now // self._ttl),) for t in tables}
        self._listed = (now, stamps)
        return stamps

    def _ref(self, table: str) -> str:
        return f"`{self.warehouse.table_ref(table, self.dataset)}`"

    def _catalog(self, table: str) -> pd.DataFrame:
        return self.warehouse.query(_catalog_sql(self._ref(table)))

    def _metric_rows(self, query: MetricQuery, tables: list[str]) -> pd.DataFrame:
        for date in query.dates:
            if not (len(date) == 8 and date.isdigit()):
                raise StoreError(f"Invalid date {date!r}")
        dates = ", ".join(bq_string(d) for d in query.dates)
        condition = (f"channel = {bq_string(query.channel)} AND version = {bq_string(query.version)} "
                     f"AND metric = {bq_string(query.metric)} AND date IN ({dates})")
        columns = ", ".join(["date", "`count`", "`sum`", "histogram", "kind", "buckets", *DIMENSIONS])
        sql = "\nUNION ALL\n".join(f"SELECT {columns} FROM {self._ref(t)} WHERE {condition}" for t in tables)
        rows = self.warehouse.query(sql)
        for dim, value in query.filters:
            rows = rows[rows[dim].astype(str) == value]
        return rows
