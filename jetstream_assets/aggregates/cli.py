"""`jetstream-assets aggregates ...`: load decoded main pings into the home's ping table, and materialize the
aggregates of their submission dates through Dagster (recorded in the home's instance)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from jetstream_assets.home import DEFAULT_HOME, home_dir  # light: `--help` imports this module


def _warehouse(home):
    import dagster as dg

    from jetstream_assets.resources import build_warehouse

    return dg.build_resources({"warehouse": build_warehouse(home)})


def _load(args: argparse.Namespace) -> int:
    from jetstream_assets.aggregates.source import PINGS_DATASET, PINGS_TABLE, load_pings

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    home = home_dir(args.home)
    home.mkdir(parents=True, exist_ok=True)
    with _warehouse(home) as resources:
        if args.replace:
            resources.warehouse.delete_tables([PINGS_TABLE], dataset=PINGS_DATASET)
        report = load_pings(resources.warehouse, args.file)
        where = resources.warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)
    for line in report.lines():
        print(line)
    print(f"into {where}; next: jetstream-assets aggregates run --all-dates --home {home}")
    return 0 if report.loaded else 1


def contiguous_ranges(dates: list[dt.date]) -> list[list[dt.date]]:
    """Sorted dates split into runs of consecutive days (one Dagster run each)."""
    ranges: list[list[dt.date]] = []
    for day in sorted(set(dates)):
        if ranges and (day - ranges[-1][-1]).days == 1:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return ranges


def _run(args: argparse.Namespace) -> int:
    from jetstream_assets.aggregates.compute import submission_dates
    from jetstream_assets.aggregates.probes import registry_paths
    from jetstream_assets.assets.aggregates import AGGREGATES_PARTITIONS, materialize_aggregates
    from jetstream_assets.runner import prepare_instance

    home = home_dir(args.home)
    with _warehouse(home) as resources:
        warehouse = resources.warehouse
        if args.date:
            try:
                dates = [dt.datetime.strptime(args.date, "%Y%m%d").date()]
            except ValueError:
                print(f"error: --date {args.date!r} is not a date written YYYYMMDD.", file=sys.stderr)
                return 2
        else:
            dates = submission_dates(warehouse)
            if not dates:
                print("error: no pings loaded; run `jetstream-assets aggregates load-pings FILE.jsonl` first.",
                      file=sys.stderr)
                return 2
        keys = set(AGGREGATES_PARTITIONS.get_partition_keys())
        outside = [d for d in dates if d.isoformat() not in keys]
        if outside:
            print(f"error: {', '.join(map(str, outside[:5]))} outside the aggregates partitions "
                  f"({AGGREGATES_PARTITIONS.start:%Y-%m-%d} to today; set JETSTREAM_AGGREGATES_START_DATE).",
                  file=sys.stderr)
            return 2
        instance = prepare_instance(home)
        failed = 0
        for days in contiguous_ranges(dates):
            result = materialize_aggregates(days, warehouse, instance=instance, raise_on_error=False, quiet=True,
                                            probe_files=[str(p) for p in registry_paths(home)])
            span = f"{days[0]}" + (f" .. {days[-1]}" if len(days) > 1 else "")
            if result.success:
                rows = {}
                for event in result.get_asset_materialization_events():
                    meta = event.materialization.metadata
                    count = meta.get("dagster/row_count") or meta.get("rows_in_run")
                    rows[event.asset_key.to_user_string()] = count.value if count else 0
                print(f"{span}: ok (run {result.run_id[:8]}); rows: "
                      + ", ".join(f"{k} {v:,}" for k, v in sorted(rows.items())))
            else:
                failed += 1
                errors = [e.event_specific_data.error.message.strip() for e in result.get_step_failure_events()]
                print(f"{span}: FAILED (run {result.run_id[:8]}): {'; '.join(errors)[:2000]}")
    return 1 if failed else 0


def add_parser(sub) -> None:
    """The `aggregates` command group of the `jetstream-assets` parser."""
    group = sub.add_parser("aggregates", help="Telemetry aggregates: load main pings, aggregate their dates.")
    commands = group.add_subparsers(dest="aggregates_command", required=True)
    load = commands.add_parser("load-pings", help="Load decoded main pings (one JSON document per line).")
    load.add_argument("file", metavar="FILE.jsonl")
    load.add_argument("--replace", action="store_true",
                      help="Empty the ping table first (by default pings are appended: a file loaded twice counts twice).")
    load.add_argument("--home", default=None, help=f"Folder for everything (default {DEFAULT_HOME}).")
    load.set_defaults(func=_load)
    run = commands.add_parser("run", help="Materialize the aggregates of submission dates through Dagster.")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", help="One submission date (YYYYMMDD).")
    when.add_argument("--all-dates", action="store_true", help="Every submission date of the loaded pings.")
    run.add_argument("--home", default=None, help=f"Folder for everything (default {DEFAULT_HOME}).")
    run.set_defaults(func=_run)
