"""analysis_plan[slug, D]: what each cell of the run will do, decided once per run and shown in the UI.

The plan reads the experiment from Experimenter and resolves its metric-hub configuration once; every
later step of the same run (enrollments, metrics, statistics, the exports) asks the same planner, so a
run reads Experimenter and resolves the config once, not once per step. (The analysis job runs its steps
in one process, see definitions.py; a step that runs without the plan step in its run -- a re-execution
of one step, a descriptions-only export run -- plans its own cells and says so in its log.)

Each cell's materialization shows its analysis windows, the effective dates (the config may override
Experimenter's), the config commit and digest, or why there is nothing to do. The latest cell of each
experiment in the step also lists all the experiment's analysis dates with what each one does, so one
experiment's dates are readable at a glance. A full rerun's purge (tables, views and exports the new plan
no longer produces) happens here, before anything is computed, and is recorded on the plan.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Collection

import dagster as dg

from jetstream_assets.planner import Cell, NoOp, Planner
from jetstream_assets.assets.cells import ANALYSIS_ORDER, StepResources, analysis_asset, today
from jetstream_assets.assets.common import code_version
from jetstream_assets.config.fingerprint import PRESENTATION_FIELDS, canonical, digest
from jetstream_assets.partitions import parse_key
from jetstream_assets.run_tags import first_grid_date
from jetstream_assets.windows import days
from jetstream_assets.stale_outputs import is_full_rerun, purge_stale

logger = logging.getLogger("jetstream_assets")

ANALYSIS_STEPS = ANALYSIS_ORDER[1:]  # the steps after the plan

# run id -> the run's planner. Steps of one run share a process (in-process executor); a few recent runs
# are kept (tests and the CLI run several runs in one process).
_RUN_PLANNERS: collections.OrderedDict[str, Planner] = collections.OrderedDict()
KEPT_RUNS = 4


def planner_for_run(context: dg.AssetExecutionContext, experimenter, metric_hub) -> Planner:
    """The planner the run's analysis_plan step made, or a new one for this step when there is none."""
    planner = _RUN_PLANNERS.get(context.run_id)
    if planner is None:
        planner = Planner(experimenter, metric_hub, today())
        _RUN_PLANNERS[context.run_id] = planner
        while len(_RUN_PLANNERS) > KEPT_RUNS:
            _RUN_PLANNERS.popitem(last=False)
        if context.assets_def.key.to_user_string() != "analysis_plan":
            context.log.info("No analysis_plan step ran in this process: this step plans its own cells.")
    return planner


def config_digest_of(cell: Cell) -> str:
    """A digest of what the resolved configuration makes the analysis compute (not its descriptions)."""
    conf = cell.resolved.config
    decided = {
        "experiment_spec": conf.experiment.experiment_spec,
        "segments": conf.experiment.segments,
        "exposure_signal": conf.experiment.exposure_signal,
        "metrics": conf.metrics,
    }
    return digest(canonical(decided, PRESENTATION_FIELDS))


def plan_metadata(cell: Cell, resources: StepResources) -> dict:  # noqa: ARG001 - the factory's signature
    """What the cell will compute: its windows, the dates it follows, and the config it uses."""
    windows = [f"{w.period.value} {w.index} [{w.start}, {w.end}]" for w in cell.windows]
    experiment = cell.experiment
    return {
        "windows": ", ".join(windows) if windows else "none closes on this date",
        "effective_dates": (
            f"start {experiment.start_date}, last enrollment {cell.last_enrollment_date} "
            f"({cell.enrollment_period} days), end {experiment.end_date or 'open'}"
        ),
        "config_commit": cell.resolved.commit or "",
        "config_digest": config_digest_of(cell),
        "config_file": cell.resolved.config_file or "(platform defaults)",
    }


def _date_summary(plan: Cell | NoOp) -> str:
    if isinstance(plan, NoOp):
        return f"{'error' if plan.is_error else 'no-op'}: {plan.code}"
    windows = ", ".join(f"{w.period.value} {w.index}" for w in plan.windows)
    if windows:
        return f"computes {windows}"
    return "enrollments only" if plan.analysis_date == plan.last_enrollment_date else "no window closes"


def _still_to_come(planner: Planner, experiment, after: dt.date | None) -> list[dt.date]:
    """The dates after the last analysable one up to the day after the end (a live experiment: today)."""
    try:
        start, end = planner.effective_dates(experiment)
    except Exception:  # noqa: BLE001 - a config error: its cells say so
        start, end = experiment.start_date, experiment.end_date
    if start is None:
        return []
    first = (after or start - dt.timedelta(days=1)) + dt.timedelta(days=1)
    last = end + dt.timedelta(days=1) if end is not None else planner.today
    return days(first, last)


def materialized_cells(context: dg.AssetExecutionContext) -> dict[str, set[str]]:
    """{step: its materialized cell keys}, read once for all the experiments of a step."""
    done: dict[str, set[str]] = {}
    for step in ANALYSIS_STEPS:
        try:
            done[step] = {str(k) for k in context.instance.get_materialized_partitions(dg.AssetKey(step))}
        except Exception:  # noqa: BLE001 - nothing recorded yet
            done[step] = set()
    return done


def experiment_dates(
    context: dg.AssetExecutionContext, planner: Planner, slug: str, in_run: Collection[str] = (),
    materialized: dict[str, set[str]] | None = None,
) -> dg.MetadataValue:
    """Every analysis date of the experiment: what the plan does on it and which steps have materialized it
    (`in_run`: the cells this run computes, marked as such rather than missing; `materialized`: what
    `materialized_cells` read, when the caller shows several experiments)."""
    experiment = planner.experiment(slug)
    if experiment is None:
        return dg.MetadataValue.md(f"{slug} is not in Experimenter.")
    grid = first_grid_date()
    dates = [d for d in planner.rerun_dates(experiment) if d >= grid]
    dates += _still_to_come(planner, experiment, dates[-1] if dates else None)
    done = materialized if materialized is not None else materialized_cells(context)
    on = planner.today
    lines = ["| date | plan | " + " | ".join(ANALYSIS_STEPS) + " |", "|---|---|" + "---|" * len(ANALYSIS_STEPS)]
    counts = collections.Counter()
    running = {str(k) for k in in_run}
    for day in dates:
        key = f"{day}|{slug}"
        summary = "still to come" if day >= on else _date_summary(planner.plan(slug, day))
        marks = ["this run" if key in running else "done" if key in done[s] else "-" for s in ANALYSIS_STEPS]
        state = ("still to come" if day >= on else "this run" if key in running
                 else "done" if all(m == "done" for m in marks) else "not done")
        counts[state] += 1
        lines.append(f"| {day} | {summary} | " + " | ".join(marks) + " |")
    header = (
        f"**{slug}**: {len(dates)} analysis dates ({dates[0] if dates else '-'} .. {dates[-1] if dates else '-'}); "
        f"{counts['done']} done by every step, {counts['this run']} computed by this run, "
        f"{counts['not done']} missing or failed, {counts['still to come']} still to come. `done` = "
        "materialized (computed or no-op) before this run, `this run` = computed by this run (its partitions show "
        "whether each step succeeded), `-` = missing or failed.\n\n"
    )
    return dg.MetadataValue.md(header + "\n".join(lines))


def purge_before_full_reruns(
    context: dg.AssetExecutionContext, planner: Planner, resources: StepResources, keys: list
) -> dict[str, dict]:
    """For each experiment this run reruns in full, remove its stale outputs before anything is computed.
    Returns the metadata to add per cell: the removal on the experiment's first cell, and the
    experiment's dates on its latest cell."""
    steps: dict[str, list] = {}
    for key in keys:
        steps.setdefault(parse_key(key)[0], []).append(key)
    extra: dict[str, dict] = {}
    materialized = materialized_cells(context)
    for slug, slug_keys in steps.items():
        first = str(min(slug_keys, key=lambda k: parse_key(k)[1]))
        last = str(max(slug_keys, key=lambda k: parse_key(k)[1]))
        try:
            full = is_full_rerun(planner, slug, {parse_key(k)[1] for k in slug_keys}, context.run.tags)
            removed = purge_stale(planner, slug, resources.warehouse, resources.export_store) if full else None
        except Exception as e:  # noqa: BLE001 - the cells report the experiment's problem themselves
            logger.warning("Rerun of %s: stale outputs not removed: %s", slug, e, extra={"experiment": slug})
            removed, full = None, False
        extra.setdefault(first, {})["full_rerun"] = full
        if removed is not None:
            extra[first]["rerun_removed"] = dg.MetadataValue.json(removed)
            context.log.info(
                f"Full rerun of {slug}: removed {len(removed['tables'])} stale table(s) and "
                f"{len(removed['exports'])} stale export(s)"
            )
        try:
            extra.setdefault(last, {})["experiment_dates"] = experiment_dates(context, planner, slug, slug_keys, materialized)
        except Exception as e:  # noqa: BLE001 - a broken record: its cells say what is wrong
            logger.info("No dates overview of %s: %s", slug, e, extra={"experiment": slug})
    return extra


analysis_plan = analysis_asset(
    "analysis_plan",
    plan_metadata,
    group_name="experiments",
    kinds={"python"},
    deps=[],
    code_version=code_version("assets/plan.py", "planner.py", "eligibility.py", "stale_outputs.py", "windows.py", "config"),
    before=purge_before_full_reruns,
    description=(
        "The plan of each (experiment, analysis date) cell, made once per run: the analysis windows that "
        "close on the date, the effective dates, the config commit and digest, or why there is nothing to "
        "do. The latest cell of an experiment lists all its analysis dates (done, no-op, still to come). A "
        "full rerun removes here, in the open, the tables and exports its new plan no longer produces."
    ),
)
