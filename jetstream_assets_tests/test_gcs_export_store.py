"""The GCS export store against a real GCS gcs_emulator server on 127.0.0.1 (anonymous credentials, no internet)."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pandas as pd
import pytest
from dagster_gcp import GCSResource
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.exports import export_metadata, export_statistics
from jetstream_assets.checks.exports import validation_error
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import write_experimenter_file
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.gcs import GCSExportError, GCSExportStore
from jetstream_assets.exports.store import metadata_path, statistics_path
from jetstream_assets.sql import names
from jetstream_assets.statistics.results import STATISTIC_COLUMNS
from jetstream_assets_tests.worlds import TODAY




@pytest.fixture
def bucket(gcs_emulator) -> str:
    name = f"results-{uuid.uuid4().hex[:12]}"
    GCSResource().get_client().create_bucket(name)
    return name


def _raw(gcs_emulator: str, bucket: str, key: str) -> tuple[bytes, str]:
    """An object's bytes and content type as any reader of the bucket gets them (plain HTTP)."""
    quoted = urllib.request.quote(key, safe="")
    with urllib.request.urlopen(f"{gcs_emulator}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media") as r:
        data = r.read()
    with urllib.request.urlopen(f"{gcs_emulator}/storage/v1/b/{bucket}/o/{quoted}") as r:
        meta = json.loads(r.read())
    return data, meta["contentType"]


def test_write_read_uri_and_content_type_under_a_prefix(gcs_emulator, bucket):
    store = GCSExportStore(gcs=GCSResource(), bucket=bucket, prefix="/jetstream/")
    path = metadata_path("my-exp")
    uri = store.write_json(path, {"b": [1, 2.5, None], "a": "é"})
    assert uri == f"gs://{bucket}/jetstream/metadata/metadata_my_exp.json" == store.uri(path)
    data, content_type = _raw(gcs_emulator, bucket, "jetstream/metadata/metadata_my_exp.json")
    assert content_type == "application/json"
    assert json.loads(data.decode("utf-8")) == {"b": [1, 2.5, None], "a": "é"}
    assert store.read_json(path) == {"b": [1, 2.5, None], "a": "é"}
    assert store.exists(path) and not store.exists(metadata_path("other"))
    store.write_json(path, {"version": 2})  # replaced whole
    assert store.read_json(path) == {"version": 2}


def test_list_and_delete_stay_inside_the_store_prefix(bucket):
    ours = GCSExportStore(gcs=GCSResource(), bucket=bucket, prefix="jetstream")
    root = GCSExportStore(gcs=GCSResource(), bucket=bucket)
    weekly, daily = statistics_path("x", "weekly"), statistics_path("x", "daily")
    for path in (weekly, daily, metadata_path("x")):
        ours.write_json(path, [])
    root.write_json(statistics_path("y", "weekly"), [])  # another writer at the bucket root
    assert ours.list("statistics/") == [daily, weekly]
    assert ours.list() == [metadata_path("x"), daily, weekly]
    assert ours.list("statistics/statistics_x_w") == [weekly]
    assert root.list("statistics/") == ["statistics/statistics_y_weekly.json"]
    ours.delete(weekly)
    ours.delete(weekly)  # idempotent
    assert ours.list("statistics/") == [daily]
    assert root.exists(statistics_path("y", "weekly"))


def test_missing_file_and_bad_paths_get_clear_errors(bucket):
    store = GCSExportStore(gcs=GCSResource(), bucket=bucket)
    with pytest.raises(FileNotFoundError, match=f"gs://{bucket}/errors/errors_nope.json"):
        store.read_json("errors/errors_nope.json")
    with pytest.raises(ValueError, match="relative"):
        store.write_json("../escape.json", {})
    with pytest.raises(ValueError, match="relative"):
        store.exists("/statistics/x.json")
    with pytest.raises(ValueError, match="NaN"):
        store.write_json(metadata_path("x"), {"point": float("nan")})
    assert not store.exists(metadata_path("x"))  # nothing half-written


def test_a_missing_bucket_is_an_error_naming_the_uri(gcs_emulator):
    store = GCSExportStore(gcs=GCSResource(), bucket="no-such-bucket-here")
    with pytest.raises(GCSExportError, match="gs://no-such-bucket-here/metadata/metadata_x.json.*bucket exists"):
        store.write_json(metadata_path("x"), {})


def test_bucket_with_a_path_is_refused(gcs_emulator):
    store = GCSExportStore(gcs=GCSResource(), bucket="gs://results/jetstream")
    with pytest.raises(GCSExportError, match="bucket name only.*JETSTREAM_GCS_PREFIX"):
        store.exists(metadata_path("x"))


class ViewsOnly:
    """The two warehouse calls the statistics export makes, over in-memory statistics views."""

    def __init__(self, views: dict[str, pd.DataFrame]):
        self.views = views

    def table_exists(self, table: str, dataset: str | None = None) -> bool:
        return table in self.views

    def read_table(self, table: str, columns=None, dataset: str | None = None) -> pd.DataFrame:
        return self.views[table].copy()


@pytest.fixture(scope="module")
def week_cell(tmp_path_factory) -> tuple[Cell, MetricHub, ViewsOnly]:
    """The demo's complete experiment on the day its first week closes, with that week's statistics."""
    home = tmp_path_factory.mktemp("gcs_world")
    experimenter = Experimenter(path=str(write_experimenter_file(home / "experiments.json", TODAY)))
    metric_hub = MetricHub(path=str(home / "metric-hub"))
    create_config_repo(home / "metric-hub")
    planner = Planner(experimenter, metric_hub, TODAY)
    slug = "demo-complete"
    cell = next(
        plan
        for day in planner.rerun_dates(planner.experiment(slug))
        if isinstance(plan := planner.plan(slug, day), Cell)
        and AnalysisPeriod.WEEK in plan.periods
    )
    rows = pd.DataFrame(
        [
            ["active_hours", "mean", None, "control", None, None, 0.95, 1.0, 0.9, 1.1, "all", "enrollments"],
            ["active_hours", "mean", None, "treatment", None, None, 0.95, 1.1, 1.0, 1.2, "all", "enrollments"],
            ["active_hours", "mean", None, "treatment", "relative_uplift", "control", 0.95, 0.1, 0.02, 0.18,
             "all", "enrollments"],
        ],
        columns=STATISTIC_COLUMNS,
    ).assign(window_index=1)
    return cell, metric_hub, ViewsOnly({names.statistics_view(slug, AnalysisPeriod.WEEK): rows})


def test_statistics_and_metadata_exports_go_through_gcs_and_validate(gcs_emulator, bucket, week_cell):
    cell, metric_hub, warehouse = week_cell
    store = GCSExportStore(gcs=GCSResource(), bucket=bucket, prefix="v1")

    stats = export_statistics(cell, warehouse, store)
    weekly = statistics_path(cell.slug, "weekly")
    assert stats["files"] == 1 and stats["exported_paths"].value == [weekly]
    assert stats["export_weekly"].value == f"gs://{bucket}/v1/{weekly}"  # a URL in the UI, not a path
    assert validation_error(store, weekly) is None  # read back through GCS, checked against the schema
    data, content_type = _raw(gcs_emulator, bucket, f"v1/{weekly}")
    exported = json.loads(data)
    assert content_type == "application/json"
    assert [(r["branch"], r["comparison"], r["window_index"]) for r in exported] == [
        ("control", None, "1"), ("treatment", None, "1"), ("treatment", "relative_uplift", "1"),
    ]

    meta = export_metadata(cell, metric_hub, store)
    path = metadata_path(cell.slug)
    assert meta["file"].value == f"gs://{bucket}/v1/{path}"
    assert validation_error(store, path) is None
    assert "active_hours" in store.read_json(path)["metrics"]
    assert store.list() == [path, weekly]
