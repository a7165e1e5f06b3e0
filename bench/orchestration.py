"""Benchmark: sensor ticks at production scale, and a whole-experiment rerun.

1. Experimenter sensor ticks with 1,000 experiments in the Experimenter payload (43 of them with the
   custom configs of the metric-hub sample, the others on the firefox_desktop defaults): the first tick
   (every experiment new), a tick with nothing new, and the next day's tick.
2. metric-hub sensor ticks on a git repository holding the metric-hub sample, for a commit to one
   experiment's config, to a definition every experiment uses, and to a definition nobody uses.
   Reference: what Jetstream does at start-up to know what to run -- parse metric-hub and resolve every
   experiment's config (metric-config-parser, as Jetstream calls it) -- timed in the same run.
3. A whole-experiment rerun over 30 analysis dates at 100,000 clients (demo-custom) as one Dagster run
   (single-run backfill), against the same dates as one run per date (Jetstream's one process per date).

    .venv/bin/python bench/orchestration.py [--experiments 1000] [--clients 100000] [--skip-rerun]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "metric-hub-sample"
TODAY = dt.date(2026, 11, 24)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "b@b"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


def experimenter_records(n: int, custom: list[str], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        slug = custom[i] if i < len(custom) else f"bench-experiment-{i:04d}"
        start = TODAY - dt.timedelta(days=rng.randint(5, 120))
        ended = rng.random() < 0.4 and i >= len(custom)  # the sample's configs belong to live experiments
        end = start + dt.timedelta(days=rng.randint(14, 60)) if ended else None
        if end is not None and end >= TODAY:
            end = None
        records.append({
            "slug": slug, "appName": "firefox_desktop", "appId": "firefox-desktop",
            "branches": [{"slug": "control", "ratio": 1}, {"slug": "treatment", "ratio": 1}],
            "startDate": start.isoformat(), "endDate": end.isoformat() if end else None,
            "proposedEnrollment": 7, "enrollmentEndDate": (start + dt.timedelta(days=6)).isoformat(),
            "referenceBranch": "control", "isRollout": False, "isEnrollmentPaused": True,
            "outcomes": [], "segments": [],
        })
    return records


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def sensor_ticks(args, work: Path) -> None:
    import dagster as dg

    from jetstream_assets.config.metric_hub import MetricHub
    from jetstream_assets.experimenter.resource import Experimenter
    from jetstream_assets.partitions import EXPERIMENTS
    from jetstream_assets.sensors.experimenter import experimenter_sensor
    from jetstream_assets.sensors.metric_hub import metric_hub_sensor

    repo = work / "metric-hub"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sample")
    custom = sorted(p.stem for p in (repo / "jetstream").glob("*.toml"))
    records = experimenter_records(args.experiments, custom)
    own_sql = next(  # a config that neither overrides the dates nor already tunes active_hours
        c for c in custom
        if not any(w in (repo / "jetstream" / f"{c}.toml").read_text() for w in ("active_hours", "start_date", "end_date"))
    )
    (work / "experiments.json").write_text(json.dumps(records))
    resources = {"experimenter": Experimenter(path=str(work / "experiments.json")), "metric_hub": MetricHub(path=str(repo))}
    os.environ["JETSTREAM_TODAY"] = TODAY.isoformat()

    def tick(sensor, instance, cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            result = sensor(context)
            after = context.cursor
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(EXPERIMENTS.name, list(request.partition_keys))
            return result.cursor, len(result.run_requests or [])
        return after, 0

    print(f"== sensor ticks: {args.experiments} experiments in the Experimenter payload, metric-hub sample "
          f"({len(custom)} experiment configs)")
    print(f"{'tick':<58}{'seconds':>9}{'runs':>7}")
    with dg.instance_for_test() as instance:
        s, (cursor, runs) = timed(lambda: tick(experimenter_sensor, instance, None))
        print(f"{'experimenter: first tick (every experiment new)':<58}{s:>9.2f}{runs:>7}")
        s, (cursor, runs) = timed(lambda: tick(experimenter_sensor, instance, cursor))
        print(f"{'experimenter: nothing new':<58}{s:>9.2f}{runs:>7}")
        os.environ["JETSTREAM_TODAY"] = (TODAY + dt.timedelta(days=1)).isoformat()
        s, (cursor, runs) = timed(lambda: tick(experimenter_sensor, instance, cursor))
        print(f"{'experimenter: next day':<58}{s:>9.2f}{runs:>7}")
        os.environ["JETSTREAM_TODAY"] = TODAY.isoformat()

        hub_cursor, _ = tick(metric_hub_sensor, instance, None)
        commits = [
            ("metric-hub: one experiment's config", f"jetstream/{own_sql}.toml", "own"),
            ("metric-hub: a definition every experiment uses", "definitions/firefox_desktop.toml", "active_hours"),
            ("metric-hub: a definition nobody uses", "definitions/firefox_desktop.toml", None),
        ]
        for label, path, metric in commits:
            file = repo / path
            text = file.read_text()
            if metric == "own":  # one more statistic for a default metric
                text += "\n[metrics.active_hours.statistics.deciles]\n"
            elif metric:  # change the SQL of a metric every experiment's defaults use
                expr = text.index("select_expression", text.index(f"[metrics.{metric}]"))
                text = text[:expr] + "select_expression = 'SUM(1)'\nformer_select_expression" + text[expr + 17:]
            else:  # add a metric (an experiment's own one, or a definition no experiment uses)
                text += '\n[metrics.bench_unused_metric]\ndata_source = "clients_daily"\nselect_expression = "SUM(1)"\n'
            file.write_text(text)
            git(repo, "commit", "-qam", label)
            s, (hub_cursor, runs) = timed(lambda: tick(metric_hub_sensor, instance, hub_cursor))
            print(f"{label:<58}{s:>9.2f}{runs:>7}")

    # the reference: parse metric-hub and resolve every experiment's config, as Jetstream does at start-up
    from metric_config_parser.analysis import AnalysisSpec
    from metric_config_parser.config import LocalConfigCollection

    from jetstream_assets.experimenter.models import Experiment

    resolved = [0, 0]

    def reference():
        # metric-hub's jetstream/ folder merged with its definitions, as Jetstream's ConfigLoader does
        # (read from disk, no git clone: already faster than Jetstream itself)
        configs = LocalConfigCollection.from_local_path(str(repo / "jetstream"))
        configs.merge(LocalConfigCollection.from_local_path(str(repo)))
        for record in records:
            experiment = Experiment.from_v8(record).to_config_experiment(TODAY)
            spec = AnalysisSpec.default_for_experiment(experiment, configs)
            own = configs.spec_for_experiment(experiment.normandy_slug)
            try:
                if own is not None:
                    spec.merge(own)
                spec.resolve(experiment, configs)
                resolved[0] += 1
            except Exception:  # noqa: BLE001 - some sample configs need outcomes this payload lacks
                resolved[1] += 1

    ref_s, _ = timed(reference)
    print(f"{'reference: parse metric-hub + resolve every experiment':<58}{ref_s:>9.2f}"
          f"   ({resolved[0]} resolved, {resolved[1]} config errors)")


def rerun(args, work: Path) -> None:
    from jetstream_assets_tests.worlds import build_world, run

    from jetstream_assets.runner import run_experiment
    from jetstream_assets.windows import rerun_dates

    print(f"\n== whole-experiment rerun, demo-custom, {args.clients:,} clients")
    with build_world(work / "world", args.clients) as world:
        record = next(e for e in world.experiments if e["slug"] == "demo-custom")
        dates = rerun_dates(dt.date.fromisoformat(record["startDate"]), None, TODAY)
        run(world, "demo-custom", dates)  # first analysis: tables exist, as before a real rerun
        s_one, summary = timed(lambda: run_experiment(world.instance, world.defs, "demo-custom", dates, full=True))
        assert summary.success, summary.errors
        s_each = 0.0
        for day in dates:
            s, summary = timed(lambda: run_experiment(world.instance, world.defs, "demo-custom", [day]))
            s_each += s
    print(f"{'rerun as one run (single-run backfill)':<58}{s_one:>9.1f} s  ({len(dates)} dates)")
    print(f"{'same dates, one run per date':<58}{s_each:>9.1f} s  (ratio {s_each / s_one:.1f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--skip-rerun", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)  # ticks log per experiment; the figures are the point here
    work = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    try:
        sensor_ticks(args, work)
        if not args.skip_rerun:
            rerun(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
