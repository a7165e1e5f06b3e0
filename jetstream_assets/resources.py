"""The engines behind the assets, chosen from the environment.

Locally everything lives under one home folder (JETSTREAM_HOME, default ./.jetstream_home): DuckDB +
Parquet tables and an exports folder. Production sets:

- JETSTREAM_BIGQUERY_PROJECT: tables go to BigQuery in this project (JETSTREAM_BIGQUERY_DATASET, default
  mozanalysis; JETSTREAM_BIGQUERY_MONITORING_DATASET, default monitoring; JETSTREAM_BIGQUERY_LOCATION
  optional);
- JETSTREAM_GCS_BUCKET: exports go to this bucket (JETSTREAM_GCS_PREFIX optional; JETSTREAM_GCS_PROJECT,
  default the BigQuery project);
- JETSTREAM_EXPERIMENTER_URL, JETSTREAM_METRIC_HUB_URL: the live Experimenter API and metric-hub repository.

Which class is used is decided when the code location loads; the BigQuery and GCS values are passed as
`dagster.EnvVar`, so Dagster reads them when a run starts and the UI shows them as env vars. The
Experimenter and metric-hub values stay plain strings: the CLI uses those two resources outside a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.store import ExportStore, LocalExportStore
from jetstream_assets.home import DEFAULT_HOME, home_dir  # noqa: F401 - re-exported
from jetstream_assets.warehouse.base import Warehouse
from jetstream_assets.warehouse.local import LocalWarehouse

BIGQUERY_PROJECT = "JETSTREAM_BIGQUERY_PROJECT"
BIGQUERY_DATASET = "JETSTREAM_BIGQUERY_DATASET"
BIGQUERY_MONITORING_DATASET = "JETSTREAM_BIGQUERY_MONITORING_DATASET"
BIGQUERY_LOCATION = "JETSTREAM_BIGQUERY_LOCATION"
GCS_BUCKET = "JETSTREAM_GCS_BUCKET"
GCS_PREFIX = "JETSTREAM_GCS_PREFIX"
GCS_PROJECT = "JETSTREAM_GCS_PROJECT"


def experimenter_file(home: Path) -> Path:
    return home / "experimenter" / "experiments.json"


def metric_hub_dir(home: Path) -> Path:
    return home / "metric-hub"


def _is_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def _env(name: str, default: str | None = None) -> str | None:
    """An EnvVar for a variable set now (resolved again at run time), else the default."""
    return dg.EnvVar(name) if _is_set(name) else default


def build_warehouse(root: Path) -> Warehouse:
    """BigQuery when JETSTREAM_BIGQUERY_PROJECT is set, else DuckDB + Parquet under `root/warehouse`."""
    if not _is_set(BIGQUERY_PROJECT):
        return LocalWarehouse(root=str(root / "warehouse"))
    from dagster_gcp import BigQueryResource

    from jetstream_assets.warehouse.bigquery import BigQueryWarehouse

    return BigQueryWarehouse(
        bigquery=BigQueryResource(project=dg.EnvVar(BIGQUERY_PROJECT), location=_env(BIGQUERY_LOCATION)),
        dataset=_env(BIGQUERY_DATASET, "mozanalysis"),
        monitoring_dataset=_env(BIGQUERY_MONITORING_DATASET, "monitoring"),
    )


def build_export_store(root: Path) -> ExportStore:
    """A GCS bucket when JETSTREAM_GCS_BUCKET is set, else the folder `root/exports`."""
    if not _is_set(GCS_BUCKET):
        return LocalExportStore(root=str(root / "exports"))
    from dagster_gcp import GCSResource

    from jetstream_assets.exports.gcs import GCSExportStore

    return GCSExportStore(
        gcs=GCSResource(project=_env(GCS_PROJECT) or _env(BIGQUERY_PROJECT)),
        bucket=dg.EnvVar(GCS_BUCKET),
        prefix=_env(GCS_PREFIX, ""),
    )


def build_resources(home: str | os.PathLike | None = None) -> dict:
    root = home_dir(home)
    experimenter_url = os.environ.get("JETSTREAM_EXPERIMENTER_URL") or None
    return {
        "warehouse": build_warehouse(root),
        "export_store": build_export_store(root),
        "experimenter": Experimenter(  # the API when its URL is set, else the home's file (never both)
            url=experimenter_url, path=None if experimenter_url else str(experimenter_file(root)),
        ),
        "metric_hub": MetricHub(
            path=str(metric_hub_dir(root)), url=os.environ.get("JETSTREAM_METRIC_HUB_URL") or None
        ),
    }
