"""The shared metrics scan (one read of each data source for every window and basis of a run) writes the
same per-window tables as one query per window and basis, on the demo: every period, both bases, with and
without an exposure signal."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import attr
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.enrollments import compute_enrollments
from jetstream_assets.assets.metrics import compute_metrics
from jetstream_assets.sql import names
from jetstream_assets.sql.metrics_scan import SharedScan, _project_lookups, scan_windows, shared_metrics_sql
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
            obj=table,
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


def _scan_sql(world, slug: str) -> tuple[list[Cell], str]:
    cells = _cells(world, slug)
    closing = [(w, c.analysis_date) for c in cells for w in c.windows]
    windows = scan_windows(cells[0].resolved, cells[0].start_date, cells[0].enrollment_period, closing)
    return cells, shared_metrics_sql(cells[0].resolved, windows, f"project.dataset.{names.enrollments_table(slug)}")


def _cte(tree: exp.Expression, name: str) -> exp.Select:
    return next(c.this for c in tree.find_all(exp.CTE) if c.alias == name)


@pytest.mark.parametrize("slug", ["demo-custom", "demo-complete"])
def test_a_telemetry_row_meets_only_the_windows_holding_its_day(world, slug):
    """Each telemetry row is matched to the windows whose days hold it by an equality on the day counted
    from the anchor date (a hash join on the day), not by a join on the client that pairs it with every
    window of its client before the dates are compared; and each (client, days) is aggregated once, however
    many (window, basis) rows share those days (the two bases of a window, with an exposure signal)."""
    cells, sql = _scan_sql(world, slug)
    tree = sqlglot.parse_one(sql, read="bigquery")
    rows = _cte(tree, "ds_0_rows")
    day_join = next(j for j in rows.args["joins"] if j.this.name == "span_days")
    equalities = [eq for eq in day_join.args["on"].find_all(exp.EQ)
                  if any(isinstance(side, exp.DateDiff) for side in (eq.left, eq.right))]
    assert equalities, day_join.sql("bigquery")
    # the (client, days) aggregation joins the matched rows on client AND days, each row to one group
    grouped = _cte(tree, "ds_0")
    left = grouped.args["joins"][-1]
    keys = {col.name for eq in left.args["on"].find_all(exp.EQ) for col in eq.find_all(exp.Column)}
    assert {"analysis_id", "_scan_span"} <= keys, left.sql("bigquery")
    spans = _cte(tree, "analysis_spans")
    n_spans = len(list(spans.find_all(exp.Select)))
    windows = _cte(tree, "analysis_windows")
    n_windows = len(list(windows.find_all(exp.Select)))
    if cells[0].resolved.config.experiment.exposure_signal is not None:  # both bases count from enrollment
        assert n_spans * 2 == n_windows, (n_spans, n_windows)
    else:  # the exposures basis counts its days from the exposure date
        assert n_spans == n_windows, (n_spans, n_windows)


def test_a_metric_referring_to_a_window_column_is_queried_window_by_window(world):
    """A metric whose SQL refers to the exposure date (which differs between the bases sharing an
    aggregation) is not computed by the shared scan, which names the reference; the step's tables come from
    the one-window queries instead, with the metric."""
    cells = _cells(world, "demo-custom")
    warehouse = world.warehouse
    compute_enrollments(replace(cells[0], analysis_date=cells[0].last_enrollment_date), warehouse)
    resolved = cells[0].resolved
    summaries = {p: list(s) for p, s in resolved.config.metrics.items()}
    period, index = next((p, i) for p, ss in summaries.items() for i, s in enumerate(ss)
                         if s.metric.select_expression and s.metric.name == "days_of_use")
    summary = summaries[period][index]
    metric = attr.evolve(summary.metric, select_expression="COUNTIF(submission_date >= e.exposure_date)")
    for p, ss in summaries.items():
        summaries[p] = [attr.evolve(s, metric=metric) if s.metric.name == "days_of_use" else s for s in ss]
    changed = replace(resolved, config=attr.evolve(resolved.config, metrics=summaries))
    cell = next(replace(c, resolved=changed) for c in cells if any(w.period == period for w in c.windows))
    closing = [(w, cell.analysis_date) for w in cell.windows]
    with pytest.raises(ValueError, match=r"e\.exposure_date"):
        shared_metrics_sql(changed, scan_windows(changed, cell.start_date, cell.enrollment_period, closing),
                           "project.dataset.enrollments")
    scan = SharedScan(warehouse)
    scan.plan([cell])
    window = next(w for w in cell.windows if w.period == period)
    assert scan.table(cell, window, AnalysisBasis.EXPOSURES) is None
    compute_metrics(cell, warehouse, scan)
    table = warehouse.read_table(names.metrics_table(cell.slug, "exposures", period, window.index))
    assert "days_of_use" in table.columns and len(table)


@pytest.mark.parametrize("column_type", ["native", "glean", "events_stream"])
def test_branch_lookups_of_every_experiments_column_type_are_projected_once(column_type):
    """The first-day filter and the sanity metrics of a data source look the branch up in the same way (the
    experiments map, or events_stream's event_extra JSON): each distinct lookup becomes one column of the
    data source's projection, and none is left to run on the joined rows."""
    from mozanalysis.metrics import DataSource

    ds = DataSource(name="source", from_expr="mozdata.telemetry.source", experiments_column_type=column_type)
    lookups: dict[str, str] = {}
    texts = [ds.experiments_column_expr.format(submission_date="submission_date", experiment_slug="my-exp")]
    texts += [m.select_expr.format(experiment_slug="my-exp") for m in ds.get_sanity_metrics("my-exp")]
    projected = [_project_lookups(text, lookups) for text in texts]
    assert len(lookups) == 1, lookups
    for text in projected:
        assert "get_key" not in text and "JSON_VALUE" not in text, text
        assert f"ds.{next(iter(lookups.values()))}" in text, text
    expr = next(iter(lookups))
    sqlglot.parse_one(f"SELECT {expr} AS b FROM t AS ds", read="bigquery")  # BigQuery syntax
