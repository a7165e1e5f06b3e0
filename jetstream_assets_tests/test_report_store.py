"""reports/<slug>.html in both export stores: written whole, served as HTML, kept inside the store."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
from dagster_gcp import GCSResource

from jetstream_assets.exports.gcs import GCSExportStore
from jetstream_assets.exports.store import LocalExportStore, content_type, report_path

PAGE = "<!DOCTYPE html>\n<html><body><h1>Résultats</h1></body></html>\n"


def test_report_path_uses_the_slug_as_the_other_exports_do():
    assert report_path("my-exp.v2") == "reports/my_exp_v2.html"
    assert report_path("../../etc") == "reports/______etc.html"  # a slug can never leave the folder
    with pytest.raises(ValueError, match="slug"):
        report_path("")


def test_content_type_follows_the_suffix():
    assert content_type("reports/x.html") == "text/html; charset=utf-8"
    assert content_type("statistics/statistics_x_weekly.json") == "application/json"


def test_local_store_writes_html_atomically_and_reads_it_back(tmp_path: Path):
    store = LocalExportStore(root=str(tmp_path / "exports"))
    uri = store.write_text(report_path("my-exp"), PAGE)
    target = tmp_path / "exports" / "reports" / "my_exp.html"
    assert uri == target.resolve().as_uri()
    assert target.read_text("utf-8") == PAGE and store.read_text(report_path("my-exp")) == PAGE
    assert store.list("reports/") == ["reports/my_exp.html"]
    store.write_text(report_path("my-exp"), "<p>v2</p>")
    assert store.read_text(report_path("my-exp")) == "<p>v2</p>"
    assert [p.name for p in target.parent.iterdir()] == ["my_exp.html"]  # no temporary file left behind
    with pytest.raises(ValueError, match="relative to the store root"):
        store.write_text("../outside.html", PAGE)
    with pytest.raises(TypeError, match="must be a str"):
        store.write_text(report_path("my-exp"), PAGE.encode())




def test_gcs_store_serves_the_report_as_html(gcs_emulator):
    bucket = f"results-{uuid.uuid4().hex[:12]}"
    GCSResource().get_client().create_bucket(bucket)
    store = GCSExportStore(gcs=GCSResource(), bucket=bucket, prefix="jetstream")
    uri = store.write_text(report_path("my-exp"), PAGE)
    assert uri == f"gs://{bucket}/jetstream/reports/my_exp.html"
    key = urllib.request.quote("jetstream/reports/my_exp.html", safe="")
    with urllib.request.urlopen(f"{gcs_emulator}/storage/v1/b/{bucket}/o/{key}") as r:
        assert json.loads(r.read())["contentType"].startswith("text/html")
    assert store.read_text(report_path("my-exp")) == PAGE
    # JSON exports keep their content type
    store.write_json("metadata/metadata_my_exp.json", {"a": 1})
    key = urllib.request.quote("jetstream/metadata/metadata_my_exp.json", safe="")
    with urllib.request.urlopen(f"{gcs_emulator}/storage/v1/b/{bucket}/o/{key}") as r:
        assert json.loads(r.read())["contentType"] == "application/json"
