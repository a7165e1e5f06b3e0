"""The production warehouse: BigQuery through `dagster_gcp.BigQueryResource`.

The mozanalysis SQL is BigQuery SQL, so it runs here as built: no transpiling, no macros. Tables are
written as Jetstream writes them (a query job into `<project>.<dataset>.<table>` with WRITE_TRUNCATE,
then a `last_updated` label with the time in Unix seconds) and query costs are priced as Jetstream
prices them (slot-hours x $0.06), so the monitoring `query_cost` table reads the same.

Private experiments: Jetstream writes a private experiment's tables to its config's `dataset_id`. Every
table operation takes `dataset=`; `run_query` and `create_window_view` also accept a
`dataset.table` name; and `with_dataset(...)` gives the same warehouse writing to another results
dataset, for code that calls the interface without `dataset=`.

Outside a Dagster run, a warehouse built with `dagster.EnvVar` values (see `resources.py`) must be
initialised first (`dagster.build_resources({"warehouse": w})`): the env vars are resolved then.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
import numpy as np
import pandas as pd
from dagster import EnvVar
from dagster_gcp import BigQueryResource
from google.api_core.exceptions import GoogleAPIError, NotFound, PreconditionFailed
from google.cloud import bigquery
from pydantic import Field, PrivateAttr

from jetstream_assets.warehouse.base import QueryResult, Warehouse, WarehouseError

logger = logging.getLogger("jetstream_assets.warehouse")

#: Jetstream's price of compute: on-demand slot-hours at $0.06 (its COST_PER_SLOT_MS x 3.6e6).
USD_PER_SLOT_HOUR = 0.06
MS_PER_HOUR = 3_600_000

_NAME = re.compile(r"[A-Za-z0-9_]+")
_PANDAS_GBQ_WARNING = r"Loading pandas DataFrame into BigQuery will require pandas-gbq"


def slot_cost_usd(slot_millis: int | None, usd_per_slot_hour: float = USD_PER_SLOT_HOUR) -> float:
    """What a job's slot time costs at Jetstream's price."""
    return (slot_millis or 0) / MS_PER_HOUR * usd_per_slot_hour


def last_updated_label(now: float | None = None) -> str:
    """Jetstream's `last_updated` label value: Unix seconds as text (label values must be strings)."""
    return str(int(time.time() if now is None else now))


def _bq_type(column: str, series: pd.Series) -> str:
    """The BigQuery type of a DataFrame column; columns with no value at all are STRING.

    Given explicitly because inference from pandas makes all-null columns (a logs table's empty
    `exception`, a statistics table without deciles' `parameter`) fail the load.
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOL"
    if pd.api.types.is_integer_dtype(dtype):
        return "INT64"
    if pd.api.types.is_float_dtype(dtype):
        return "FLOAT64"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "TIMESTAMP"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "DATETIME"
    if isinstance(dtype, pd.StringDtype) or isinstance(dtype, pd.CategoricalDtype):
        return "STRING"
    if getattr(dtype, "name", "") == "dbdate":
        return "DATE"
    if getattr(dtype, "name", "") == "dbtime":
        return "TIME"
    values = series.dropna()
    if values.empty:
        return "STRING"
    sample = values.iloc[0]
    for kind, bq in (
        (bool, "BOOL"),
        (int, "INT64"),
        (float, "FLOAT64"),
        (str, "STRING"),
        (bytes, "BYTES"),
        (decimal.Decimal, "NUMERIC"),
    ):
        if isinstance(sample, kind):
            return bq
    if hasattr(sample, "dtype") and pd.api.types.is_integer_dtype(sample.dtype):
        return "INT64"  # numpy integer scalars in an object column
    if hasattr(sample, "dtype") and pd.api.types.is_float_dtype(sample.dtype):
        return "FLOAT64"
    if isinstance(sample, dt.datetime):
        return "TIMESTAMP" if sample.tzinfo is not None else "DATETIME"
    if isinstance(sample, dt.date):
        return "DATE"
    raise WarehouseError(
        f"Column {column!r} holds {type(sample).__name__} values, which the BigQuery warehouse cannot "
        "store; convert it to text, numbers, booleans or dates before writing."
    )


def dataframe_schema(
    df: pd.DataFrame, known: dict[str, bigquery.SchemaField] | None = None
) -> list[bigquery.SchemaField]:
    """A complete load schema for `df`: `known` fields (an existing table's) win, the rest inferred."""
    known = known or {}
    return [known.get(str(c)) or _schema_field(str(c), df[c]) for c in df.columns]


def _schema_field(column: str, series: pd.Series) -> bigquery.SchemaField:
    """A column of lists or 1-d arrays (e.g. histogram bucket counts) is REPEATED of its elements' type."""
    values = series.dropna()
    sample = values.iloc[0] if not values.empty else None
    if isinstance(sample, (list, tuple)) or (isinstance(sample, np.ndarray) and sample.ndim == 1):
        elements = pd.Series([v for row in values for v in row][:1000])
        return bigquery.SchemaField(column, _bq_type(column, elements), mode="REPEATED")
    return bigquery.SchemaField(column, _bq_type(column, series))


#: Mozilla's decoded main ping table (`payload_bytes_decoded.telemetry_telemetry__main_v4`), the columns the
#: telemetry aggregates read; `payload` holds the decoded ping document as JSON text.
MAIN_PING_SCHEMA = [
    bigquery.SchemaField("submission_timestamp", "TIMESTAMP"),
    bigquery.SchemaField("document_id", "STRING"),
    bigquery.SchemaField("sample_id", "INT64"),
    bigquery.SchemaField("normalized_channel", "STRING"),
    bigquery.SchemaField("normalized_app_name", "STRING"),
    bigquery.SchemaField("metadata", "RECORD", fields=[
        bigquery.SchemaField("uri", "RECORD", fields=[
            bigquery.SchemaField(name, "STRING")
            for name in ("app_name", "app_version", "app_update_channel", "app_build_id")
        ]),
    ]),
    bigquery.SchemaField("payload", "STRING"),
]


def _reason(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    errors = getattr(error, "errors", None) or []
    details = "; ".join(e.get("message", "") for e in errors if isinstance(e, dict) and e.get("message"))
    return f"{message} ({details})" if details and details not in message else message


class BigQueryWarehouse(Warehouse):
    """Runs the analysis SQL on BigQuery into `<project>.<dataset>.<table>`; production's engine."""

    bigquery: BigQueryResource = Field(
        description="The BigQuery connection (project jobs run and bill in, location, credentials)."
    )
    project: str | None = Field(
        default=None,
        description="Project holding the results and monitoring datasets; default: the BigQuery "
        "resource's project.",
    )
    dataset: str = Field(default="mozanalysis", description="Results dataset (Jetstream: mozanalysis).")
    monitoring_dataset: str = Field(
        default="monitoring", description="Dataset of the logs, query_cost and experimenter tables."
    )
    usd_per_slot_hour: float = Field(
        default=USD_PER_SLOT_HOUR, description="Price of a slot-hour for the query_cost table."
    )

    _local: threading.local = PrivateAttr(default_factory=threading.local)

    # -- connection ------------------------------------------------------------------------------
    def _check_resolved(self) -> None:
        unresolved = [
            name
            for name, value in (
                ("project", self.project),
                ("dataset", self.dataset),
                ("monitoring_dataset", self.monitoring_dataset),
                ("bigquery.project", self.bigquery.project),
                ("bigquery.location", self.bigquery.location),
            )
            if isinstance(value, EnvVar)
        ]
        if unresolved:
            raise WarehouseError(
                f"BigQueryWarehouse field(s) {', '.join(unresolved)} are unresolved dagster.EnvVar values; "
                "Dagster resolves them when a run starts. Outside a run, initialise the resource with "
                "`with dagster.build_resources({'warehouse': warehouse}) as r: r.warehouse`."
            )

    @contextmanager
    def _client(self) -> Iterator[bigquery.Client]:
        """One client per thread, made by the BigQuery resource (clients are not shared across threads)."""
        self._check_resolved()
        client = getattr(self._local, "client", None)
        if client is not None:
            yield client
            return
        with self.bigquery.get_client() as client:
            self._local.client = client
            yield client

    def _project(self, client: bigquery.Client) -> str:
        project = self.project or self.bigquery.project or client.project
        if not project:
            raise WarehouseError(
                "No BigQuery project: set JETSTREAM_BIGQUERY_PROJECT (or the warehouse's `project`)."
            )
        return project

    @staticmethod
    def _valid(kind: str, name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WarehouseError(
                f"Invalid BigQuery {kind} name {name!r}: use letters, digits and '_' only "
                "(table names come from sql.names, which normalises experiment slugs)."
            )
        return name

    def _dataset(self, dataset: str | None) -> str:
        return self._valid("dataset", dataset or self.dataset)

    def _split(self, table: str, dataset: str | None) -> tuple[str, str]:
        """(dataset, table) of a bare name, or of `dataset.table` when no dataset is given."""
        if isinstance(table, str) and "." in table and dataset is None:
            dataset, table = table.split(".", 1)
        return self._dataset(dataset), self._valid("table", table)

    def _table_id(self, client: bigquery.Client, table: str, dataset: str | None = None) -> str:
        dataset, table = self._split(table, dataset)
        return f"{self._project(client)}.{dataset}.{table}"

    def _default_dataset(self, client: bigquery.Client) -> str:
        return f"{self._project(client)}.{self.dataset}"

    def with_dataset(self, dataset: str) -> BigQueryWarehouse:
        """The same warehouse writing to another results dataset (a private experiment's `dataset_id`)."""
        self._valid("dataset", dataset)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, "dataset": dataset})

    # -- interface -------------------------------------------------------------------------------
    def table_ref(self, table: str, dataset: str | None = None) -> str:
        """`project.dataset.table`, to be quoted as one identifier: `` `project.dataset.table` ``."""
        self._check_resolved()
        dataset, table = self._split(table, dataset)
        project = self.project or self.bigquery.project
        if not project:
            with self._client() as client:
                project = self._project(client)
        return f"{project}.{dataset}.{table}"

    def _run_query(self, sql: str, destination: str | None) -> QueryResult:
        with self._client() as client:
            config = bigquery.QueryJobConfig(default_dataset=self._default_dataset(client))
            target = None
            if destination:
                target = self._table_id(client, destination)
                config.destination = bigquery.TableReference.from_string(target)
                config.write_disposition = bigquery.WriteDisposition.WRITE_TRUNCATE
            started = time.monotonic()
            try:
                job = client.query(sql, job_config=config)
                # into a table: wait for the job without downloading its rows (as Jetstream does)
                result = job.result(max_results=1) if target else job.result()
            except GoogleAPIError as e:
                where = f" writing `{target}`" if target else ""
                raise WarehouseError(f"BigQuery query failed{where}: {_reason(e)}") from e
            seconds = time.monotonic() - started
            if target:
                rows = self._label(client, target)
            else:
                rows = int(getattr(result, "total_rows", 0) or 0)
            return QueryResult(
                destination=destination,
                rows=rows,
                bytes_processed=int(job.total_bytes_processed or 0),
                seconds=seconds,
                cost_usd=slot_cost_usd(job.slot_millis, self.usd_per_slot_hour),
            )

    def _label(self, client: bigquery.Client, table_id: str) -> int:
        """Stamp `last_updated` (as Jetstream does, for staleness checks); returns the table's rows."""
        try:
            table = client.get_table(table_id)
            table.labels = {**(table.labels or {}), "last_updated": last_updated_label()}
            client.update_table(table, ["labels"])
        except PreconditionFailed:  # a concurrent label update won: its stamp is as fresh
            logger.warning("Concurrent label update of %s; keeping the other one", table_id)
        except GoogleAPIError as e:
            raise WarehouseError(f"Cannot label `{table_id}` with last_updated: {_reason(e)}") from e
        return int(table.num_rows or 0)

    def query(self, sql: str) -> pd.DataFrame:
        with self._client() as client:
            config = bigquery.QueryJobConfig(default_dataset=self._default_dataset(client))
            try:
                return client.query(sql, job_config=config).result().to_dataframe()
            except GoogleAPIError as e:
                raise WarehouseError(f"BigQuery query failed: {_reason(e)}") from e

    def dry_run(self, sql: str) -> None:
        self.dry_run_bytes(sql)

    def dry_run_bytes(self, sql: str) -> int:
        """Bytes BigQuery would process (and bill) for the SQL, from a dry run; raises WarehouseError."""
        with self._client() as client:
            config = bigquery.QueryJobConfig(
                dry_run=True, use_query_cache=False, default_dataset=self._default_dataset(client)
            )
            try:
                return int(client.query(sql, job_config=config).total_bytes_processed or 0)
            except GoogleAPIError as e:
                raise WarehouseError(f"Query does not compile on BigQuery: {_reason(e)}") from e

    def read_table(
        self, table: str, columns: list[str] | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        cols = ", ".join(f"`{c}`" for c in columns) if columns else "*"
        with self._client() as client:
            table_id = self._table_id(client, table, dataset)
            config = bigquery.QueryJobConfig(default_dataset=self._default_dataset(client))
            sql = f"SELECT {cols} FROM `{table_id}`"
            try:
                return client.query(sql, job_config=config).result().to_dataframe()
            except NotFound as e:
                raise WarehouseError(
                    f"Table `{table_id}` does not exist; materialize the upstream asset first."
                ) from e
            except GoogleAPIError as e:
                raise WarehouseError(f"Cannot read `{table_id}`: {_reason(e)}") from e

    def _load(self, client, df: pd.DataFrame, table_id: str, config: bigquery.LoadJobConfig) -> None:
        try:
            with warnings.catch_warnings():
                # the schema is given in full, so the library's own inference (and its nag) is moot
                warnings.filterwarnings("ignore", message=_PANDAS_GBQ_WARNING, category=FutureWarning)
                client.load_table_from_dataframe(df, table_id, job_config=config).result()
        except GoogleAPIError as e:
            raise WarehouseError(f"Cannot load {len(df)} row(s) into `{table_id}`: {_reason(e)}") from e

    def write_dataframe(self, df: pd.DataFrame, table: str, dataset: str | None = None) -> None:
        with self._client() as client:
            table_id = self._table_id(client, table, dataset)
            config = bigquery.LoadJobConfig(
                schema=dataframe_schema(df),
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            )
            self._load(client, df, table_id, config)
            self._label(client, table_id)

    def append_rows(self, table: str, df: pd.DataFrame, dataset: str | None = None) -> None:
        """One load job per call: BigQuery commits it whole, and concurrent appends all land."""
        with self._client() as client:
            table_id = self._table_id(client, table, dataset)
            known: dict[str, bigquery.SchemaField] = {}
            existing = None
            try:
                existing = client.get_table(table_id)
            except NotFound:
                pass
            if existing is not None:
                if existing.table_type == "VIEW":
                    raise WarehouseError(
                        f"Cannot append to `{table_id}`: it is a view; pick another table name."
                    )
                known = {f.name: f for f in existing.schema}
            config = bigquery.LoadJobConfig(
                schema=dataframe_schema(df, known),
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
                create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            )
            if existing is not None and set(map(str, df.columns)) - set(known):
                config.schema_update_options = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
            self._load(client, df, table_id, config)

    def window_view_sql(self, view_id: str, prefix_id: str, foreign: bool, windows: list[int]) -> str:
        """SQL of a Jetstream view over `<prefix>_<n>` tables, `window_index` = n.

        A wildcard `<prefix>_*` picks up windows written later without recreating the view; the
        `_TABLE_SUFFIX` filter keeps only all-digit suffixes, so `<prefix>_1*` never reads another
        prefix's tables. But a wildcard takes its schema from the newest matching table and cannot
        read views, filter or not: when other tables or views share the prefix (`foreign`), the view
        unions the existing windows by name instead.
        """
        if not foreign:
            return (
                f"CREATE OR REPLACE VIEW `{view_id}` AS\n"
                f"SELECT *, CAST(_TABLE_SUFFIX AS INT64) AS window_index\n"
                f"FROM `{prefix_id}_*`\n"
                f"WHERE REGEXP_CONTAINS(_TABLE_SUFFIX, r'^[0-9]+$')"
            )
        selects = [f"SELECT *, {n} AS window_index FROM `{prefix_id}_{n}`" for n in windows]
        return f"CREATE OR REPLACE VIEW `{view_id}` AS\n" + "\nUNION ALL\n".join(selects)

    def create_window_view(self, view: str, table_prefix: str) -> None:
        with self._client() as client:
            dataset, view_name = self._split(view, None)
            _, prefix = self._split(table_prefix, dataset)
            view_id = f"{self._project(client)}.{dataset}.{view_name}"
            prefix_id = f"{self._project(client)}.{dataset}.{prefix}"
            names = self.list_tables(prefix + "_", dataset)
            pattern = re.compile(re.escape(prefix) + r"_([0-9]+)")
            windows = sorted(int(m.group(1)) for n in names if (m := pattern.fullmatch(n)))
            if not windows:
                raise WarehouseError(
                    f"Cannot create view `{view_id}`: no table named {prefix}_<n> in {dataset} yet."
                )
            foreign = len(windows) != len(names)
            sql = self.window_view_sql(view_id, prefix_id, foreign, windows)
            config = bigquery.QueryJobConfig(default_dataset=f"{self._project(client)}.{dataset}")
            try:
                client.query(sql, job_config=config).result()
            except GoogleAPIError as e:
                raise WarehouseError(f"Cannot create view `{view_id}`: {_reason(e)}") from e

    def ensure_main_ping_table(self, table: str, dataset: str) -> None:
        """Create the decoded main ping table (MAIN_PING_SCHEMA, partitioned by submission day) unless it
        exists, so appends of pings (nested `metadata`) load with its schema."""
        with self._client() as client:
            table_id = self._table_id(client, table, dataset)
            definition = bigquery.Table(table_id, schema=MAIN_PING_SCHEMA)
            definition.time_partitioning = bigquery.TimePartitioning(field="submission_timestamp")
            try:
                client.create_dataset(table_id.rsplit(".", 1)[0], exists_ok=True)
                client.create_table(definition, exists_ok=True)
            except GoogleAPIError as e:
                raise WarehouseError(f"Cannot create `{table_id}`: {_reason(e)}") from e

    def _get_table(self, table: str, dataset: str | None):
        with self._client() as client:
            table_id = self._table_id(client, table, dataset)
            try:
                return client.get_table(table_id)
            except NotFound:
                return None
            except GoogleAPIError as e:
                raise WarehouseError(f"Cannot look up `{table_id}`: {_reason(e)}") from e

    def table_exists(self, table: str, dataset: str | None = None) -> bool:
        return self._get_table(table, dataset) is not None

    def table_columns(self, table: str, dataset: str | None = None) -> list[str]:
        found = self._get_table(table, dataset)
        if found is None:
            return []
        return [f.name for f in found.schema]

    def list_tables(self, prefix: str = "", dataset: str | None = None) -> list[str]:
        with self._client() as client:
            dataset_id = f"{self._project(client)}.{self._dataset(dataset)}"
            try:
                return sorted(
                    t.table_id for t in client.list_tables(dataset_id) if t.table_id.startswith(prefix)
                )
            except NotFound:
                return []
            except GoogleAPIError as e:
                raise WarehouseError(f"Cannot list the tables of `{dataset_id}`: {_reason(e)}") from e

    def delete_tables(self, tables: list[str], dataset: str | None = None) -> None:
        with self._client() as client:
            for table in tables:
                table_id = self._table_id(client, table, dataset)
                try:
                    client.delete_table(table_id, not_found_ok=True)
                except GoogleAPIError as e:
                    raise WarehouseError(f"Cannot delete `{table_id}`: {_reason(e)}") from e

