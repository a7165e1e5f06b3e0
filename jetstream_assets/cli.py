"""jetstream-assets: the demo, Jetstream's `run`/`rerun` for one experiment, config validation and ad-hoc
statistics."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from jetstream_assets.resources import DEFAULT_HOME, home_dir


def _run(args: argparse.Namespace) -> int:
    from jetstream_assets.analysis import Planner
    from jetstream_assets.assets.cells import today
    from jetstream_assets.definitions import build_definitions
    from jetstream_assets.resources import build_resources
    from jetstream_assets.runner import prepare_instance, run_experiment

    home = home_dir(args.home)
    instance = prepare_instance(home)
    resources = build_resources(home)
    if args.date:
        dates = [dt.date.fromisoformat(args.date)]
    else:
        planner = Planner(resources["experimenter"], resources["metric_hub"], today())
        experiment = planner.experiment(args.experiment)
        if experiment is None:
            print(f"error: experiment {args.experiment!r} is not in the Experimenter source "
                  f"({resources['experimenter'].url or resources['experimenter'].path}).", file=sys.stderr)
            return 2
        dates = planner.rerun_dates(experiment)
        if not dates:
            print(f"error: {args.experiment} has no start date yet; nothing to run.", file=sys.stderr)
            return 2
    summary = run_experiment(
        instance, build_definitions(home), args.experiment, dates,
        full=not args.date, reason=None if args.date else "manual rerun (jetstream-assets run --all-dates)",
    )
    print(format_summary(summary))
    return 0 if summary.success else 1


def format_summary(summary) -> str:
    span = f"{summary.dates[0]}" + (f" .. {summary.dates[-1]}" if len(summary.dates) > 1 else "")
    lines = [
        f"{summary.slug}: {len(summary.dates)} date(s) {span} in {summary.seconds:.1f}s "
        f"({'ok' if summary.success else 'FAILED'}, run {summary.run_id[:8]})"
    ]
    for asset, statuses in summary.statuses.items():
        lines.append(f"  {asset:<18} " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    for error in summary.errors[:10]:
        lines.append(f"  ! {error}")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from jetstream_assets.demo.run import run_demo

    return run_demo(home_dir(args.home), clients=args.clients)


def _statistics(args: argparse.Namespace) -> int:
    from jetstream_assets.statistics.cli import run

    return run(args)


def _validate_config(args: argparse.Namespace) -> int:
    from jetstream_assets.validation import format_reports, validate_configs

    warehouse = None
    if not args.synthetic:
        from jetstream_assets.resources import build_resources

        warehouse = build_resources(home_dir(args.home))["warehouse"]
    reports = validate_configs(
        args.paths, platform=args.platform, metric_hub=args.metric_hub, warehouse=warehouse,
        synthetic=args.synthetic,
    )
    for line in format_reports(reports):
        print(line)
    return 0 if all(r.valid for r in reports) else 1


def _serve(args: argparse.Namespace) -> int:
    from jetstream_assets.aggregates.api import serve

    serve(home_dir(args.home), port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetstream-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="Generate the demo world and analyse every demo experiment.")
    demo.add_argument("--home", default=None, help=f"Folder for everything (default {DEFAULT_HOME}).")
    demo.add_argument("--clients", type=int, default=100_000, help="Synthetic clients (up to 1,000,000).")
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="Materialize one experiment's cells through Dagster (run / rerun).")
    run.add_argument("--experiment", required=True, help="Experiment slug.")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", help="One analysis date (YYYY-MM-DD).")
    when.add_argument("--all-dates", action="store_true",
                      help="Every date from the start to min(end + 1 day, yesterday): a rerun.")
    run.add_argument("--home", default=None, help=f"Folder for everything (default {DEFAULT_HOME}).")
    run.set_defaults(func=_run)

    check = sub.add_parser(
        "validate-config",
        help="Validate metric-hub config files: parse, resolve, build and dry-run their SQL "
             "(exit 1 on problems).",
    )
    check.add_argument("paths", nargs="+", metavar="PATH",
                       help="Experiment configs, outcomes, defaults or definitions (TOML) of a metric-hub.")
    check.add_argument("--platform", default=None,
                       help="App of experiment configs (default: inferred from their slug and references).")
    check.add_argument("--metric-hub", default=None,
                       help="metric-hub checkout to resolve against (default: the one each file lives in).")
    check.add_argument("--synthetic", action="store_true",
                       help="Dry-run on empty tables derived from the SQL instead of the warehouse's data "
                            "(checks syntax, functions and types, not column names).")
    check.add_argument("--home", default=None,
                       help=f"Folder whose warehouse runs the dry runs (default {DEFAULT_HOME}).")
    check.set_defaults(func=_validate_config)

    from jetstream_assets.statistics.cli import add_arguments

    stats = sub.add_parser("statistics", help="One statistic on a per-client Parquet file.")
    add_arguments(stats)
    stats.set_defaults(func=_statistics)
    srv = sub.add_parser("serve", help="Serve the telemetry aggregates HTTP API (mozaggregator's) on 127.0.0.1.")
    srv.add_argument("--home", default=None, help=f"Folder for everything (default {DEFAULT_HOME}).")
    srv.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    srv.set_defaults(func=_serve)
    from jetstream_assets.aggregates.cli import add_parser as add_aggregates_parser

    add_aggregates_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # bad input: say what and where, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
