"""Benchmark: telemetry aggregates from main pings, end to end, and the API while a date is re-aggregated.

1. --pings decoded main pings (default 1,000,000) over --days submission dates are written as JSON lines
   (shaped like the demo's: histograms of each kind, keyed histograms, simple measurements, scalars and keyed
   scalars over the parent, content and gpu processes), then
   - loaded with `load_pings` (what `jetstream-assets aggregates load-pings` runs): pings per second, and
     its time as a ratio to parsing the same file with `json.loads` alone (reference);
   - aggregated through the Dagster assets, every date in one run: pings per second, and its time as a ratio
     to one scan of the ping table (`count(*)`, `sum(length(payload))`) in the same warehouse (reference).
2. The API (`serve`, as `jetstream-assets serve`) in its own process; --concurrency clients send metric
   queries over every date with filters for --duration seconds, first alone (reference), then while a
   writer process re-aggregates one date again and again: latency p50/p99 in ms and as ratios to alone.

    .venv/bin/python bench/aggregates.py [--pings 1000000] [--days 10] [--duration 20] [--concurrency 4]
    .venv/bin/python bench/aggregates.py --home /tmp/aggbench --reuse    # skip generation, load, aggregation
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

from jetstream_assets.aggregates.source import PINGS_DATASET, PINGS_TABLE, load_pings  # noqa: E402
from jetstream_assets.assets.aggregates import materialize_aggregates  # noqa: E402
from jetstream_assets.demo.pings import PROBES_FILE  # noqa: E402
from jetstream_assets.warehouse.local import LocalWarehouse  # noqa: E402

END = dt.date(2026, 11, 23)
STOP_FILE = ".stop_writer"
CHANNELS = ("nightly", "beta", "release")
PLATFORMS = (("Firefox", "Windows_NT", "10.0", "x86-64"), ("Firefox", "Darwin", "24.1.0", "aarch64"),
             ("Firefox", "Linux", "6.8.0", "x86-64"), ("Fennec", "Android", "34", "arm"))
GC_BOUNDS = (8, 40, 160, 633)  # GC_MS bucket lower bounds the pings use


def say(message: str) -> None:
    print(message, flush=True)


def warehouse_of(home: Path) -> LocalWarehouse:
    return LocalWarehouse(root=str(home / "warehouse"))


def _histogram(kind: int, low: int, high: int, count: int, total: int, values: dict) -> str:
    items = ",".join(f'"{k}":{v}' for k, v in values.items())
    return f'{{"bucket_count":{count},"histogram_type":{kind},"range":[{low},{high}],"sum":{total},"values":{{{items}}}}}'


def write_pings(path: Path, n_pings: int, days: int, seed: int = 1) -> None:
    """Main pings as JSON lines, quickly: numbers drawn in bulk, documents formatted from a template."""
    rng = np.random.default_rng(seed)
    per_day = n_pings // days
    with open(path, "w") as out:
        for offset in range(days):
            day = END - dt.timedelta(days=days - 1 - offset)
            n = per_day + (n_pings - per_day * days if offset == days - 1 else 0)
            channel = rng.choice(3, size=n, p=(0.15, 0.25, 0.60))
            platform = rng.choice(4, size=n, p=(0.6, 0.2, 0.1, 0.1))
            age = rng.integers(0, 6, size=n)
            gc = rng.poisson(3, size=(n, len(GC_BOUNDS)))
            numbers = rng.integers(0, 200, size=(n, 6))
            lines = []
            for i in range(n):
                app, os_name, os_version, arch = PLATFORMS[platform[i]]
                built = day - dt.timedelta(days=int(age[i]))
                version = 140 + int(channel[i]) + (built.toordinal() - 738000) // 28
                gc_values = dict(zip(GC_BOUNDS, gc[i].tolist()))
                gc_sum = sum(b * c for b, c in gc_values.items())
                a, b, c, d, e, f = numbers[i].tolist()
                parent_h = (f'"GC_MS":{_histogram(0, 1, 10000, 50, gc_sum, gc_values)},'
                            f'"CPU_USAGE_PERCENT":{_histogram(1, 1, 100, 51, a, {"0": 1, "37": 2})},'
                            f'"URLCLASSIFIER_UPDATE_ERROR":{_histogram(4, 1, 2, 3, b % 5, {"0": b % 5, "1": 0})}')
                content_h = (f'"GC_MS":{_histogram(0, 1, 10000, 50, gc_sum, gc_values)},'
                             f'"CANVAS_WEBGL_SUCCESS":{_histogram(2, 1, 2, 3, c % 3, {"0": 1, "1": c % 3})}')
                gpu = (f',"gpu":{{"histograms":{{"COMPOSITE_TIME":{_histogram(0, 1, 1000, 50, d, {"3": 4, "5": 2})}}},'
                       f'"scalars":{{"gfx.compositor.frames_dropped":{e}}}}}') if os_name == "Windows_NT" else ""
                lines.append(
                    f'{{"id":"bench-{offset}-{i}","meta":{{"submissionDate":"{day:%Y%m%d}","sampleId":{i % 100}}},'
                    f'"application":{{"channel":"{CHANNELS[channel[i]]}","version":"{version}.0",'
                    f'"buildId":"{built:%Y%m%d}093012","name":"{app}","architecture":"{arch}"}},'
                    f'"environment":{{"system":{{"os":{{"name":"{os_name}","version":"{os_version}"}}}}}},'
                    f'"payload":{{"histograms":{{{parent_h}}},"keyedHistograms":{{"IPC_MESSAGE_SIZE":{{'
                    f'"PContent::Msg_AsyncMessage":{_histogram(0, 1, 8000000, 50, f * 40, {"4222": 1, "5017": 1})}}}}},'
                    f'"simpleMeasurements":{{"uptime":{a + b}}},'
                    f'"processes":{{"parent":{{"scalars":{{"browser.engagement.total_uri_count":{e},'
                    f'"widget.dark_mode":{"true" if f % 3 else "false"}}},"keyedScalars":{{'
                    f'"browser.search.content.urlbar":{{"google:tagged:firefox-b-d":{a % 7}}}}}}},'
                    f'"content":{{"histograms":{{{content_h}}}}}{gpu}}}}}}}')
            out.write("\n".join(lines) + "\n")


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def parse_only(path: Path) -> int:
    n = 0
    with open(path, "rb") as handle:
        for line in handle:
            json.loads(line)
            n += 1
    return n


def prepare(home: Path, n_pings: int, days: int) -> list[dt.date]:
    warehouse = warehouse_of(home)
    source = home / "pings.jsonl"
    _, seconds = timed(write_pings, source, n_pings, days)
    say(f"  {n_pings:,} pings over {days} days written in {seconds:.1f}s ({source.stat().st_size / 1e9:.2f} GB)")
    _, reference = timed(parse_only, source)
    report, seconds = timed(load_pings, warehouse, source)
    assert report.loaded == n_pings, report.lines()
    say(f"  load:      {n_pings / seconds:,.0f} pings/s ({seconds:.1f}s); {seconds / reference:.2f}x the time of "
        f"json.loads over the file alone ({reference:.1f}s, reference)")
    table = warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)
    _, scan = timed(warehouse.query, f"SELECT COUNT(*) AS n, SUM(LENGTH(payload)) AS b FROM `{table}`")
    dates = [END - dt.timedelta(days=days - 1 - i) for i in range(days)]
    result, seconds = timed(materialize_aggregates, dates, warehouse, quiet=True, probe_files=[str(PROBES_FILE)])
    assert result.success, "the aggregates run failed"
    say(f"  aggregate: {n_pings / seconds:,.0f} pings/s ({seconds:.1f}s, one Dagster run over {days} dates); "
        f"{seconds / scan:.1f}x the time of one scan of the ping table ({scan:.2f}s, reference)")
    return dates


def writer(home: Path, day: dt.date) -> None:
    """Re-aggregate one date until the stop file appears; one line per finished run (a file, not a signal:
    Dagster handles SIGTERM itself while a run executes)."""
    warehouse = warehouse_of(home)
    stop = home / STOP_FILE
    while not stop.exists():
        started = time.monotonic()
        ok = materialize_aggregates([day], warehouse, quiet=True, raise_on_error=False,
                                    probe_files=[str(PROBES_FILE)]).success
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


def load(url: str, plans, duration: float, concurrency: int, seed: int = 0):
    """Each client: a random (family, channel, version), all its dates, a metric, filters."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    filters = [{}, {"os": "Windows_NT"}, {"os": "Windows_NT", "child": "content"}, {"application": "Firefox"},
               {"os": "Windows_NT", "child": "gpu"}, {"application": "Fennec", "os": "Android"}]

    def client(index: int):
        rng = random.Random(seed + index)
        session = requests.Session()
        while time.monotonic() < stop_at:
            family, channel, version, dates, metrics = rng.choice(plans)
            params = {"version": version, "dates": ",".join(dates), "metric": rng.choice(metrics),
                      **rng.choice(filters)}
            began = time.perf_counter()
            reply = session.get(f"{url}/aggregates_by/{family}/channels/{channel}/?{urlencode(params)}", timeout=60)
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                codes[reply.status_code] = codes.get(reply.status_code, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, codes


def percentiles(latencies: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return float(p50), float(p99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--reuse", action="store_true", help="reuse the pings and aggregates already in --home")
    parser.add_argument("--pings", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load, alone then while writing")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--role", choices=["bench", "writer"], default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "writer":
        writer(args.home, END)
        return 0

    home = args.home or Path(tempfile.mkdtemp(prefix="aggregates_bench_"))
    home.mkdir(parents=True, exist_ok=True)
    say(f"Telemetry aggregates bench in {home} ({os.cpu_count()} cores)")
    try:
        if not args.reuse:
            say("[1/2] Main pings: write, load, aggregate")
            prepare(home, args.pings, args.days)
        say(f"[2/2] API under load ({args.concurrency} clients), alone, then while {END} is re-aggregated")
        return serve_and_measure(home, args)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)


def serve_and_measure(home: Path, args) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ALLOW_ALL_RELEASE_METRICS": "True", "PYTHONPATH": str(ROOT),
           "JETSTREAM_PROBES": str(PROBES_FILE)}
    env.pop("JETSTREAM_BIGQUERY_PROJECT", None)
    server = subprocess.Popen(
        [sys.executable, "-c", f"from jetstream_assets.aggregates.api import serve; serve({str(home)!r}, {port})"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writer_process = None
    runs: list[str] = []
    try:
        wait_until_up(url, server)
        plans = query_plan(url)
        quiet = load(url, plans, args.duration, args.concurrency, seed=1)
        (home / STOP_FILE).unlink(missing_ok=True)
        writer_process = subprocess.Popen([sys.executable, __file__, "--role", "writer", "--home", str(home)],
                                          env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(3)  # let the first run get going
        busy = load(url, plans, args.duration, args.concurrency, seed=2)
    finally:
        if writer_process is not None:
            (home / STOP_FILE).touch()  # the writer finishes its current run, then stops
            try:
                out, _ = writer_process.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                writer_process.kill()
                out, _ = writer_process.communicate()
            runs = [line for line in out.splitlines() if line.startswith("run ")]
        server.terminate()
        server.wait(timeout=30)
    (q50, q99), (b50, b99) = percentiles(quiet[0]), percentiles(busy[0])
    say(f"  alone (reference): {len(quiet[0]):,} requests, p50 {q50:.1f} ms, p99 {q99:.1f} ms")
    say(f"  while re-aggregating: {len(busy[0]):,} requests, p50 {b50:.1f} ms ({b50 / q50:.2f}x), "
        f"p99 {b99:.1f} ms ({b99 / q99:.2f}x); re-aggregations finished meanwhile: {len(runs)} "
        f"({sum('FAILED' in r for r in runs)} failed)")
    codes = {code: quiet[1].get(code, 0) + busy[1].get(code, 0) for code in {*quiet[1], *busy[1]}}
    say(f"  replies: {', '.join(f'{code}: {n:,}' for code, n in sorted(codes.items()))}")
    return 1 if any("FAILED" in r for r in runs) or any(code >= 500 for code in codes) else 0


if __name__ == "__main__":
    sys.exit(main())
