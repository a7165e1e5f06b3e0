"""Engine selection by environment: local by default, BigQuery / GCS when their variables are set."""

from __future__ import annotations

import dagster as dg
import pytest
from google.cloud import bigquery, storage

from jetstream_assets.definitions import build_definitions
from jetstream_assets.exports.gcs import GCSExportError, GCSExportStore
from jetstream_assets.exports.store import LocalExportStore
from jetstream_assets.resources import build_resources
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets.warehouse.bigquery import BigQueryWarehouse
from jetstream_assets.warehouse.local import LocalWarehouse

PRODUCTION = {
    "JETSTREAM_BIGQUERY_PROJECT": "moz-fx-data-experiments",
    "JETSTREAM_BIGQUERY_DATASET": "mozanalysis_test",
    "JETSTREAM_GCS_BUCKET": "mozanalysis",
    "JETSTREAM_GCS_PREFIX": "jetstream-assets",
}
ALL = [*PRODUCTION, "JETSTREAM_BIGQUERY_MONITORING_DATASET", "JETSTREAM_BIGQUERY_LOCATION", "JETSTREAM_GCS_PROJECT"]


@pytest.fixture
def no_network(monkeypatch):
    """Building resources must not create a client: that would reach Google at load time."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Google client was created while building resources")

    monkeypatch.setattr(bigquery, "Client", refuse)
    monkeypatch.setattr(storage, "Client", refuse)
    monkeypatch.setattr(storage.client, "Client", refuse)
    for name in ALL:
        monkeypatch.delenv(name, raising=False)


def test_local_engines_by_default(no_network, tmp_path):
    resources = build_resources(tmp_path)
    assert type(resources["warehouse"]) is LocalWarehouse
    assert resources["warehouse"].root == str(tmp_path / "warehouse")
    assert type(resources["export_store"]) is LocalExportStore
    assert resources["export_store"].root == str(tmp_path / "exports")


def test_blank_variables_still_mean_local(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("JETSTREAM_BIGQUERY_PROJECT", " ")
    monkeypatch.setenv("JETSTREAM_GCS_BUCKET", "")
    resources = build_resources(tmp_path)
    assert type(resources["warehouse"]) is LocalWarehouse and type(resources["export_store"]) is LocalExportStore


def test_production_variables_choose_bigquery_and_gcs_as_env_vars(no_network, monkeypatch, tmp_path):
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(tmp_path)
    warehouse, store = resources["warehouse"], resources["export_store"]
    assert type(warehouse) is BigQueryWarehouse and type(store) is GCSExportStore
    # EnvVar values: the UI shows the variable names and Dagster reads them when a run starts
    assert isinstance(warehouse.bigquery.project, dg.EnvVar)
    assert warehouse.bigquery.project.env_var_name == "JETSTREAM_BIGQUERY_PROJECT"
    assert warehouse.dataset.env_var_name == "JETSTREAM_BIGQUERY_DATASET"
    assert warehouse.monitoring_dataset == "monitoring" and warehouse.bigquery.location is None
    assert store.bucket.env_var_name == "JETSTREAM_GCS_BUCKET"
    assert store.prefix.env_var_name == "JETSTREAM_GCS_PREFIX"
    assert store.gcs.project.env_var_name == "JETSTREAM_BIGQUERY_PROJECT"  # exports bill to the same project

    # resolved in a run (here: Dagster's build_resources, as a run does) to the values of that moment
    monkeypatch.setenv("JETSTREAM_BIGQUERY_DATASET", "mozanalysis_later")
    with dg.build_resources({"warehouse": warehouse, "export_store": store}) as live:
        assert live.warehouse.bigquery.project == "moz-fx-data-experiments"
        assert live.warehouse.dataset == "mozanalysis_later"
        assert live.export_store.bucket == "mozanalysis" and live.export_store.prefix == "jetstream-assets"
        assert live.warehouse.table_ref("enrollments_x") == "moz-fx-data-experiments.mozanalysis_later.enrollments_x"

    # used directly, unresolved, they would name the variables instead of their values: refused
    with pytest.raises(WarehouseError, match="unresolved dagster.EnvVar.*build_resources"):
        warehouse.table_ref("enrollments_x")
    with pytest.raises(GCSExportError, match="unresolved dagster.EnvVar.*build_resources"):
        store.uri("metadata/metadata_x.json")


def test_only_the_bucket_set_keeps_the_local_warehouse(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("JETSTREAM_GCS_BUCKET", "mozanalysis")
    resources = build_resources(tmp_path)
    assert type(resources["warehouse"]) is LocalWarehouse and type(resources["export_store"]) is GCSExportStore
    assert resources["export_store"].prefix == "" and resources["export_store"].gcs.project is None


def test_dataset_defaults_to_mozanalysis_and_definitions_load(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("JETSTREAM_BIGQUERY_PROJECT", "moz-fx-data-experiments")
    monkeypatch.setenv("JETSTREAM_BIGQUERY_LOCATION", "US")
    defs = build_definitions(tmp_path)
    defs.get_repository_def()  # the assets' typed Warehouse / ExportStore parameters accept the production classes
    warehouse = defs.resources["warehouse"]
    assert type(warehouse) is BigQueryWarehouse and warehouse.dataset == "mozanalysis"
    assert warehouse.bigquery.location.env_var_name == "JETSTREAM_BIGQUERY_LOCATION"
