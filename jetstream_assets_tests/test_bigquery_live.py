"""The end-to-end assertions of test_pipeline, with the whole pipeline running on real BigQuery.

Runs only with GOOGLE_APPLICATION_CREDENTIALS and JETSTREAM_BIGQUERY_PROJECT set (CI has neither):
    GOOGLE_APPLICATION_CREDENTIALS=key.json JETSTREAM_BIGQUERY_PROJECT=my-project \\
        .venv/bin/python -m pytest jetstream_assets_tests/test_bigquery_live.py
(optional: JETSTREAM_BIGQUERY_LOCATION, default US). It creates three scratch datasets in the project
(results, monitoring, and the synthetic telemetry of the demo world loaded from its Parquet files), runs
`demo-complete` over all its dates through Dagster with the BigQuery warehouse, checks tables, row counts,
statistics and exports exactly as test_pipeline does locally, and deletes the datasets.

The one liberty: the demo's SQL reads Mozilla's telemetry tables (`mozdata.telemetry.*`,
`moz-fx-data-shared-prod.telemetry.*`), which a test cannot write, so this warehouse points those three
table names at the scratch telemetry dataset. Everything else, mozanalysis' SQL included, runs as built.
"""

from __future__ import annotations

import os
import re
import uuid

import dagster as dg
import pytest
from dagster_gcp import BigQueryResource
from pydantic import Field

from jetstream_assets.exports.store import LocalExportStore
from jetstream_assets.warehouse.base import QueryResult
from jetstream_assets.warehouse.bigquery import BigQueryWarehouse
from jetstream_assets_tests import test_pipeline as local
from jetstream_assets_tests.test_pipeline import CLIENTS, SLUG
from jetstream_assets_tests.worlds import build_world, run

pytestmark = pytest.mark.skipif(
    not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") and os.environ.get("JETSTREAM_BIGQUERY_PROJECT")),
    reason="needs BigQuery credentials: set GOOGLE_APPLICATION_CREDENTIALS and JETSTREAM_BIGQUERY_PROJECT",
)

TELEMETRY_TABLES = ("events", "clients_daily", "clients_last_seen")
_PRODUCTION_TELEMETRY = re.compile(
    r"`?(?:moz-fx-data-shared-prod|mozdata)`?\.`?telemetry`?\.`?(" + "|".join(TELEMETRY_TABLES) + r")\b`?"
)


class ScratchTelemetryWarehouse(BigQueryWarehouse):
    """The BigQuery warehouse, reading the demo's telemetry from a scratch dataset instead of Mozilla's."""

    telemetry: str = Field(description="`project.dataset` holding the synthetic telemetry tables.")

    def _scratch(self, sql: str) -> str:
        return _PRODUCTION_TELEMETRY.sub(lambda m: f"`{self.telemetry}.{m.group(1)}`", sql)

    def _run_query(self, sql: str, destination: str | None) -> QueryResult:
        return super()._run_query(self._scratch(sql), destination)

    def query(self, sql: str):
        return super().query(self._scratch(sql))

    def dry_run(self, sql: str) -> None:
        super().dry_run(self._scratch(sql))


def _load_telemetry(client, parquet_dir, dataset_id: str) -> None:
    from google.cloud import bigquery

    options = bigquery.ParquetOptions()
    options.enable_list_inference = True
    options.map_target_type = "ARRAY_OF_STRUCT"  # Parquet maps as BigQuery's ARRAY<STRUCT<key, value>>
    for table in TELEMETRY_TABLES:
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            parquet_options=options,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        with open(parquet_dir / f"{table}.parquet", "rb") as f:
            client.load_table_from_file(f, f"{dataset_id}.{table}", job_config=config).result()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from google.cloud import bigquery

    project = os.environ["JETSTREAM_BIGQUERY_PROJECT"]
    location = os.environ.get("JETSTREAM_BIGQUERY_LOCATION") or "US"
    scratch = f"jetstream_assets_test_{uuid.uuid4().hex[:10]}"
    datasets = {"results": scratch, "monitoring": f"{scratch}_monitoring", "telemetry": f"{scratch}_telemetry"}
    client = bigquery.Client(project=project, location=location)
    try:
        for name in datasets.values():
            dataset = bigquery.Dataset(f"{project}.{name}")
            dataset.location = location
            dataset.default_table_expiration_ms = 24 * 3600 * 1000  # left-overs of a killed run expire
            client.create_dataset(dataset)
        home = tmp_path_factory.mktemp("bq_e2e")
        with build_world(home, CLIENTS) as w:
            _load_telemetry(client, home / "warehouse" / "telemetry", f"{project}.{datasets['telemetry']}")
            warehouse = ScratchTelemetryWarehouse(
                bigquery=BigQueryResource(project=project, location=location),
                dataset=datasets["results"],
                monitoring_dataset=datasets["monitoring"],
                telemetry=f"{project}.{datasets['telemetry']}",
            )
            store = LocalExportStore(root=str(home / "exports"))  # GCS has its own tests (emulator)
            w.resources = {**w.resources, "warehouse": warehouse, "export_store": store}
            w.defs = dg.Definitions(
                assets=w.defs.assets, jobs=w.defs.jobs, sensors=w.defs.sensors, resources=w.resources
            )
            w.extra["project"] = project  # build_world keeps the production variables out of the world
            w.summary = run(w, SLUG)
            yield w
    finally:
        for name in datasets.values():
            client.delete_dataset(f"{project}.{name}", delete_contents=True, not_found_ok=True)


def test_the_run_wrote_bigquery_tables_and_monitoring(world):
    warehouse = world.warehouse
    assert isinstance(warehouse, BigQueryWarehouse)
    enrollments = warehouse.table_ref(f"enrollments_{SLUG.replace('-', '_')}")
    assert enrollments.startswith(world.extra["project"] + ".")
    assert warehouse.table_exists("query_cost", dataset=warehouse.monitoring_dataset)
    costs = warehouse.query(
        f"SELECT destination_table, total_bytes_processed, cost_usd "
        f"FROM `{warehouse.table_ref('query_cost', warehouse.monitoring_dataset)}`"
    )
    assert enrollments in set(costs["destination_table"])
    assert (costs["total_bytes_processed"] > 0).any() and (costs["cost_usd"] > 0).any()


# test_pipeline's assertions, unchanged, on the BigQuery world


def test_run_covers_every_date_in_one_successful_run(world):
    local.test_run_covers_every_date_in_one_successful_run(world)


def test_tables_exist_for_exactly_the_windows_that_closed(world):
    local.test_tables_exist_for_exactly_the_windows_that_closed(world)


def test_row_counts_equal_enrolled_clients(world):
    local.test_row_counts_equal_enrolled_clients(world)


def test_planted_effect_inside_ci_and_zero_effect_ci_contains_zero(world):
    local.test_planted_effect_inside_ci_and_zero_effect_ci_contains_zero(world)


def test_exports_validate_against_the_schemas(world):
    local.test_exports_validate_against_the_schemas(world)
