"""A run over several dates writes each experiment's statistics files (and its report, and its metadata file)
once, at the experiment's last cell with a window; the earlier cells say which cell wrote them, and the files equal what
exporting every date in turn (the former way) leaves behind."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import dagster as dg
import pytest

from jetstream_assets.assets.exports import export_statistics
from jetstream_assets.checks.exports import EXPORTED_PATHS, EXPORTS_VALID
from jetstream_assets.exports.store import LocalExportStore, report_path
from jetstream_assets.partitions import cell_key
from jetstream_assets.planner import Cell, Planner
from jetstream_assets_tests.worlds import TODAY, build_world

SLUG = "demo-live"
DATES = [dt.date(2026, 11, 14) + dt.timedelta(days=n) for n in range(4)]  # daily windows; week 1 on the 16th


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("export-once")
    with build_world(home, 3_000) as w:
        written: Counter = Counter()
        original = LocalExportStore._put

        def counting(self, path, data):
            written[path] += 1
            return original(self, path, data)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(LocalExportStore, "_put", counting)
            from jetstream_assets.runner import run_experiment

            w.summary = run_experiment(w.instance, w.defs, SLUG, DATES)
        w.extra["written"] = written
        yield w


def _materializations(world, asset: str = "statistics_export") -> dict[str, dict]:
    records = world.instance.get_records_for_run(
        world.summary.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    found = {}
    for record in records:
        m = record.event_log_entry.dagster_event.event_specific_data.materialization
        if m.asset_key == dg.AssetKey(asset):
            found[m.partition] = m.metadata
    return found


def test_each_statistics_file_and_the_report_are_written_once(world):
    assert world.summary.success, world.summary.errors
    assert world.summary.statuses["statistics_export"] == {"computed": len(DATES)}
    assert world.summary.statuses["metadata_export"] == {"computed": len(DATES)}
    exported = {p: n for p, n in world.extra["written"].items()
                if p.startswith(("statistics/", "reports/", "metadata/"))}
    assert "metadata/metadata_demo_live.json" in exported
    assert "statistics/statistics_demo_live_daily.json" in exported
    assert "statistics/statistics_demo_live_weekly.json" in exported
    assert report_path(SLUG) in exported
    assert set(exported.values()) == {1}, exported


def test_earlier_cells_name_the_cell_that_wrote_their_files_and_their_check_reads_them(world):
    found = _materializations(world)
    last = str(cell_key(SLUG, DATES[-1]))
    assert set(found) == {str(cell_key(SLUG, d)) for d in DATES}
    assert "written_by" not in found[last]
    files = found[last][EXPORTED_PATHS].data
    for day in DATES[:-1]:
        metadata = found[str(cell_key(SLUG, day))]
        assert metadata["written_by"].value == last
        assert metadata[EXPORTED_PATHS].data == files
        assert metadata["files"].value == found[last]["files"].value == len(files)
    metadata = _materializations(world, "metadata_export")
    assert set(metadata) == set(found) and "written_by" not in metadata[last]
    assert {metadata[str(cell_key(SLUG, d))]["written_by"].value for d in DATES[:-1]} == {last}
    checks = world.instance.get_records_for_run(
        world.summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    verdicts = {}
    for record in checks:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == EXPORTS_VALID:
            verdicts[evaluation.asset_key.to_user_string(), evaluation.partition] = evaluation
    # still one check evaluation per cell and export asset, each reading the files back
    assert set(verdicts) == {(a, p) for a in ("statistics_export", "metadata_export") for p in found}
    assert all(v.passed for v in verdicts.values())
    assert all(verdicts["statistics_export", p].metadata["checked"].value == len(files) for p in found)


def _rows(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_the_files_equal_exporting_every_date_in_turn(world, tmp_path):
    planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
    store = world.resources["export_store"]
    per_date = LocalExportStore(root=str(tmp_path / "per-date"))
    for day in DATES:  # the former statistics_export step: every cell writes every file
        cell = planner.plan(SLUG, day)
        assert isinstance(cell, Cell) and cell.windows
        export_statistics(cell, world.warehouse, per_date, world.resources["metric_hub"],
                          world.resources["experimenter"])
    files = sorted(p.relative_to(tmp_path / "per-date") for p in (tmp_path / "per-date").rglob("*.json"))
    assert [str(f) for f in files] == ["statistics/statistics_demo_live_daily.json",
                                       "statistics/statistics_demo_live_weekly.json"]
    for path in files:  # equal as parsed JSON; the view's row order is DuckDB's, not fixed either way
        assert _rows(store.read_json(str(path))) == _rows(per_date.read_json(str(path))), path
    # the report is the last cell's, as before; it also shows the monitoring logs, which grew after the run,
    # so it is compared up to them: same statistics shown, written for the same date
    run_report, later = store.read_text(report_path(SLUG)), per_date.read_text(report_path(SLUG))
    assert DATES[-1].isoformat() in run_report
    assert run_report.count('class="plot"') == later.count('class="plot"') > 0


def test_a_file_read_back_again_is_validated_once_per_content(tmp_path, monkeypatch):
    """Every earlier cell's check reads the writer's files back: the same bytes are validated once, and a file
    that changed is validated again (what counts is what the store holds at each check)."""
    from jetstream_assets.checks import exports as checks

    store = LocalExportStore(root=str(tmp_path))
    path = "statistics/statistics_demo_live_daily.json"
    row = {"metric": "retained", "statistic": "binomial", "branch": "control", "ci_width": 0.95, "point": 0.5,
           "lower": 0.4, "upper": 0.6, "segment": "all", "analysis_basis": "enrollments", "window_index": "1"}
    store.write_json(path, [row])
    validated = []
    original = checks._verdict
    monkeypatch.setattr(checks, "_verdict", lambda *a: validated.append(a[1]) or original(*a))
    assert [checks.validation_error(store, path) for _ in range(3)] == [None] * 3
    assert validated == [path]
    store.write_json(path, [{**row, "ci_width": 5.0}])  # changed behind the step's back
    assert "ci_width" in checks.validation_error(store, path)
    assert validated == [path, path]
    (tmp_path / path).unlink()
    assert checks.validation_error(store, path) == "the file is missing from the export store"
