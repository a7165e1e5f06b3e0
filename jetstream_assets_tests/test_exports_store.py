"""The local export store: Jetstream's bucket layout, atomic replacement, listing and deleting."""

import json
import os
from pathlib import Path

import pytest

from jetstream_assets.exports import store as store_module
from jetstream_assets.exports.store import (
    LocalExportStore,
    errors_path,
    metadata_path,
    statistics_path,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalExportStore:
    return LocalExportStore(root=str(tmp_path / "exports"))


def test_paths_follow_jetstream_bucket_layout():
    assert statistics_path("my-exp.v2", "weekly") == "statistics/statistics_my_exp_v2_weekly.json"
    assert statistics_path("exp", "preenrollment_days28") == "statistics/statistics_exp_preenrollment_days28.json"
    assert metadata_path("my-exp") == "metadata/metadata_my_exp.json"
    assert errors_path("my-exp") == "errors/errors_my_exp.json"


def test_unknown_period_suffix_is_refused_naming_the_experiment():
    with pytest.raises(ValueError, match="my-exp.*'week'"):
        statistics_path("my-exp", "week")  # a period, not a table suffix


def test_write_read_and_uri(store: LocalExportStore, tmp_path: Path):
    uri = store.write_json("metadata/metadata_x.json", {"b": [1, 2.5, None], "a": "é"})
    target = tmp_path / "exports" / "metadata" / "metadata_x.json"
    assert uri == target.resolve().as_uri()
    assert json.loads(target.read_text("utf-8")) == {"b": [1, 2.5, None], "a": "é"}
    assert store.read_json("metadata/metadata_x.json") == {"b": [1, 2.5, None], "a": "é"}
    assert store.exists("metadata/metadata_x.json")
    assert not store.exists("metadata/metadata_y.json")


def test_failing_serialisation_leaves_the_old_file_intact(store: LocalExportStore):
    path = "statistics/statistics_x_weekly.json"
    store.write_json(path, [{"point": 1.0}])
    with pytest.raises(ValueError, match="statistics_x_weekly.json.*NaN"):
        store.write_json(path, [{"point": float("nan")}])
    with pytest.raises(ValueError, match="statistics_x_weekly.json"):
        store.write_json(path, [{"point": object()}])
    assert store.read_json(path) == [{"point": 1.0}]
    assert store.list("statistics/") == [path]


def test_no_partial_file_is_visible_during_a_write(store: LocalExportStore, monkeypatch):
    path = "statistics/statistics_x_daily.json"
    store.write_json(path, {"version": 1})
    seen_during_write = []
    real_fsync = os.fsync

    def spy_fsync(fd):
        # The new bytes are on disk in the temporary file; readers still see the complete old file.
        seen_during_write.append((store.read_json(path), store.list("")))
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", spy_fsync)
    store.write_json(path, {"version": 2, "rows": list(range(1000))})
    assert seen_during_write == [({"version": 1}, [path])]
    assert store.read_json(path)["version"] == 2


def test_a_failed_rename_keeps_the_old_file_and_cleans_up(store: LocalExportStore, tmp_path: Path, monkeypatch):
    path = "errors/errors_x.json"
    store.write_json(path, ["old"])

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write_json(path, ["new"])
    monkeypatch.undo()
    assert store.read_json(path) == ["old"]
    assert os.listdir(tmp_path / "exports" / "errors") == ["errors_x.json"]


def test_list_and_delete(store: LocalExportStore):
    assert store.list("statistics/") == []  # no root yet
    paths = [
        statistics_path("exp-a", "weekly"),
        statistics_path("exp-a", "overall"),
        statistics_path("exp-b", "weekly"),
        metadata_path("exp-a"),
    ]
    for p in paths:
        store.write_json(p, [])
    assert store.list("statistics/") == sorted(paths[:3])
    assert store.list("statistics/statistics_exp_a_") == sorted(paths[:2])
    assert store.list("") == sorted(paths)
    store.delete(paths[0])
    store.delete(paths[0])  # idempotent
    assert not store.exists(paths[0])
    assert store.list("statistics/statistics_exp_a_") == [paths[1]]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.json", "statistics/../../x.json", "a//b.json", ""])
def test_paths_must_stay_inside_the_store(store: LocalExportStore, bad: str):
    with pytest.raises(ValueError, match="relative|non-empty"):
        store.write_json(bad, {})


def test_reading_a_missing_export_says_where(store: LocalExportStore):
    with pytest.raises(FileNotFoundError, match="metadata_nope.json"):
        store.read_json("metadata/metadata_nope.json")
