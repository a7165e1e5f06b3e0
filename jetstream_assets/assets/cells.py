"""One analysis step over the (experiment, date) cells Dagster hands it, and the factory of the analysis assets.

A single-run backfill hands an asset many cells at once; they are processed in date order (a later date
may read what an earlier one wrote, e.g. the pre-enrollment covariate table). Each cell gets its own
metadata, and a failing cell never stops the others. What Dagster records is exact per cell:

* every cell succeeded (computed or no-op): one materialization per cell, as Dagster makes for a range;
* some cells failed: the cells that succeeded are materialized one by one, the failed ones are not, and
  the step then fails naming them. The run ends FAILURE, so the UI shows the failed cells as *failed*
  partitions (planned in a failed run, never materialized) and "Backfill failed and missing" reruns
  exactly them (and whatever later steps of this run could not do because this step failed).

Checks are partitioned: each cell's verdict is recorded on its own partition, so one experiment's warning
is never overwritten by another experiment's step. The whole step runs inside `monitoring.collect`.

Before its first step computes anything, a run holds the locks of all its experiments (`locks.py`): a
daily batch over many experiments and a rerun of one of them never work at the same time. The run's last
analysis step frees them.
"""


import datetime as dt
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluation,
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
)

from jetstream_assets import locks, monitoring
from jetstream_assets.planner import Cell, NoOp, Planner
from jetstream_assets.assets.common import ANALYSIS_ASSET_ARGS
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.store import ExportStore
from jetstream_assets.partitions import parse_key
from jetstream_assets.warehouse.base import Warehouse

logger = logging.getLogger("jetstream_assets")


class CellError(RuntimeError):
    """This cell could not be computed; the message names the experiment, date and cause."""


def today() -> dt.date:
    """The current date; JETSTREAM_TODAY pins it (tests, reproducible demos)."""
    pinned = os.environ.get("JETSTREAM_TODAY")
    return dt.date.fromisoformat(pinned) if pinned else dt.date.today()


def noop(reason: str, **extra) -> dict:
    return {"status": "no-op", "reason": reason, **extra}


@dataclass(frozen=True)
class StepResources:
    """The resources every analysis step gets as parameters: the plan reads Experimenter and metric-hub,
    monitoring writes the logs through the warehouse and the errors export through the export store."""

    experimenter: Experimenter
    metric_hub: MetricHub
    warehouse: Warehouse
    export_store: ExportStore


Outcome = tuple[Cell | NoOp, dict]
Compute = Callable[[Cell, StepResources], dict]
CellChecks = Callable[[Outcome, StepResources], list[dg.AssetCheckResult]]
# Runs once per step before any cell (with the run's planner), e.g. the plan's rerun purge; returns
# metadata per partition key to add to those cells.
BeforeCells = Callable[[dg.AssetExecutionContext, Planner, StepResources, list], dict]
# Builds the compute of one step, for state its cells share (e.g. the metrics' shared scan of the sources).
StepCompute = Callable[[Planner, StepResources, list], Compute]


def _run_start(context: dg.AssetExecutionContext) -> dt.datetime | None:
    """When the Dagster run started: the errors export keeps rows from there (or its weekly cycle) on,
    so every step of one run sees the rows of the steps before it."""
    try:
        record = context.instance.get_run_record_by_id(context.run_id)
        if record is not None and record.start_time:
            return dt.datetime.fromtimestamp(record.start_time, dt.UTC)
    except Exception:
        pass
    return None


def refuse_truncated_range(context: dg.AssetExecutionContext) -> None:
    """Fail loudly when the run was tagged with a range of cells but Dagster hands the step only one.

    A backfill launched from the *job* page of a multi-partitioned asset job tags its run with the range
    and with the first key's per-dimension tags, and the per-dimension tags win: the step would compute
    one cell and the backfill would say every cell succeeded (dagster-io/dagster#17404, #28861)."""
    tags = context.run.tags
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    dimensions = any(t.startswith(MULTIDIMENSIONAL_PARTITION_PREFIX) for t in tags)
    if start and end and start != end and dimensions:
        raise dg.Failure(
            description=(
                f"This run was launched for the cells {start} ... {end}, but Dagster hands this step only "
                f"{len(context.partition_keys)} of them: a backfill of a multi-partitioned job launched from "
                "the job page runs only its first cell (dagster-io/dagster#17404). Nothing was computed. "
                "Launch the backfill from an asset instead: Catalog (or the lineage graph) -> select the "
                "analysis assets -> Materialize -> pick the experiment and its dates; or "
                "`jetstream-assets run --experiment SLUG --all-dates`."
            ),
            allow_retries=False,
        )


ANALYSIS_ORDER = ("analysis_plan", "enrollments", "metrics", "statistics", "statistics_export", "metadata_export")
PROGRESS_SECONDS = 1.0  # at most one cell-progress line a second per step
_HELD: dict[str, set[str]] = {}  # run id -> experiments whose locks this process holds for it
_STEPS_DONE: dict[str, set[str]] = {}  # run id -> its analysis steps this process has run


def hold_experiments(context: dg.AssetExecutionContext, slugs: list[str]) -> None:
    """Hold the run's experiment locks (once per run and process), waiting for any run that holds one."""
    held = _HELD.setdefault(context.run_id, set())
    wanted = set(slugs) - held
    if not wanted:
        return

    def on_wait(slug: str, runs: list[str]) -> None:
        context.log.info(f"Waiting for run(s) {', '.join(runs)} to finish with {slug} (one run per experiment at a time)")

    locks.hold(context.instance, context.run_id, wanted, on_wait)
    held |= wanted
    for runs in (_HELD, _STEPS_DONE):
        while len(runs) > 8:  # a long-lived process (tests, the CLI) keeps only recent runs
            runs.pop(next(iter(runs)))


def last_analysis_step(context: dg.AssetExecutionContext) -> bool:
    """Whether every analysis step the run selects has now run in this process (the last one frees the run's
    experiment locks; a run that stops earlier leaves them to be freed by the next run that waits)."""
    selection = context.run.asset_selection or None  # a run of the whole job has an empty selection
    names = {n for n in ANALYSIS_ORDER if selection is None or dg.AssetKey(n) in selection}
    done = _STEPS_DONE.setdefault(context.run_id, set())
    done.add(context.assets_def.key.to_user_string())
    return names <= done


def run_cells(
    context: dg.AssetExecutionContext,
    resources: StepResources,
    compute: Compute | StepCompute,
    checks: CellChecks | None = None,
    before: BeforeCells | None = None,
    per_step: bool = False,
) -> Iterator:
    """Plan (with the run's planner) and compute every cell of the step; yields what Dagster records."""
    refuse_truncated_range(context)
    keys = sorted(context.partition_keys, key=lambda k: parse_key(k)[::-1])
    slugs = list(dict.fromkeys(parse_key(k)[0] for k in keys))
    hold_experiments(context, slugs)
    try:
        yield from _run_cells(context, resources, compute, keys, slugs, checks, before, per_step)
    finally:
        if last_analysis_step(context):
            locks.release(context.instance, context.run_id)
            _HELD.pop(context.run_id, None)
            _STEPS_DONE.pop(context.run_id, None)


def _run_cells(context, resources, compute, keys, slugs, checks, before, per_step) -> Iterator:
    from jetstream_assets.assets.plan import planner_for_run  # the plan asset builds on this module

    planner = planner_for_run(context, resources.experimenter, resources.metric_hub)

    def enrollment_end(slug: str) -> dt.date | None:
        experiment = planner.experiment(slug)
        return experiment.enrollment_end_date if experiment is not None else None

    with monitoring.collect(
        resources.warehouse,
        resources.export_store,
        slugs,
        analysis_start_time=_run_start(context),
        enrollment_end=enrollment_end,
        log=context.log,
    ) as monitor:
        try:
            extra = before(context, planner, resources, keys) if before is not None else {}
            if per_step:  # `compute` builds the step's compute
                compute = compute(planner, resources, keys)
            outcomes, failures = _run_step(context, planner, keys, compute, resources)
        except dg.Failure:
            raise
        except Exception as e:  # a bug of the step itself: each experiment's errors export shows it
            for slug in slugs:
                logger.error(f"{context.assets_def.key.to_user_string()} step failed: {e}", exc_info=True,
                             extra={"experiment": slug})
            raise
    step_metadata = {"cells_in_step": len(keys), "cells_failed": len(failures), **monitor.metadata}
    asset_key = context.assets_def.key
    succeeded = []
    for key, (plan, metadata) in zip(keys, outcomes):
        metadata.update(extra.get(str(key), {}))
        if metadata["status"] != "error":
            succeeded.append(key)
    if not failures:
        for key, (_, metadata) in zip(keys, outcomes):
            add_cell_metadata(context, key, metadata)
        yield dg.MaterializeResult(metadata=step_metadata)
    else:
        for key, (_, metadata) in zip(keys, outcomes):
            if key in succeeded:
                yield dg.AssetMaterialization(
                    asset_key=asset_key, partition=str(key), metadata={**step_metadata, **metadata}
                )
    if checks is not None:
        yield from _check_evaluations(context, checks, keys, outcomes, resources, succeeded)
    if failures:
        raise dg.Failure(
            description=(
                f"{asset_key.to_user_string()}: {len(failures)} of {len(keys)} cell(s) failed and are not "
                f"materialized (the other {len(succeeded)} are). Fix the cause, then rerun them: "
                "the asset's Partitions tab -> 'Backfill failed and missing', or rerun the experiment.\n"
                + "\n".join(failures[:20])
            ),
            metadata={"failed_cells": dg.MetadataValue.json([f.split(": ", 1)[0] for f in failures])},
            allow_retries=False,
        )


def add_cell_metadata(context: dg.AssetExecutionContext, key, metadata: dict) -> None:
    """`context.add_asset_metadata(metadata, partition_key=key)` without its check that `key` is in the run's
    range: that check lists the whole range (a query per dimension key) on every call, which makes a step
    quadratic in its cells (a 100-experiment batch: seconds). Every key here comes from the step's range."""
    step = context.op_execution_context._step_execution_context  # noqa: SLF001 - Dagster pinned (1.13.27)
    step._metadata_accumulator = step._metadata_accumulator.with_additional_asset_metadata(  # noqa: SLF001
        asset_key=context.assets_def.key, metadata=metadata, partition_key=str(key)
    )


def _run_step(
    context: dg.AssetExecutionContext,
    planner: Planner,
    keys: list,
    compute: Compute,
    resources: StepResources,
) -> tuple[list[Outcome], list[str]]:
    asset = context.assets_def.key.to_user_string()
    failures: list[str] = []
    outcomes: list[Outcome] = []
    warned: set[str] = set()
    told = time.monotonic()
    for key in keys:
        slug, analysis_date = parse_key(key)
        extra = {"experiment": slug, "analysis_date": analysis_date.isoformat()}
        with monitoring.log_context(experiment=slug):  # records of code that does not know the slug
            plan = planner.plan(slug, analysis_date)
            if isinstance(plan, NoOp):
                metadata = {"status": "error" if plan.is_error else "no-op", "reason": plan.reason,
                            "code": plan.code}
                level = {"error": logging.ERROR, "warning": logging.WARNING}.get(plan.level, logging.INFO)
                # Jetstream's exception name lets the errors export leave out the expected skips
                logger.log(level, plan.reason,
                           extra={**extra, "exception_type": monitoring.skip_exception_type(plan.code)})
                if plan.is_error:
                    failures.append(f"{key}: {plan.reason}")
            else:
                try:
                    metadata = compute(plan, resources)
                    if plan.resolved.errors:  # metrics or statistics the config resolution had to drop
                        metadata["config_errors"] = dg.MetadataValue.json(
                            [str(e) for e in plan.resolved.errors]
                        )
                        if slug not in warned:
                            warned.add(slug)
                            for error in plan.resolved.errors:
                                logger.warning(str(error), exc_info=error, extra=extra)
                except Exception as e:  # one cell never stops the others
                    message = f"{asset} failed for {slug} on {analysis_date}: {e}"
                    logger.error(message, exc_info=True, extra=extra)
                    metadata = {
                        "status": "error",
                        "reason": message,
                        "traceback": dg.MetadataValue.md(f"```\n{traceback.format_exc()[-3000:]}\n```"),
                    }
                    failures.append(f"{key}: {e}")
        metadata.setdefault("status", "computed")
        outcomes.append((plan, metadata))
        # a line per cell is an event in the instance (milliseconds each): the progress of a long step, the
        # errors, and the last cell are told; every cell's status is in its materialization's metadata
        now = time.monotonic()
        if metadata["status"] == "error" or key == keys[-1] or now - told >= PROGRESS_SECONDS:
            context.log.info(f"{asset} {key}: {metadata['status']} {metadata.get('reason', '')}".rstrip())
            told = now
    return outcomes, failures


def _targets(context: dg.AssetExecutionContext, keys: Sequence) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The materialization each cell's check looks at (the one this step just recorded)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.assets_def.key, asset_partitions=[str(k) for k in keys]),
        limit=max(len(keys), 1) * 2,
    ).records
    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:  # newest first
        partition = record.event_log_entry.dagster_event.partition
        if partition is not None and partition not in found:
            found[partition] = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            )
    return found


def _check_evaluations(context, checks: CellChecks, keys, outcomes, resources, succeeded) -> Iterator:
    """One evaluation per selected check and materialized cell, on the cell's partition; a failed cell
    has no materialization to check (its partition shows the failure instead)."""
    selected = {k.name for k in context.selected_asset_check_keys}
    if not selected:
        return
    for check_key in context.selected_asset_check_keys:  # the step's check outputs (they carry no value)
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))
    targets = _targets(context, succeeded)
    for key, outcome in zip(keys, outcomes):
        if key not in succeeded:
            continue
        for result in checks(outcome, resources):
            if result.check_name not in selected:
                continue
            yield AssetCheckEvaluation(
                asset_key=context.assets_def.key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                target_materialization_data=targets.get(str(key)),
                severity=result.severity,
                description=result.description,
                blocking=False,
                partition=str(key),
            )


def analysis_asset(
    name: str,
    compute: Compute | StepCompute,
    *,
    group_name: str,
    kinds: set[str],
    deps: Sequence,
    code_version: str,
    description: str,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
    checks: CellChecks | None = None,
    before: BeforeCells | None = None,
    per_step: bool = False,
) -> dg.AssetsDefinition:
    """An analysis asset over the (experiment, date) grid whose step runs `compute` on each planned cell
    (with `per_step`, `compute` is a StepCompute: called once per step, it returns the cells' compute)."""

    @dg.asset(
        name=name,
        **ANALYSIS_ASSET_ARGS,
        group_name=group_name,
        kinds=kinds,
        deps=list(deps),
        code_version=code_version,
        check_specs=list(check_specs) or None,
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        experimenter: Experimenter,
        metric_hub: MetricHub,
        warehouse: Warehouse,
        export_store: ExportStore,
    ):
        yield from run_cells(
            context, StepResources(experimenter, metric_hub, warehouse, export_store), compute, checks, before,
            per_step,
        )

    return _asset
