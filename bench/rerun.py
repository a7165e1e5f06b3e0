"""Whole-experiment rerun, this code against a baseline commit, alternating in one run.

`jetstream-assets run --experiment demo-custom --all-dates` on a demo home of N clients, timed for the
current checkout (A) and for a baseline commit (B, extracted with `git archive` into a temporary folder and
imported through PYTHONPATH with this venv), A B A B ... so both see the same machine load. Each side
generates its own demo world with its own code (same seed, same data) and every timed run starts from an
empty results dataset and Dagster instance. Afterwards the results of the last run of each side are
compared: enrollments and metrics tables identical (rows sorted by client), statistics equal within their
Monte Carlo error (bootstrap rows at the same seeds).

    .venv/bin/python bench/rerun.py --baseline <commit> [--clients 100000] [--repeats 2] [--keep DIR]
        [--known-difference METRIC/STATISTIC/BASIS ...]

Different results end the script with exit status 1 and `results: DIFFERENT` naming the tables and statistics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TODAY = "2026-11-24"
SLUG = "demo-custom"

SETUP = """
import datetime as dt, sys
from pathlib import Path
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import demo_experiments, write_experimenter_file
from jetstream_assets.demo.run import ensure_telemetry
from jetstream_assets.resources import experimenter_file, metric_hub_dir
home, clients = Path(sys.argv[1]), int(sys.argv[2])
today = dt.date.fromisoformat(sys.argv[3])
write_experimenter_file(experimenter_file(home), today)
create_config_repo(metric_hub_dir(home))
ensure_telemetry(home, clients, today, demo_experiments(today))
"""


def _env(code: Path) -> dict[str, str]:
    env = {**os.environ, "JETSTREAM_TODAY": TODAY, "PYTHONPATH": str(code), "JETSTREAM_LOG_LEVEL": "ERROR"}
    env.pop("DAGSTER_HOME", None)
    return env


def extract(commit: str, into: Path) -> Path:
    """The baseline's sources at `commit`, without touching any worktree."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def setup(code: Path, home: Path, clients: int) -> None:
    subprocess.run([sys.executable, "-c", SETUP, str(home), str(clients), TODAY], env=_env(code), check=True,
                   cwd=home.parent, stdout=subprocess.DEVNULL)


def fresh(home: Path) -> None:
    """Results, exports and the Dagster instance removed: the rerun starts from the telemetry only."""
    for part in ("warehouse/mozanalysis", "warehouse/monitoring", "exports", "dagster", "warehouse/.duckdb_tmp"):
        shutil.rmtree(home / part, ignore_errors=True)


def rerun(code: Path, home: Path, scan_log: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process, its summary)."""
    fresh(home)
    env = _env(code)
    if scan_log is not None:
        scan_log.unlink(missing_ok=True)
        env["JETSTREAM_SCAN_LOG"] = str(scan_log)
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jetstream_assets.cli", "run", "--experiment", SLUG, "--all-dates", "--home",
         str(home)],
        env=env, cwd=home.parent, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"rerun failed in {code}:\n{done.stdout}\n{done.stderr}")
    return seconds, _children_cpu() - cpu, done.stdout.strip()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _frame(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    keys = [c for c in ("analysis_id", "metric", "statistic", "parameter", "branch", "comparison",
                        "comparison_to_branch", "segment", "analysis_basis") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True)[sorted(df.columns)]


def compare(a: Path, b: Path, known: set[tuple[str, str, str]] = frozenset()) -> list[str]:
    """Differences between two results datasets; empty when they agree. Statistics rows of a (metric,
    statistic, basis) in `known` (a deliberate change since the baseline) are reported but not counted."""
    problems = []
    tables_a = {p.name for p in a.glob("*.parquet")}
    tables_b = {p.name for p in b.glob("*.parquet")}
    if tables_a != tables_b:
        problems.append(f"tables differ: only A {sorted(tables_a - tables_b)}, only B {sorted(tables_b - tables_a)}")
    worst = 0.0
    differing: dict[tuple, int] = {}
    for name in sorted(tables_a & tables_b):
        fa, fb = _frame(a / name), _frame(b / name)
        if not name.startswith("statistics_"):
            try:
                pd.testing.assert_frame_equal(fa, fb, check_dtype=False)
            except AssertionError as e:
                problems.append(f"{name}: {str(e).splitlines()[0:3]}")
            continue
        if len(fa) != len(fb) or not fa[["metric", "statistic", "branch"]].equals(fb[["metric", "statistic", "branch"]]):
            problems.append(f"{name}: different rows")
            continue
        # within Monte Carlo error: a bound moves by much less than the interval's width
        width = (fb["upper"] - fb["lower"]).abs().fillna(0.0).to_numpy()
        for column in ("point", "lower", "upper"):
            x, y = fa[column].to_numpy(float), fb[column].to_numpy(float)
            both = ~(np.isnan(x) | np.isnan(y))
            if (np.isnan(x) != np.isnan(y)).any():
                problems.append(f"{name}.{column}: missing values differ")
            scale = np.maximum(width, 1e-9 * np.maximum(np.abs(y), 1.0))
            rel = np.abs(x - y)[both] / scale[both]
            if rel.size:
                keys = zip(fa["metric"][both], fa["statistic"][both], fa["analysis_basis"][both])
                counted = np.array([key not in known for key in keys], dtype=bool)
                if counted.any():  # the largest difference outside the known ones
                    worst = max(worst, float(rel[counted].max()))
                off = fa[both][rel > 0.1]
                for key in zip(off["metric"], off["statistic"], off["analysis_basis"]):
                    differing[key] = differing.get(key, 0) + 1
    expected = {key: n for key, n in differing.items() if key in known}
    unexpected = {key: n for key, n in differing.items() if key not in known}
    if unexpected:
        rows = ", ".join(f"{m}/{s}/{b} ({n} rows)" for (m, s, b), n in sorted(unexpected.items()))
        problems.append(f"statistics differ by more than Monte Carlo error (up to {worst:.3g} interval widths) "
                        f"in: {rows}")
    print(f"  statistics: largest difference {worst:.2e} of an interval width"
          + (" (apart from the known differences)" if known else ""))
    if expected:
        rows = ", ".join(f"{m}/{s}/{b} ({n} rows)" for (m, s, b), n in sorted(expected.items()))
        print(f"  known differences (--known-difference, not counted): {rows}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="Commit to compare against (e.g. main's at the start).")
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2, help="Timed reruns per side, alternating.")
    parser.add_argument("--keep", type=Path, help="Work under this folder (kept) instead of a temporary one.")
    parser.add_argument("--known-difference", action="append", default=[], metavar="METRIC/STATISTIC/BASIS",
                        help="A deliberate change of results since the baseline (e.g. identity/count/exposures, "
                             "issue 13's count fix): reported, not a failure. Repeatable.")
    args = parser.parse_args(argv)
    known = set()
    for text in args.known_difference:
        parts = tuple(text.split("/"))
        if len(parts) != 3:
            parser.error(f"--known-difference {text!r}: expected METRIC/STATISTIC/BASIS")
        known.add(parts)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.baseline], check=True,
                            capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="rerun-", dir=args.keep))
    try:
        sides = {"A (this code)": ROOT, f"B ({commit[:10]})": extract(commit, work / "baseline")}
        homes = {}
        for i, (name, code) in enumerate(sides.items()):
            homes[name] = work / f"home-{i}"
            started = time.perf_counter()
            setup(code, homes[name], args.clients)
            print(f"{name}: demo world of {args.clients:,} clients in {time.perf_counter() - started:.0f}s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpus: dict[str, list[float]] = {name: [] for name in sides}
        scan_log = work / "scans.jsonl"
        summary_a = ""
        for repeat in range(args.repeats):
            for name, code in (list(sides.items()) if repeat % 2 == 0 else list(reversed(sides.items()))):
                log = scan_log if code == ROOT else None
                seconds, cpu, summary = rerun(code, homes[name], log)
                times[name].append(seconds)
                cpus[name].append(cpu)
                if code == ROOT:
                    summary_a = summary
                print(f"  run {repeat + 1} {name}: {seconds:.1f}s wall, {cpu:.1f}s CPU  ({summary.splitlines()[0]})",
                      flush=True)
        (a, ta), (b, tb) = ((n, float(np.median(t))) for n, t in times.items())
        ca, cb = (float(np.median(c)) for c in cpus.values())
        print(f"rerun of {SLUG} ({args.clients:,} clients), median of {args.repeats}: {a} {ta:.1f}s wall "
              f"({ca:.1f}s CPU), {b} {tb:.1f}s wall ({cb:.1f}s CPU)")
        print(f"speed-up B/A: {tb / ta:.2f}x wall, {cb / ca:.2f}x CPU")
        span = re.search(r"(\d{4}-\d\d-\d\d) \.\. (\d{4}-\d\d-\d\d)", summary_a)
        if span:
            d0, d1 = (dt.date.fromisoformat(x) for x in span.groups())
            dates = [d0 + dt.timedelta(days=n) for n in range((d1 - d0).days + 1)]
            sys.path.insert(0, str(ROOT / "bench"))
            from scans import days_needed, rows_read

            os.environ["JETSTREAM_TODAY"] = TODAY
            first, last = days_needed(homes[a], SLUG, dates, dt.date.fromisoformat(TODAY))
            print(f"rows read by {a} from each telemetry table (DuckDB profiles):")
            print("\n".join(rows_read(homes[a] / "warehouse" / "telemetry", scan_log, first, last)))
        problems = compare(*(homes[n] / "warehouse" / "mozanalysis" for n in (a, b)), known)
        apart = " apart from the known differences" if known else ""
        print("results: " + (f"equal (tables identical, statistics within Monte Carlo error{apart})" if not problems
                             else "DIFFERENT\n  " + "\n  ".join(problems)))
        return 1 if problems else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
