"""jetstream-assets: the demo, Jetstream's `run`/`rerun` for one experiment, config validation, ad-hoc
statistics and the aggregates API."""

from __future__ import annotations

# Start-up stays light (`--help` answers at once): dagster, pandas, mozanalysis and the package's engines are
# imported inside the subcommand that needs them.
import argparse
import atexit
import datetime as dt
import importlib
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path

from jetstream_assets.home import DEFAULT_HOME, home_dir

HOME_HELP = f"Folder for everything (default $JETSTREAM_HOME or {DEFAULT_HOME})."


class CliError(Exception):
    """Bad input the user can fix: printed as one paragraph, exit 2."""


# --- run ----------------------------------------------------------------------------------------------------


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD ({e})") from None


def existing_home(arg: str | None) -> Path:
    home = home_dir(arg)
    if not home.is_dir():
        raise CliError(
            f"The home {home} does not exist. Create one with `jetstream-assets demo --home {home}`, "
            "or pass --home (or set JETSTREAM_HOME) to an existing home."
        )
    return home


def _run(args: argparse.Namespace) -> int:
    home = existing_home(args.home)
    from jetstream_assets.planner import Planner
    from jetstream_assets.assets.cells import today as current_date
    from jetstream_assets.definitions import build_definitions
    from jetstream_assets.experimenter.resource import ExperimenterUnavailableError
    from jetstream_assets.instance import own_instance
    from jetstream_assets.runner import check_known, prepare_instance, run_experiment

    instance = own_instance(home) or prepare_instance(home)
    defs = build_definitions(home)
    resources = defs.resources
    try:
        check_known(instance, resources["experimenter"], args.experiment)
    except ExperimenterUnavailableError as e:
        raise CliError(str(e)) from e
    today = current_date()
    if args.date:
        if args.date > today:
            print(f"warning: --date {args.date} is after today ({today}): its telemetry is not complete yet, so "
                  "its results will change once it is.", file=sys.stderr)
        dates = [args.date]
    else:
        planner = Planner(resources["experimenter"], resources["metric_hub"], today)
        experiment = planner.experiment(args.experiment)
        if experiment is None:
            raise CliError(f"Experiment {args.experiment} is no longer in the Experimenter source, so its dates "
                           "are unknown; run single dates with --date.")
        dates = planner.rerun_dates(experiment)
        if not dates:
            raise CliError(f"{args.experiment} has no start date yet; nothing to run.")
    printer = ProgressPrinter(args.experiment)
    try:
        summary = run_experiment(
            instance, defs, args.experiment, dates,
            full=not args.date, reason=None if args.date else "manual rerun (jetstream-assets run --all-dates)",
            progress=printer, log_level=None if args.debug else "CRITICAL",  # failures are in the summary
        )
    finally:
        from jetstream_assets.warehouse.local import close_connections

        instance.dispose()  # the event log's SQLite files checkpointed and closed now, not at interpreter exit
        close_connections()
    printer.done()
    print(format_summary(summary))
    return 0 if summary.success else 1


class ProgressPrinter:
    """Prints a run's progress to stderr: a line when a step starts and every few seconds while it works
    (one line rewritten in place on a terminal)."""

    def __init__(self, label: str, stream=None, every_seconds: float = 5.0, indent: str = "  "):
        self.label, self.stream, self.every, self.indent = label, stream or sys.stderr, every_seconds, indent
        self.started = time.monotonic()
        self._last: tuple = ()
        self._printed_at = 0.0
        self._waiting: list[str] = []

    def __call__(self, progress) -> None:
        if progress.waiting_for:
            if progress.waiting_for != self._waiting:
                self._waiting = progress.waiting_for
                self._emit(f"{self.label}: waiting for {', '.join(progress.waiting_for)} to finish (the instance "
                           "runs one run per experiment at a time)", force=True)
            return
        if not progress.cells_total or (progress.step is None and 0 < progress.steps_done < progress.steps_total):
            return  # nothing planned yet, or between two steps
        step = progress.step or ("starting" if not progress.steps_done else "finishing")
        line = (f"{self.label}: {progress.cells_done}/{progress.cells_total} cells done, "
                f"step {step} ({progress.steps_done}/{progress.steps_total} steps done), "
                f"{time.monotonic() - self.started:.0f}s")
        key = (step, progress.cells_done == progress.cells_total)
        now = time.monotonic()
        if key != self._last or now - self._printed_at >= self.every:
            self._last = key
            self._emit(line)

    def _emit(self, line: str, force: bool = False) -> None:
        self._printed_at = time.monotonic()
        if self.stream.isatty() and not force:
            self.stream.write(f"\r\033[K{self.indent}{line}")
        else:
            self.stream.write(f"{self.indent}{line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")


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


def add_run(sub) -> None:
    run = sub.add_parser("run", parents=[common()], help="Materialize one experiment's cells through Dagster "
                         "(run / rerun), showing progress.")
    run.add_argument("--experiment", required=True, help="Experiment slug (one Experimenter knows).")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_date, help="One analysis date (YYYY-MM-DD).")
    when.add_argument("--all-dates", action="store_true",
                      help="Every date from the start to min(end + 1 day, yesterday): a rerun.")
    run.add_argument("--home", default=None, help=HOME_HELP)
    run.set_defaults(func=_run)


# --- the other subcommands ------------------------------------------------------------------------------------


def add_validate_config(sub) -> None:
    check = sub.add_parser(
        "validate-config", parents=[common()],
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


def add_statistics(sub) -> None:
    stats = sub.add_parser("statistics", parents=[common()], help="One statistic on a per-client Parquet file.")
    stats.set_defaults(func=_statistics, arguments="jetstream_assets.statistics.cli:add_arguments")


def _statistics(args: argparse.Namespace) -> int:
    from jetstream_assets.statistics.cli import run

    return run(args)


def add_serve(sub) -> None:
    srv = sub.add_parser("serve", parents=[common()],
                         help="Serve the telemetry aggregates HTTP API (mozaggregator's) on 127.0.0.1.")
    srv.add_argument("--home", default=None, help=HOME_HELP)
    srv.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    srv.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from jetstream_assets.aggregates.api import serve

    serve(home_dir(args.home), port=args.port)
    return 0


# --- the parser and the error handling -----------------------------------------------------------------------

def add_aggregates(sub) -> None:
    from jetstream_assets.aggregates.cli import add_parser  # light: its commands import their engines

    add_parser(sub)


# One function per subcommand, each adding its parser (and `func`) to the subparsers.
SUBCOMMANDS = [add_run, add_validate_config, add_statistics, add_serve, add_aggregates]
#: entry points that add subcommands of other packages (the demo adds `demo`: the CLI never imports it)
COMMANDS_GROUP = "jetstream_assets.commands"


def common() -> argparse.ArgumentParser:
    """Options every subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="On an error, show its traceback.")
    return parent


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetstream-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    args = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in args if not a.startswith("-")), None)
    if chosen not in sub.choices:  # another package's command, or help: read the entry points (~20 ms)
        from importlib.metadata import entry_points

        for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
            entry_point.load()(sub)
    # A subcommand whose arguments need heavy imports adds them only when it is the one chosen.
    if chosen in sub.choices:
        lazy = sub.choices[chosen].get_default("arguments")
        if lazy:
            module, _, name = lazy.partition(":")
            getattr(importlib.import_module(module), name)(sub.choices[chosen])
    return parser


def paragraph(message: str) -> str:
    """An error message as one paragraph: its lines joined, wrapped for a terminal."""
    return textwrap.fill(f"error: {' '.join(message.split())}", width=100, subsequent_indent="  ")


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every error ends as one paragraph; --debug shows the traceback
        bad_input = isinstance(e, (CliError, ValueError, OSError))
        if getattr(args, "debug", False):
            traceback.print_exc()
        hint = " (run again with --debug for the traceback)" if hasattr(args, "debug") else ""
        text = str(e) if bad_input else f"{type(e).__name__}: {e}{hint}"
        print(paragraph(text), file=sys.stderr)
        return 2 if bad_input else 1


def entry() -> None:
    """The console script (and `python -m jetstream_assets.cli`): `main`, then exit without the interpreter's
    teardown. After a run that teardown (freeing a heap of millions of objects, module by module, and joining
    native thread pools) took about a second; the command's resources are closed by then (`_run` disposes the
    Dagster instance and closes the DuckDB connections) and the atexit handlers still run."""
    code = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or debugger writes its results at the interpreter's exit
    local = sys.modules.get("jetstream_assets.warehouse.local")
    if local is not None:
        local.close_connections()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
