"""Benchmark: the telemetry aggregates API under load while a pipeline run rewrites aggregates.

1. Synthetic main pings for --days submission dates (--pings-per-day each), aggregated through the Dagster
   assets in one run (both families), until at least --min-rows aggregate rows are stored.
2. The API (`serve`, the same function as `jetstream-assets serve`) in its own process on 127.0.0.1.
3. Meanwhile a writer process keeps running the aggregates pipeline (one Dagster run over the latest
   --rewrite-days dates, again and again), so tables are replaced under the readers' feet.
4. --concurrency clients send, for --duration seconds, metric queries over 30 dates with filters: a random
   family, channel, version seen in those dates, metric of the channel's /filters/, and one to three of
   os, application, child.
It prints requests per second, p50/p90/p99 latency, reply codes and the pipeline runs finished during the load.

    .venv/bin/python bench/aggregates.py [--days 45] [--pings-per-day 22000] [--duration 30] [--concurrency 4]
    .venv/bin/python bench/aggregates.py --home /tmp/aggbench --reuse      # skip generation on a second go
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jetstream_assets.aggregates.compute import AGGREGATES_DATASET, parse_table_name  # noqa: E402
from jetstream_assets.aggregates.pings import write_pings  # noqa: E402
from jetstream_assets.assets.aggregates import materialize_aggregates  # noqa: E402
from jetstream_assets.warehouse.local import LocalWarehouse  # noqa: E402

END = dt.date(2026, 11, 23)
DATES_PER_QUERY = 30
STOP_FILE = ".stop_writer"


def say(message: str) -> None:
    print(message, flush=True)


def warehouse_of(home: Path) -> LocalWarehouse:
    return LocalWarehouse(root=str(home / "warehouse"))


def stored_rows(warehouse: LocalWarehouse) -> dict[str, int]:
    import pyarrow.parquet as pq

    rows: dict[str, int] = {}
    for table in warehouse.list_tables(dataset=AGGREGATES_DATASET):
        family = parse_table_name(table)[0]
        rows[family] = rows.get(family, 0) + pq.ParquetFile(warehouse.table_path(table, AGGREGATES_DATASET)).metadata.num_rows
    return rows


def prepare(home: Path, days: int, pings_per_day: int) -> list[dt.date]:
    warehouse = warehouse_of(home)
    dates = [END - dt.timedelta(days=days - 1 - i) for i in range(days)]
    started = time.monotonic()
    rows = write_pings(warehouse, dates[0], dates[-1], pings_per_day=pings_per_day, seed=1)
    say(f"  pings: {days} days x {pings_per_day:,} pings = {rows:,} ping entries in {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    result = materialize_aggregates(dates, warehouse, quiet=True)
    assert result.success, "the aggregates run failed"
    say(f"  aggregates: one Dagster run over {days} dates in {time.monotonic() - started:.1f}s")
    return dates


def writer(home: Path, rewrite_days: int) -> None:
    """Re-run the aggregates of the latest dates until the stop file appears; one line per finished run.

    (A file, not a signal: Dagster handles SIGTERM itself while a run executes.)"""
    warehouse = warehouse_of(home)
    dates = [END - dt.timedelta(days=i) for i in range(rewrite_days)]
    stop = home / STOP_FILE
    while not stop.exists():
        started = time.monotonic()
        ok = materialize_aggregates(dates, warehouse, quiet=True, raise_on_error=False).success
        print(f"run {'ok' if ok else 'FAILED'} {time.monotonic() - started:.2f}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            requests.get(url + "/status", timeout=5)
            return
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the API did not start") from None
            time.sleep(0.2)


def query_plan(url: str) -> list[tuple[str, str, str, list[str], list[str]]]:
    """(family, channel, version, its dates, its metrics) from the API's own listings."""
    plans = []
    for family in ("submission_date", "build_id"):
        for channel in requests.get(f"{url}/aggregates_by/{family}/channels/", timeout=60).json():
            listed = requests.get(f"{url}/aggregates_by/{family}/channels/{channel}/dates/", timeout=60).json()
            for version in sorted({d["version"] for d in listed}):
                dates = sorted(d["date"] for d in listed if d["version"] == version)
                reply = requests.get(f"{url}/filters/", params={"channel": channel, "version": version}, timeout=60)
                if reply.status_code == 200 and reply.json().get("metric"):
                    plans.append((family, channel, version, dates, reply.json()["metric"]))
    return plans


def thirty_days_to(date: str) -> list[str]:
    end = dt.datetime.strptime(date, "%Y%m%d").date()
    return [(end - dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(DATES_PER_QUERY - 1, -1, -1)]


def load(url: str, plans, duration: float, concurrency: int, seed: int = 0):
    """Each client: a random (family, channel, version), 30 days ending on one of its dates, a metric, filters."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    filters = [{"os": "Windows_NT"}, {"os": "Windows_NT", "child": "true"}, {"application": "Firefox"},
               {"os": "Darwin", "application": "Firefox", "child": "false"}, {"os": "Windows_NT", "child": "gpu"},
               {"os": "Linux"}, {"application": "Fennec", "os": "Android"}]
    weights = [len(p[3]) for p in plans]

    def client(index: int):
        rng = random.Random(seed + index)
        session = requests.Session()
        while time.monotonic() < stop_at:
            family, channel, version, dates, metrics = rng.choices(plans, weights)[0]
            params = {"version": version, "dates": ",".join(thirty_days_to(rng.choice(dates))),
                      "metric": rng.choice(metrics), **rng.choice(filters)}
            began = time.perf_counter()
            reply = session.get(f"{url}/aggregates_by/{family}/channels/{channel}/?{urlencode(params)}", timeout=60)
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                codes[reply.status_code] = codes.get(reply.status_code, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, codes, time.monotonic() - started


def report(label: str, latencies: list[float], codes: dict[int, int], elapsed: float) -> None:
    p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
    say(f"  {label}: {len(latencies):,} requests in {elapsed:.1f}s = {len(latencies) / elapsed:.1f} requests/s; "
        f"latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"replies {', '.join(f'{code}: {n:,}' for code, n in sorted(codes.items()))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--reuse", action="store_true", help="reuse the pings and aggregates already in --home")
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--pings-per-day", type=int, default=22_000)
    parser.add_argument("--min-rows", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load, alone then while writing")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rewrite-days", type=int, default=5)
    parser.add_argument("--role", choices=["bench", "writer"], default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "writer":
        writer(args.home, args.rewrite_days)
        return 0

    home = args.home or Path(tempfile.mkdtemp(prefix="aggregates_bench_"))
    home.mkdir(parents=True, exist_ok=True)
    say(f"Telemetry aggregates bench in {home} ({os.cpu_count()} cores)")
    if not args.reuse:
        say("[1/3] Synthetic pings and their aggregates")
        prepare(home, args.days, args.pings_per_day)
    rows = stored_rows(warehouse_of(home))
    total = sum(rows.values())
    say(f"  stored aggregate rows: {total:,} ({', '.join(f'{f} {n:,}' for f, n in sorted(rows.items()))})")
    if total < args.min_rows:
        say(f"  ! fewer than {args.min_rows:,} rows: raise --days or --pings-per-day")

    say("[2/3] API and a pipeline writer")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ALLOW_ALL_RELEASE_METRICS": "True", "PYTHONPATH": str(ROOT)}
    env.pop("JETSTREAM_BIGQUERY_PROJECT", None)
    server = subprocess.Popen(
        [sys.executable, "-c", f"from jetstream_assets.aggregates.api import serve; serve({str(home)!r}, {port})"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writer_process = None
    try:
        wait_until_up(url, server)
        started = time.monotonic()
        plans = query_plan(url)
        say(f"  API up on {url}; listings (first read of every table's catalog) in {time.monotonic() - started:.1f}s")
        say(f"[3/3] {args.concurrency} clients, metric queries over {DATES_PER_QUERY} dates with filters")
        quiet = load(url, plans, args.duration, args.concurrency, seed=1)
        report("API alone", *quiet)
        (home / STOP_FILE).unlink(missing_ok=True)
        writer_process = subprocess.Popen(
            [sys.executable, __file__, "--role", "writer", "--home", str(home), "--rewrite-days", str(args.rewrite_days)],
            env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(3)  # let the first run get going
        busy = load(url, plans, args.duration, args.concurrency, seed=2)
    finally:
        runs = []
        if writer_process is not None:
            (home / STOP_FILE).touch()  # the writer finishes its current run, then stops
            try:
                out, _ = writer_process.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                writer_process.kill()
                out, _ = writer_process.communicate()
            runs = [line for line in out.splitlines() if line.startswith("run ")]
        server.terminate()
        server.wait(timeout=30)
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    report("while the pipeline writes", *busy)
    failed = [r for r in runs if "FAILED" in r]
    seconds = [float(r.split()[-1]) for r in runs]
    say(f"  pipeline runs finished while serving: {len(runs)} ({len(failed)} failed), "
        f"{np.mean(seconds) if seconds else 0:.1f}s each, {args.rewrite_days} dates per run")
    codes = {**quiet[1], **busy[1]}
    return 1 if failed or any(code >= 500 for code in codes) else 0


if __name__ == "__main__":
    sys.exit(main())
