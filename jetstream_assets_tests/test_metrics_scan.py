"""The shared metrics scan (one read of each data source for every window and basis of a run) writes the
same per-window tables as one query per window and basis, on the demo: every period, both bases, with and
without an exposure signal."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.enrollments import compute_enrollments
from jetstream_assets.assets.metrics import compute_metrics
from jetstream_assets.sql import names
from jetstream_assets.sql.metrics_scan import SharedScan, scan_windows, shared_metrics_sql
from jetstream_assets.sql.queries import bases_for
from jetstream_assets.sql.transpile import table_references
from jetstream_assets.warehouse.base import query_listener
from jetstream_assets_tests.worlds import TODAY, build_world

CLIENTS = 3_000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("scan"), CLIENTS) as w:
        yield w


def _cells(world, slug: str) -> list[Cell]:
    planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
    experiment = planner.experiment(slug)
    cells = [planner.plan(slug, d) for d in planner.rerun_dates(experiment)]
    return [c for c in cells if isinstance(c, Cell)]


def _tables(world, cells: list[Cell]) -> dict[str, pd.DataFrame]:
    warehouse = world.warehouse
    out = {}
    for cell in cells:
        for window in cell.windows:
            for basis in bases_for(cell.resolved, window.period):
                table = names.metrics_table(cell.slug, basis.value, window.period, window.index)
                out[table] = warehouse.read_table(table)
    return out


@pytest.mark.parametrize("slug", ["demo-custom", "demo-complete"])
def test_shared_scan_tables_equal_one_window_queries(world, slug):
    cells = _cells(world, slug)
    warehouse = world.warehouse
    first = cells[0]
    compute_enrollments(replace(first, analysis_date=first.last_enrollment_date), warehouse)

    for cell in cells:  # one query per window and basis (Jetstream's way)
        compute_metrics(cell, warehouse)
    one_by_one = _tables(world, cells)

    scan = SharedScan(warehouse)
    scan.plan(cells)
    listener_calls = []
    token = query_listener.set(lambda _wh, sql, _result, _at: listener_calls.append(sql))
    try:
        for cell in cells:
            compute_metrics(cell, warehouse, scan)
    finally:
        query_listener.reset(token)
    shared = _tables(world, cells)

    periods = {t.split("_")[-2] for t in one_by_one}
    bases = {b for t in one_by_one for b in ("enrollments", "exposures") if f"_{b}_" in t}
    assert len(one_by_one) >= 4 and bases == {"enrollments", "exposures"}, (periods, bases)
    if slug == "demo-complete":  # the demo's defaults: every period it configures
        assert any("_day_" in t for t in one_by_one) and any("_week_" in t for t in one_by_one), periods
        assert any("_preenrollment_week_" in t for t in one_by_one) and any("_overall_" in t for t in one_by_one)
    assert shared.keys() == one_by_one.keys()
    for table, expected in one_by_one.items():
        got = shared[table]
        assert list(got.columns) == list(expected.columns), table
        key = ["analysis_id"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True),
            check_dtype=False, obj=table,
        )
    # every telemetry read of the step is one query (the per-window tables are split from its result)
    telemetry = [q for q in listener_calls
                 if any(dataset not in ("", warehouse.dataset) for _, dataset, _ in table_references(q))]
    assert len(telemetry) == 1, len(telemetry)


def test_branch_lookup_runs_once_per_telemetry_row(world):
    """The experiments-map lookup of the first-day filter and the sanity metrics is computed in a projection
    of the data source, before the join that repeats each telemetry row for every (window, basis) it
    falls in, and each distinct lookup once (the equality test above holds the tables unchanged)."""
    cells = _cells(world, "demo-complete")
    closing = [(w, c.analysis_date) for c in cells for w in c.windows]
    windows = scan_windows(cells[0].resolved, cells[0].start_date, cells[0].enrollment_period, closing)
    sql = shared_metrics_sql(cells[0].resolved, windows, "project.dataset.enrollments_demo_complete")
    tree = sqlglot.parse_one(sql, read="bigquery")  # BigQuery syntax, as the dry run needs
    lookups = [f for f in tree.find_all(exp.Anonymous) if "get_key" in f.name]
    assert lookups, sql
    per_select: dict[int, list[str]] = {}
    for lookup in lookups:
        select = lookup.find_ancestor(exp.Select)
        assert not select.args.get("joins"), f"lookup evaluated on joined rows: {select.sql('bigquery')[:300]}"
        assert isinstance(lookup.parent, exp.Dot | exp.Alias), lookup.parent.sql("bigquery")
        per_select.setdefault(id(select), []).append(lookup.sql("bigquery"))
    for found in per_select.values():
        assert len(found) == len(set(found)), found


def test_a_table_the_scan_cannot_write_fails_only_its_cell(world):
    """One per-window table that cannot be replaced (here a folder in its place) fails the cell whose window
    writes it; the other cells of the step still get their tables (the scan falls back to one query per window)."""
    cells = _cells(world, "demo-complete")
    warehouse = world.warehouse
    first = cells[0]
    compute_enrollments(replace(first, analysis_date=first.last_enrollment_date), warehouse)
    week = next(c for c in cells if any(w.period.value == "week" for w in c.windows))
    step = [c for c in cells if c.analysis_date in {week.analysis_date - dt.timedelta(days=1), week.analysis_date,
                                                    week.analysis_date + dt.timedelta(days=1)}]
    assert len(step) == 3
    blocked = warehouse.table_path(names.metrics_table(week.slug, "enrollments", week.windows[-1].period, 1))
    if blocked.exists():
        blocked.unlink()
    blocked.mkdir()
    try:
        scan = SharedScan(warehouse)
        scan.plan(step)
        outcomes = {}
        for cell in step:
            try:
                outcomes[cell.analysis_date] = compute_metrics(cell, warehouse, scan)
            except OSError as e:
                outcomes[cell.analysis_date] = e
    finally:
        blocked.rmdir()
    assert isinstance(outcomes[week.analysis_date], OSError)
    for cell in step:
        if cell is not week:
            assert not isinstance(outcomes[cell.analysis_date], Exception), outcomes[cell.analysis_date]
            for window in cell.windows:
                assert warehouse.table_exists(names.metrics_table(cell.slug, "enrollments", window.period, window.index))
