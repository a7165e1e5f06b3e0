"""The statistics step of a whole-experiment rerun, this code against a baseline commit, alternating.

Given a home where `run --experiment demo-custom --all-dates` has run (its metrics tables are the input),
each side copies the home's results (telemetry linked, not copied) and times, in one process after its
imports, the statistics step's compute over every cell of the rerun, in date order, with the step's shared
state made once as the step makes it: the rows computed and their tables written. A B A B ...; then the
results of the two sides are compared as bench/rerun.py compares them (statistics within Monte Carlo error;
exit status 1 when they differ), and the statistics tables that are bit-identical are counted.

    .venv/bin/python bench/statistics_step.py --home DIR --baseline <commit> [--repeats 3] [--profile]

With --profile, this code's step runs once more under cProfile and the top costs are printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rerun import ROOT, SLUG, TODAY, _env, compare, extract  # noqa: E402

# Run in a child process whose PYTHONPATH is the side's code; prints one JSON line.
TIMED = """
import datetime as dt, json, sys, time, cProfile, pstats, io
from pathlib import Path
import jetstream_assets  # first, as in the CLI: it sets the process' numerical libraries up before numpy loads
import scipy.stats  # noqa: F401 - imported before timing, as the step would have by its second cell
from jetstream_assets.assets.cells import StepResources
from jetstream_assets.assets import statistics as step
from jetstream_assets.planner import Cell, Planner
from jetstream_assets.resources import build_resources
home, slug, profile = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
r = build_resources(home)
planner = Planner(r["experimenter"], r["metric_hub"], dt.date.fromisoformat(sys.argv[4]))
experiment = planner.experiment(slug)
cells = [c for c in (planner.plan(slug, d) for d in planner.rerun_dates(experiment)) if isinstance(c, Cell)]
resources = StepResources(r["experimenter"], r["metric_hub"], r["warehouse"], r["export_store"])
profiler = cProfile.Profile() if profile else None
started = time.perf_counter(), time.process_time()
if profiler:
    profiler.enable()
compute = step.statistics_step(planner, resources, [])
for cell in cells:
    compute(cell, resources)
if profiler:
    profiler.disable()
wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
text = ""
if profiler:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(45)
    stats.sort_stats("tottime").print_stats(30)
    text = out.getvalue()
print(json.dumps({"wall": wall, "cpu": cpu, "cells": len(cells), "profile": text, "code": step.__file__}))
"""


def copy_home(kept: Path, into: Path) -> Path:
    """The kept home without its Dagster instance and exports; telemetry linked, results copied."""
    into.mkdir(parents=True)
    for part in ("experimenter", "metric-hub"):
        shutil.copytree(kept / part, into / part, symlinks=True)
    (into / "warehouse").mkdir()
    (into / "warehouse" / "telemetry").symlink_to(kept / "warehouse" / "telemetry")
    shutil.copytree(kept / "warehouse" / "mozanalysis", into / "warehouse" / "mozanalysis")
    return into


def timed(code: Path, home: Path, profile: bool = False) -> dict:
    done = subprocess.run([sys.executable, "-c", TIMED, str(home), SLUG, "1" if profile else "0", TODAY],
                          env=_env(code), cwd=home.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"statistics step failed in {code}:\n{done.stdout}\n{done.stderr}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(got["code"]).is_relative_to(code):
        raise SystemExit(f"the step ran {got['code']}, not the code in {code}")
    return got


def identical(a: Path, b: Path) -> tuple[int, int]:
    """(statistics tables, how many of them are bit-identical on both sides)."""
    names = sorted(p.name for p in a.glob("statistics_*.parquet"))
    return len(names), sum(pd.read_parquet(a / n).equals(pd.read_parquet(b / n)) for n in names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="A home where the rerun of demo-custom has run.")
    parser.add_argument("--baseline", required=True, help="Commit to compare against.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.baseline], check=True,
                            capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="statistics-step-"))
    try:
        baseline = extract(commit, work / "baseline")
        sides = {"A (this code)": ROOT, f"B ({commit[:10]})": baseline}
        homes = {name: copy_home(args.home.resolve(), work / f"home-{i}") for i, name in enumerate(sides)}
        walls: dict[str, list[float]] = {n: [] for n in sides}
        cpus: dict[str, list[float]] = {n: [] for n in sides}
        for repeat in range(args.repeats):
            order = list(sides.items()) if repeat % 2 == 0 else list(reversed(sides.items()))
            for name, code in order:
                got = timed(code, homes[name])
                walls[name].append(got["wall"])
                cpus[name].append(got["cpu"])
                print(f"  run {repeat + 1} {name}: {got['wall']:.2f}s wall, {got['cpu']:.2f}s CPU "
                      f"({got['cells']} cells)", flush=True)
        (a, wa), (b, wb) = ((n, float(np.median(t))) for n, t in walls.items())
        ca, cb = (float(np.median(c)) for c in cpus.values())
        print(f"statistics step of the {SLUG} rerun, median of {args.repeats}: {a} {wa:.2f}s wall ({ca:.2f}s CPU), "
              f"{b} {wb:.2f}s wall ({cb:.2f}s CPU)")
        print(f"speed-up B/A: {wb / wa:.2f}x wall, {cb / ca:.2f}x CPU")
        results = [homes[n] / "warehouse" / "mozanalysis" for n in (a, b)]
        tables, same = identical(*results)
        print(f"statistics tables: {same} of {tables} bit-identical")
        problems = compare(*results)  # bench/rerun.py's: tables identical, statistics within Monte Carlo error
        print("results: " + ("equal" if not problems else "DIFFERENT\n  " + "\n  ".join(problems)))
        if args.profile:
            print(timed(ROOT, homes[a], profile=True)["profile"])
        return 1 if problems else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
