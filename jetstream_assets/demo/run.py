"""`jetstream-assets demo`: build the demo world under a home folder and analyse every demo experiment
through Dagster into a persistent instance, then say where everything is."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from jetstream_assets.assets.cells import today as current_date
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import demo_experiments, write_experimenter_file
from jetstream_assets.demo.telemetry import generate_telemetry
from jetstream_assets.experimenter.models import analysable
from jetstream_assets.resources import build_resources, experimenter_file, metric_hub_dir

MAX_CLIENTS = 1_000_000


def _say(message: str) -> None:
    print(message, flush=True)


def ensure_telemetry(home: Path, clients: int, today, experiments: list[dict]) -> None:
    """Generate the synthetic telemetry unless the same world (clients, date, experiments) exists."""
    stamp = home / "warehouse" / "telemetry" / ".demo.json"
    wanted = {"clients": clients, "today": today.isoformat(), "experiments": experiments}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        _say(f"  telemetry for {clients:,} clients already generated")
        return
    started = time.monotonic()
    rows = generate_telemetry(home / "warehouse", clients=clients, today=today, experiments=experiments)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(wanted))
    tables = ", ".join(f"{table} {n:,} rows" for table, n in rows.items())
    _say(f"  telemetry for {clients:,} clients in {time.monotonic() - started:.1f}s: {tables}")


def run_demo(home: Path, clients: int = 100_000) -> int:
    from jetstream_assets.cli import ProgressPrinter, format_summary
    from jetstream_assets.definitions import build_definitions
    from jetstream_assets.runner import prepare_instance, run_experiment
    from jetstream_assets.planner import Planner

    if not 1 <= clients <= MAX_CLIENTS:
        print(f"error: --clients must be between 1 and {MAX_CLIENTS:,}", file=sys.stderr)
        return 2
    today = current_date()
    home.mkdir(parents=True, exist_ok=True)
    _say(f"Demo home: {home} (analysis up to {today})")
    _say("[1/5] Experimenter source and metric-hub repository")
    experiments = demo_experiments(today)
    write_experimenter_file(experimenter_file(home), today)
    commit = create_config_repo(metric_hub_dir(home))
    _say(f"  {len(experiments)} experiments in {experimenter_file(home)}")
    _say(f"  metric-hub at {metric_hub_dir(home)} (commit {commit[:10]})")

    _say("[2/5] Synthetic telemetry")
    ensure_telemetry(home, clients, today, experiments)

    _say("[3/5] Analysis through Dagster (one run per experiment over its dates)")
    instance = prepare_instance(home)
    defs = build_definitions(home)
    resources = build_resources(home)
    planner = Planner(resources["experimenter"], resources["metric_hub"], today)
    snapshot = resources["experimenter"].fetch()
    for error in snapshot.errors:
        _say(f"  skipped an Experimenter record: {error}")
    chosen = analysable(snapshot.experiments, today)
    skipped = sorted({e.slug for e in snapshot.experiments} - {e.slug for e in chosen})
    if skipped:
        _say(f"  not analysable today (rollouts, long ended): {', '.join(skipped)}")
    failures = 0
    for number, experiment in enumerate(chosen, 1):
        dates = planner.rerun_dates(experiment)
        if not dates:
            _say(f"  ({number}/{len(chosen)}) {experiment.slug}: no start date, skipped")
            continue
        _say(f"  ({number}/{len(chosen)}) {experiment.slug}: {len(dates)} analysis dates ...")
        printer = ProgressPrinter(experiment.slug, stream=sys.stdout, indent="    ")
        summary = run_experiment(instance, defs, experiment.slug, dates, tags={"jetstream/source": "demo"}, full=True,
                                 progress=printer)
        printer.done()
        failures += not summary.success
        _say("    " + format_summary(summary).replace("\n", "\n    "))

    _say("[4/5] Telemetry aggregates (main pings by submission date and by build id)")
    from jetstream_assets.aggregates.probes import registry_paths
    from jetstream_assets.assets.aggregates import materialize_aggregates
    from jetstream_assets.demo.pings import write_demo_pings

    started = time.monotonic()
    first, last, report = write_demo_pings(home, resources["warehouse"], today)
    days = (last - first).days + 1
    materialize_aggregates([first + dt.timedelta(days=n) for n in range(days)], resources["warehouse"],
                           instance=instance, quiet=True, probe_files=[str(p) for p in registry_paths(home)])
    _say(f"  {report.loaded:,} main pings over {days} dates loaded and aggregated in {time.monotonic() - started:.1f}s")

    _say("[5/5] Results")
    _say(f"  tables:   {home / 'warehouse' / 'mozanalysis'}  (Parquet, one file per table)")
    _say(f"  exports:  {home / 'exports'}  (statistics/, metadata/, errors/, and reports/<slug>.html to open in a browser)")
    _say(f"  aggregates API: jetstream-assets serve --home {home}")
    _say(f"  Dagster:  JETSTREAM_HOME={home} DAGSTER_HOME={home / 'dagster'} dagster dev -w workspace.yaml")
    _say("            (or `make ui` for the default home), then http://127.0.0.1:3000")
    return 1 if failures else 0
