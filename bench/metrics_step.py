"""The metrics step of a whole-experiment rerun, this code (A) against a baseline commit's shared scan (B),
alternating in one process on one demo home: the step's wall and CPU seconds and their ratio B/A.

    .venv/bin/python bench/metrics_step.py --home DIR [--baseline <commit>] [--repeats 5] [--experiment demo-custom]

DIR is a demo home whose enrollments are already computed (e.g. a home of `bench/rerun.py --keep`, or one
made by `jetstream-assets demo`). B swaps in the baseline's `sql/metrics_scan.py` SQL and the local
warehouse's `run_query_split` (read with `git show`), the rest of the step is this code. Before timing, each
side writes the step's per-window tables once and they are compared (values, column order, dtypes). The
home's per-window metrics tables are rewritten (with equal tables) each time a side runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TODAY = "2026-11-24"


def _baseline_module(commit: str, path: str, name: str, into: Path):
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout
    file = into / f"{name}.py"
    file.write_text(text)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--baseline", default="683d68f")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--experiment", default="demo-custom")
    args = parser.parse_args(argv)
    os.environ.setdefault("JETSTREAM_TODAY", TODAY)

    import pandas as pd

    from jetstream_assets.assets.metrics import compute_metrics
    from jetstream_assets.planner import Cell, Planner
    from jetstream_assets.resources import build_resources
    from jetstream_assets.sql import metrics_scan, names
    from jetstream_assets.warehouse import local

    with tempfile.TemporaryDirectory() as tmp:
        base_scan = _baseline_module(args.baseline, "jetstream_assets/sql/metrics_scan.py", "base_metrics_scan",
                                     Path(tmp))
        base_local = _baseline_module(args.baseline, "jetstream_assets/warehouse/local.py", "base_local", Path(tmp))
    sides = {
        "A": (metrics_scan.shared_metrics_sql, local.LocalWarehouse.run_query_split),
        "B": (base_scan.shared_metrics_sql, base_local.LocalWarehouse.run_query_split),
    }
    resources = build_resources(args.home)
    warehouse = resources["warehouse"]
    today = dt.date.fromisoformat(os.environ["JETSTREAM_TODAY"])
    planner = Planner(resources["experimenter"], resources["metric_hub"], today)
    experiment = planner.experiment(args.experiment)
    cells = [c for c in (planner.plan(args.experiment, d) for d in planner.rerun_dates(experiment))
             if isinstance(c, Cell) and c.windows]

    def step(side: str) -> None:
        metrics_scan.shared_metrics_sql, local.LocalWarehouse.run_query_split = sides[side]
        scan = metrics_scan.SharedScan(warehouse)
        scan.plan(cells)
        for cell in cells:
            compute_metrics(cell, warehouse, scan)

    def tables() -> dict[str, pd.DataFrame]:
        out = {}
        for cell in cells:
            for window in cell.windows:
                for basis in ("enrollments", "exposures"):
                    path = warehouse.table_path(names.metrics_table(cell.slug, basis, window.period, window.index))
                    if path.exists():
                        out[path.name] = pd.read_parquet(path).sort_values("analysis_id").reset_index(drop=True)
        return out

    written = {}
    try:
        for side in ("B", "A"):  # once each: caches warmed, and the tables each side writes
            step(side)
            written[side] = tables()
        if written["A"].keys() != written["B"].keys():
            raise SystemExit(f"tables differ: {sorted(written['A'].keys() ^ written['B'].keys())}")
        for name, table in written["A"].items():
            pd.testing.assert_frame_equal(table, written["B"][name], obj=name)
        print(f"{args.experiment}: {len(cells)} cells, {len(written['A'])} per-window tables, identical "
              f"(values, column order, dtypes)")
        times: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
        for repeat in range(args.repeats):
            for side in ("B", "A") if repeat % 2 == 0 else ("A", "B"):
                wall, cpu = time.perf_counter(), time.process_time()
                step(side)
                times[side].append((time.perf_counter() - wall, time.process_time() - cpu))
    finally:  # this code's functions back in place
        metrics_scan.shared_metrics_sql, local.LocalWarehouse.run_query_split = sides["A"]

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    wall = {s: median([w for w, _ in v]) for s, v in times.items()}
    cpu = {s: median([c for _, c in v]) for s, v in times.items()}
    print(f"metrics step, median of {args.repeats}: A (this code) {wall['A']:.2f}s wall ({cpu['A']:.2f}s CPU), "
          f"B ({args.baseline}) {wall['B']:.2f}s wall ({cpu['B']:.2f}s CPU)")
    print(f"speed-up B/A: {wall['B'] / wall['A']:.2f}x wall, {cpu['B'] / cpu['A']:.2f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
