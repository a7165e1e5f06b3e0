"""Run overhead: one analysis date for many live experiments, as the sensor launches them.

N experiment records (copies of demo-live's dates and branches under new slugs, all in the same demo
telemetry, generated with them) are analysed on one date on which their day and week-1 windows close
(enrollments were computed beforehand, on their last enrollment date). Timed in this process:

1. compute: the analysis functions the assets call, cell by cell, without Dagster (the reference: the
   per-cell compute any orchestration has to pay);
2. sensor: what the Experimenter sensor launches for the date, launched as the daemon launches it. The
   sensor's own evaluation (`experimenter_sensor`, from the state of the day before: every experiment
   analysed through the previous date) gives the RunRequests; each becomes a run created from the code
   location (a code server, started before the clock, as the daemon keeps one) and launched by the
   instance's run launcher (a run worker process per run, at most 2 at a time, as the queue allows), and the
   clock stops when the last run ends. The queue's dequeue delay (up to its dequeue interval per run) is
   not in it. CPU: this process plus the code server and its run workers (minus a code server started and
   stopped alone).
3. per experiment: one Dagster run per experiment for the date, executed in this process (`run_experiment`,
   as `jetstream-assets run --date`): what the sensor launched before the daily batch;
4. per date: one Dagster run over the date for all N experiments, executed in this process.

Overhead per experiment-day = (wall time - compute) / N. Rows read from each telemetry table by the
per-date run are printed against one scan of the days it needs.

With --ended K, K experiments that ended before the date sit between the live ones in the experiment
dimension: the sensor's batch carries them as no-op cells, and their cost counts as overhead.

    .venv/bin/python bench/daily.py [--experiments 100] [--clients 20000] [--ended 0] [--modes compute sensor experiment date]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
TODAY = dt.date(2026, 11, 24)


def records(n: int, ended: int = 0) -> list[dict]:
    """n live experiments, and `ended` experiments that ended before the analysis date spread between them
    (in Experimenter's order, so in the experiment dimension's order too)."""
    from jetstream_assets.demo.experiments import demo_experiments

    template = next(e for e in demo_experiments(TODAY) if e["slug"] == "demo-live")
    out = []
    every = n // ended if ended else 0
    for i in range(n):
        slug = f"daily-{i:03d}"
        record = json.loads(json.dumps(template))
        record.update(slug=slug, id=slug, outcomes=[], segments=[])
        record["bucketConfig"].update(count=max(1, 10000 // n), start=(i * 10000 // n) % 10000,
                                      namespace=f"firefox-desktop-{slug}-release-1")
        out.append(record)
        if every and i % every == 0 and i // every < ended:
            old = json.loads(json.dumps(record))
            slug = f"ended-{i // every:03d}"
            old.update(slug=slug, id=slug, startDate="2026-10-01", enrollmentEndDate="2026-10-07",
                       endDate="2026-11-01", isEnrollmentPaused=True)
            old["bucketConfig"]["namespace"] = f"firefox-desktop-{slug}-release-1"
            out.append(old)
    return out


def setup(home: Path, n: int, clients: int, ended: int = 0) -> tuple[list[str], dt.date]:
    from jetstream_assets.planner import Planner
    from jetstream_assets.assets.enrollments import compute_enrollments
    from jetstream_assets.demo.config_repo import create_config_repo
    from jetstream_assets.demo.telemetry import generate_telemetry
    from jetstream_assets.resources import build_resources, experimenter_file, metric_hub_dir

    experiments = records(n, ended)
    experimenter_file(home).parent.mkdir(parents=True, exist_ok=True)
    experimenter_file(home).write_text(json.dumps(experiments))
    create_config_repo(metric_hub_dir(home))
    generate_telemetry(home / "warehouse", clients=clients, today=TODAY, experiments=experiments)
    resources = build_resources(home)
    planner = Planner(resources["experimenter"], resources["metric_hub"], TODAY)
    slugs = [e["slug"] for e in experiments if e["slug"].startswith("daily-")]
    first = planner.plan(slugs[0], TODAY)
    week1 = first.last_enrollment_date + dt.timedelta(days=6)
    for slug in slugs:  # enrollments, as computed on the last enrollment date
        cell = planner.plan(slug, week1)
        compute_enrollments(replace(cell, analysis_date=cell.last_enrollment_date), resources["warehouse"])
    return slugs, week1


def analysis_today(date: dt.date) -> dt.date:
    """The day after the analysis date: the sensor's yesterday is the date."""
    return date + dt.timedelta(days=1)


def compute_only(home: Path, slugs: list[str], date: dt.date) -> float:
    from jetstream_assets.planner import Cell, Planner
    from jetstream_assets.assets.exports import export_metadata, export_statistics
    from jetstream_assets.assets.metrics import compute_metrics
    from jetstream_assets.assets.statistics import compute_statistics
    from jetstream_assets.resources import build_resources
    from jetstream_assets.sql.metrics_scan import SharedScan

    resources = build_resources(home)
    warehouse, store = resources["warehouse"], resources["export_store"]
    started = time.perf_counter()
    planner = Planner(resources["experimenter"], resources["metric_hub"], analysis_today(date))
    for slug in slugs:
        cell = planner.plan(slug, date)
        assert isinstance(cell, Cell) and cell.windows, cell
        scan = SharedScan(warehouse)
        scan.plan([cell])
        compute_metrics(cell, warehouse, scan)
        compute_statistics(cell, warehouse)
        export_statistics(cell, warehouse, store)
        export_metadata(cell, resources["metric_hub"], store)
    return time.perf_counter() - started


def per_experiment(instance, defs, slugs: list[str], date: dt.date) -> float:
    from jetstream_assets.runner import run_experiment

    started = time.perf_counter()
    for slug in slugs:
        summary = run_experiment(instance, defs, slug, [date])
        if not summary.success:
            raise SystemExit(f"{slug}: {summary.errors[:3]}")
    return time.perf_counter() - started


def process_cpu(pid: int) -> float | None:
    """CPU seconds a live process has used (user + system), from /proc; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children() -> list[int]:
    return [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]


def code_server(instance):
    """The workspace's code location in a code server process of its own, as the daemon runs it."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    return WorkspaceProcessContext(instance, WorkspaceFileTarget([str(ROOT / "workspace.yaml")]))


def sensor_requests(home: Path, instance, date: dt.date) -> list:
    """The sensor's RunRequests for the date, from the state of the day before."""
    import dagster as dg

    from jetstream_assets.partitions import EXPERIMENTS
    from jetstream_assets.resources import build_resources
    from jetstream_assets.sensors.experimenter import (
        CURSOR_VERSION, digest_of_snapshot, experimenter_sensor, field_digests,
    )

    resources = build_resources(home)
    experiments = resources["experimenter"].fetch().experiments
    before = (date - dt.timedelta(days=1)).isoformat()
    cursor = {"v": CURSOR_VERSION, "snapshot": digest_of_snapshot(experiments),
              "experiments": {e.slug: {"fields": field_digests(e), "through": before} for e in experiments}}
    known = set(instance.get_dynamic_partitions(EXPERIMENTS.name))
    instance.add_dynamic_partitions(EXPERIMENTS.name, [e.slug for e in experiments if e.slug not in known])
    started = time.perf_counter()
    with dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor), resources=resources) as context:
        result = experimenter_sensor(context)
    print(f"  the sensor's evaluation took {time.perf_counter() - started:.1f}s", flush=True)
    return list(result.run_requests) if isinstance(result, dg.SensorResult) else []


def launch(instance, workspace, request):
    """Create the run from the code location and launch it with the instance's run launcher, as the daemon does."""
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
    from dagster._core.storage.tags import RUN_KEY_TAG

    context = workspace.create_request_context()
    location = context.get_code_location(context.code_location_names[0])
    repository = next(iter(location.get_repositories().values()))
    job = repository.get_full_job(request.job_name)
    plan = location.get_execution_plan(job, request.run_config, step_keys_to_execute=None, known_state=None,
                                       instance=instance)
    run = instance.create_run(
        job_name=job.name, run_id=None, run_config=request.run_config, resolved_op_selection=None,
        step_keys_to_execute=None, status=DagsterRunStatus.NOT_STARTED, op_selection=None, root_run_id=None,
        parent_run_id=None, tags={**request.tags, RUN_KEY_TAG: request.run_key,
                                  **DagsterRun.tags_for_sensor(repository.get_sensor("experimenter_sensor"))},
        job_snapshot=job.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=job.parent_job_snapshot, remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=frozenset(request.asset_selection) if request.asset_selection is not None else None,
        asset_check_selection=None, asset_graph=repository.asset_graph,
    )
    instance.launch_run(run.run_id, context)
    return run.run_id


def per_sensor(home: Path, instance, date: dt.date) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the code server and run workers, runs) for what the sensor launches."""
    from dagster._core.storage.dagster_run import FINISHED_STATUSES, DagsterRunStatus

    from jetstream_assets.instance import MAX_CONCURRENT_RUNS, worker_pid

    with code_server(instance) as workspace:
        workspace.create_request_context().get_code_location(workspace.code_location_names[0])
        servers = {pid: process_cpu(pid) or 0.0 for pid in children()}
        started = time.perf_counter()
        requests = sensor_requests(home, instance, date)
        pending, running, failed, workers, pids = list(requests), [], [], {}, {}
        while pending or running:
            while pending and len(running) < MAX_CONCURRENT_RUNS:
                running.append(launch(instance, workspace, pending.pop(0)))
            time.sleep(0.2)
            for run_id in list(running):
                pid = pids.get(run_id) or worker_pid(instance, run_id)
                pids[run_id] = pid
                used = process_cpu(pid) if pid else None
                if used is not None:
                    workers[run_id] = used
                run = instance.get_run_by_id(run_id)
                if run.status in FINISHED_STATUSES:
                    running.remove(run_id)
                    if run.status != DagsterRunStatus.SUCCESS:
                        failed.append(run_id)
        seconds = time.perf_counter() - started
        cpu = sum(workers.values()) + sum((process_cpu(pid) or used) - used for pid, used in servers.items())
    if failed:
        raise SystemExit(f"sensor runs failed: {failed}")
    tags = [r.tags.get("jetstream/experiments") or r.tags.get("jetstream/experiment", "") for r in requests]
    print(f"  the sensor requested {len(requests)} run(s): "
          + "; ".join(f"{len(t.split(','))} experiment(s)" for t in tags), flush=True)
    return seconds, max(0.0, cpu), len(requests)


def per_date(instance, defs, slugs: list[str], date: dt.date) -> float:
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from jetstream_assets.partitions import EXPERIMENTS, cell_key

    missing = [s for s in slugs if not instance.has_dynamic_partition(EXPERIMENTS.name, s)]
    if missing:
        instance.add_dynamic_partitions(EXPERIMENTS.name, missing)
    tags = {ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slugs[0], date)),
            ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slugs[-1], date)),
            "jetstream/reason": "analysis date completed (all live experiments)"}
    started = time.perf_counter()
    result = defs.resolve_job_def("analysis").execute_in_process(
        instance=instance, tags=tags, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    seconds = time.perf_counter() - started
    if not result.success:
        raise SystemExit("per-date run failed")
    return seconds


def fresh_results(home: Path, slugs: list[str]) -> None:
    """Remove what the last mode wrote for the date (keeping the enrollments)."""
    results = home / "warehouse" / "mozanalysis"
    for path in results.iterdir():
        if not path.name.startswith("enrollments_"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    shutil.rmtree(home / "exports", ignore_errors=True)
    shutil.rmtree(home / "warehouse" / "monitoring", ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--modes", nargs="+", default=["compute", "sensor", "date", "experiment"],
                        choices=["compute", "sensor", "experiment", "date"])
    parser.add_argument("--ended", type=int, default=0,
                        help="experiments that ended before the date, spread between the live ones: no-op cells of the "
                             "sensor's batch (their cost counts as overhead)")
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)
    os.environ["JETSTREAM_TODAY"] = TODAY.isoformat()
    os.environ.setdefault("JETSTREAM_LOG_LEVEL", "ERROR")
    work = Path(tempfile.mkdtemp(prefix="daily-", dir=args.keep))
    home = work / "home"
    os.environ["JETSTREAM_HOME"] = str(home)
    try:
        started = time.perf_counter()
        slugs, date = setup(home, args.experiments, args.clients, args.ended)
        print(f"{len(slugs)} experiments (and {args.ended} ended ones between them) over {args.clients:,} clients, enrollments done, in "
              f"{time.perf_counter() - started:.0f}s; analysis date {date} (day and week-1 windows close)",
              flush=True)
        os.environ["JETSTREAM_TODAY"] = analysis_today(date).isoformat()
        from jetstream_assets.definitions import build_definitions
        from jetstream_assets.runner import prepare_instance

        n = len(slugs)
        timings, cpu = {}, {}
        for mode in args.modes:
            cpu_start = time.process_time()
            fresh_results(home, slugs)
            if mode == "compute":
                timings[mode] = compute_only(home, slugs, date)
                cpu[mode] = time.process_time() - cpu_start
                print(f"compute only (sum of per-cell compute, no Dagster): {timings[mode]:.1f}s wall, "
                      f"{cpu[mode]:.1f}s CPU", flush=True)
                continue
            shutil.rmtree(home / "dagster", ignore_errors=True)
            instance = prepare_instance(home)
            defs = build_definitions(home)
            log = work / f"scans-{mode}.jsonl"
            os.environ["JETSTREAM_SCAN_LOG"] = str(log)
            runs = {"experiment": n, "date": 1}.get(mode)
            try:
                if mode == "sensor":
                    timings[mode], workers, runs = per_sensor(home, instance, date)
                else:
                    run = per_experiment if mode == "experiment" else per_date
                    timings[mode], workers = run(instance, defs, slugs, date), 0.0
            finally:
                os.environ.pop("JETSTREAM_SCAN_LOG", None)
            cpu[mode] = time.process_time() - cpu_start + workers
            label = {"sensor": f"sensor: {runs} run(s) as the sensor requests them, launched as the daemon does",
                     "experiment": f"{n} runs, one per experiment, in this process (the sensor before)",
                     "date": f"1 run over the date for all {n} experiments, in this process"}[mode]
            print(f"{label}: {timings[mode]:.1f}s wall, {cpu[mode]:.1f}s CPU", flush=True)
            if log.exists():
                from scans import rows_read

                from scans import days_needed

                first, last = days_needed(home, slugs[0], [date], TODAY)  # every experiment has the same dates
                print(f"rows read from each telemetry table, against one scan per experiment-day:")
                print("\n".join(rows_read(home / "warehouse" / "telemetry", log, first, last, runs=n)), flush=True)
        if "compute" in timings:
            for mode in ("sensor", "experiment", "date"):
                if mode in timings:
                    overhead = (timings[mode] - timings["compute"]) / n
                    overhead_cpu = (cpu[mode] - cpu["compute"]) / n
                    print(f"overhead per experiment-day, {mode:<10}: {overhead:.2f}s wall "
                          f"(wall {timings[mode]:.1f}s - compute {timings['compute']:.1f}s, / {n}), "
                          f"{overhead_cpu:.2f}s CPU; target <= 0.5s")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
