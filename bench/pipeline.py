"""Seconds and peak memory per pipeline step for one experiment-day: the week-1 window of demo-complete
with the demo metric set, at 100,000 and 1,000,000 clients (or 5,000,000: `--clients 5000000`).

    .venv/bin/python bench/pipeline.py [--clients 100000 1000000] [--keep DIR] [--repeats 3]

The metrics step (both bases, through the shared scan) is also timed against a hand-written DuckDB query
that computes the same columns for both bases in one scan of clients_daily, alternating, and the ratio
printed. The peak of the whole process (every step) is printed last.

Steps are timed through the same functions the Dagster assets call (no Dagster overhead). Peak memory is
the process's resident set sampled every 5 ms during the step. The statistics step is also run the way
Jetstream runs it -- mozanalysis' Bayesian bootstrap once per reference branch -- for its bootstrap_mean
summaries, and the ratio printed: enrollments and metrics run the same mozanalysis SQL as Jetstream, whose
engine is BigQuery, so they have no local reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TODAY = dt.date(2026, 11, 24)
SLUG = "demo-complete"


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples resident memory in a thread while a step runs."""

    def __enter__(self):
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def _reference_module():
    spec = importlib.util.spec_from_file_location("bench_statistics", ROOT / "bench" / "statistics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scan(warehouse, cell):
    from jetstream_assets.sql.metrics_scan import SharedScan

    scan = SharedScan(warehouse)
    scan.plan([cell])
    return scan


def hand_written_metrics(warehouse, cell):
    """The week-1 metrics of demo-complete for both bases, written by hand for DuckDB: one read of the
    window's days of clients_daily, joined once to the enrollments, grouped per client and basis."""
    import duckdb

    from jetstream_assets.sql import names
    from jetstream_assets.windows import time_limits

    window = cell.windows[0]
    limits = time_limits(window, cell.start_date, cell.enrollment_period, cell.analysis_date)
    first = cell.start_date + dt.timedelta(days=window.start)
    enrollments = warehouse.table_path(names.enrollments_table(cell.slug))
    daily = Path(warehouse.root) / "telemetry" / "clients_daily.parquet"
    slug = cell.resolved.config.experiment.normandy_slug
    sql = f"""
    WITH e AS (SELECT * FROM read_parquet('{enrollments}')),
    b AS (SELECT * FROM (VALUES ('enrollments'), ('exposures')) AS t(basis)),
    d AS (
        SELECT client_id, submission_date, active_hours_sum,
            scalar_parent_browser_engagement_total_uri_count_sum AS uri, search_count_all,
            pings_aggregated_by_this_row AS pings, experiments['{slug}'] AS enrolled_branch
        FROM read_parquet('{daily}')
        WHERE submission_date BETWEEN DATE '{first}' AND DATE '{limits.last_date_data_required}'
    )
    SELECT e.*, {window.start} AS analysis_window_start, {window.end} AS analysis_window_end, b.basis,
        COALESCE(SUM(d.active_hours_sum), 0) AS active_hours,
        COALESCE(SUM(d.uri), 0) AS uri_count,
        COALESCE(SUM(d.search_count_all), 0) AS search_count,
        COUNT(d.submission_date) AS days_of_use,
        COALESCE(SUM(d.pings), 0) > 0 AS retained,
        COALESCE(BOOL_OR(d.enrolled_branch != e.branch), FALSE) AS clients_daily_has_contradictory_branch,
        COALESCE(BOOL_OR(d.enrolled_branch IS NULL), FALSE) AS clients_daily_has_non_enrolled_data
    FROM e CROSS JOIN b
    LEFT JOIN d ON d.client_id = e.analysis_id
        AND d.submission_date BETWEEN
            (CASE WHEN b.basis = 'exposures' THEN e.exposure_date ELSE e.enrollment_date END) + {window.start}
            AND (CASE WHEN b.basis = 'exposures' THEN e.exposure_date ELSE e.enrollment_date END) + {window.end}
        AND (d.submission_date != e.enrollment_date OR d.enrolled_branch IS NOT NULL)
    GROUP BY ALL
    """
    target = Path(warehouse.root) / "hand_written.parquet"
    con = duckdb.connect()
    con.execute(f"SET threads = {warehouse.threads}")
    con.execute(f"SET memory_limit = '{warehouse.memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    return target


def _check_same(warehouse, cell, hand_path):
    """The hand-written query computes what the metrics tables hold (else the comparison is unfair)."""
    import pandas as pd

    from jetstream_assets.sql import names

    hand = pd.read_parquet(hand_path)
    window = cell.windows[0]
    for basis in ("enrollments", "exposures"):
        ours = warehouse.read_table(names.metrics_table(cell.slug, basis, window.period, window.index))
        theirs = hand[hand["basis"] == basis]
        for column in ("active_hours", "uri_count", "search_count", "days_of_use"):
            a = ours.set_index("analysis_id")[column].sort_index()
            b = theirs.set_index("analysis_id")[column].sort_index()
            if not ((a - b).abs() <= 1e-9 * (1 + b.abs())).all():
                raise SystemExit(f"hand-written query differs from ours on {basis} {column}")


def bench(clients: int, home: Path, repeats: int = 3) -> list[tuple[str, float, float]]:
    os.environ["JETSTREAM_TODAY"] = TODAY.isoformat()
    from jetstream_assets.planner import Planner
    from jetstream_assets.assets.enrollments import compute_enrollments
    from jetstream_assets.assets.exports import export_statistics
    from jetstream_assets.assets.metrics import compute_metrics
    from jetstream_assets.assets.statistics import compute_statistics
    from jetstream_assets.demo.config_repo import create_config_repo
    from jetstream_assets.demo.experiments import demo_experiments, write_experimenter_file
    from jetstream_assets.demo.telemetry import generate_telemetry
    from jetstream_assets.resources import build_resources, experimenter_file, metric_hub_dir
    from jetstream_assets.sql import names
    from jetstream_assets.sql.queries import metrics_for
    from metric_config_parser.metric import AnalysisPeriod
    from mozilla_nimbus_schemas.jetstream import AnalysisBasis

    experiments = demo_experiments(TODAY)
    write_experimenter_file(experimenter_file(home), TODAY)
    create_config_repo(metric_hub_dir(home))
    started = time.perf_counter()
    # in a child process, so the steps' peak memory is theirs and not the generator's
    child = multiprocessing.get_context("spawn").Process(
        target=generate_telemetry,
        args=(home / "warehouse",),
        kwargs=dict(clients=clients, today=TODAY, experiments=experiments),
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"telemetry generation failed (exit {child.exitcode})")
    print(f"  telemetry for {clients:,} clients generated in {time.perf_counter() - started:.1f}s", flush=True)
    resources = build_resources(home)
    warehouse, store = resources["warehouse"], resources["export_store"]
    planner = Planner(resources["experimenter"], resources["metric_hub"], TODAY)
    record = next(e for e in experiments if e["slug"] == SLUG)
    last = dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)
    week1 = last + dt.timedelta(days=6)
    cell = planner.plan(SLUG, week1)
    cell = replace(cell, windows=[w for w in cell.windows if w.period == AnalysisPeriod.WEEK])
    assert cell.windows and cell.windows[0].index == 1, cell.windows
    rows = []
    with Peak() as p:
        compute_enrollments(replace(cell, analysis_date=last), warehouse)
    rows.append(("enrollments", p.seconds, p.peak))
    with Peak() as p:
        compute_metrics(cell, warehouse, _scan(warehouse, cell))
    rows.append(("metrics (week 1, both bases)", p.seconds, p.peak))
    ours, hand = [], []
    for _ in range(repeats):
        with Peak() as p:
            compute_metrics(cell, warehouse, _scan(warehouse, cell))
        ours.append(p.seconds)
        with Peak() as p:
            check = hand_written_metrics(warehouse, cell)
        hand.append(p.seconds)
    ours_s, hand_s = sorted(ours)[len(ours) // 2], sorted(hand)[len(hand) // 2]
    _check_same(warehouse, cell, check)
    rows.append((f"  metrics SQL, median of {repeats}", ours_s, float("nan")))
    rows.append(("  hand-written one-scan DuckDB query", hand_s, float("nan")))
    rows.append((f"  ratio ours/hand-written {ours_s / hand_s:.2f}x", float("nan"), float("nan")))
    sys.path.insert(0, str(ROOT / "bench"))
    from scans import bigquery_dry_run

    print("  " + bigquery_dry_run(cell), flush=True)
    with Peak() as p:
        compute_statistics(cell, warehouse)
    rows.append(("statistics (week 1)", p.seconds, p.peak))
    with Peak() as p:
        export_statistics(cell, warehouse, store)
    rows.append(("export", p.seconds, p.peak))

    # the statistics step's bootstrap_mean summaries, ours vs the reference's way
    reference = _reference_module()
    table = warehouse.read_table(names.metrics_table(SLUG, "enrollments", AnalysisPeriod.WEEK, 1))
    ours_s = ref_s = 0.0
    done = []
    for summary in metrics_for(cell.resolved, AnalysisPeriod.WEEK, AnalysisBasis.ENROLLMENTS):
        if summary.statistic.name != "bootstrap_mean":
            continue
        data = table[["branch", summary.metric.name]].dropna().rename(columns={summary.metric.name: "metric"})
        seconds, *_ = reference.run_ours(data, "bootstrap_mean", 10_000)
        ours_s += seconds
        seconds, _ = reference.run_reference(data, "bootstrap_mean", 10_000)
        ref_s += seconds
        done.append(summary.metric.name)
    if done:
        rows.append((f"  bootstrap_mean x{len(done)} ours", ours_s, float("nan")))
        rows.append((f"  bootstrap_mean x{len(done)} mozanalysis", ref_s, float("nan")))
        rows.append((f"  ratio reference/ours {ref_s / ours_s:.1f}x", float("nan"), float("nan")))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="Keep the generated homes under this folder.")
    parser.add_argument("--repeats", type=int, default=3, help="Alternating timings of the metrics SQL.")
    args = parser.parse_args(argv)
    for clients in args.clients:
        print(f"== {clients:,} clients, {SLUG}, week-1 window", flush=True)
        if args.keep:  # a new folder under --keep, left in place
            args.keep.mkdir(parents=True, exist_ok=True)
            rows = bench(clients, Path(tempfile.mkdtemp(prefix=f"clients-{clients}-", dir=args.keep)), args.repeats)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                rows = bench(clients, Path(tmp), args.repeats)
        print(f"  {'step':<36} {'seconds':>9} {'peak RSS MiB':>13}")
        for name, seconds, peak in rows:
            s = "" if seconds != seconds else f"{seconds:9.2f}"
            m = "" if peak != peak else f"{peak:13.0f}"
            print(f"  {name:<36} {s:>9} {m:>13}", flush=True)
        peak = max(m for _, _, m in rows if m == m)
        print(f"  peak resident memory of the experiment-day: {peak / 1024:.2f} GiB (target < 6 GiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
