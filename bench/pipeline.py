"""Seconds and peak memory per pipeline step for one experiment-day: the week-1 window of demo-complete
with the demo metric set, at 100,000 and 1,000,000 clients.

    .venv/bin/python bench/pipeline.py [--clients 100000 1000000] [--keep DIR]

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


def bench(clients: int, home: Path) -> list[tuple[str, float, float]]:
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
        compute_metrics(cell, warehouse)
    rows.append(("metrics (week 1, both bases)", p.seconds, p.peak))
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
    args = parser.parse_args(argv)
    for clients in args.clients:
        print(f"== {clients:,} clients, {SLUG}, week-1 window", flush=True)
        with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
            rows = bench(clients, Path(tmp))
        print(f"  {'step':<36} {'seconds':>9} {'peak RSS MiB':>13}")
        for name, seconds, peak in rows:
            s = "" if seconds != seconds else f"{seconds:9.2f}"
            m = "" if peak != peak else f"{peak:13.0f}"
            print(f"  {name:<36} {s:>9} {m:>13}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
