"""Runs an analysis asset over the cells of a step: one partition or a whole experiment's dates.

A single-run backfill hands an asset many (experiment, date) partitions at once; they are processed in
date order (a later date may read what an earlier one wrote, e.g. the pre-enrollment covariate table).
Each cell gets its own metadata. A cell that fails is logged and reported; it never stops the other
cells, and what they wrote stays. Only when every cell of the step failed does the step fail, so a
broken experiment shows red in the UI while a run over fifty good dates with one bad one keeps its work.
The whole step runs inside `monitoring.collect`: its warnings, errors and query costs go to the
monitoring tables and each experiment's errors export, whether the step succeeds or fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import traceback
from collections.abc import Callable

import dagster as dg

from jetstream_assets import monitoring
from jetstream_assets.analysis import Cell, NoOp, Planner
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


def _step_resource(context: dg.AssetExecutionContext, name: str, kind: type):
    """A resource the asset declared (typed parameters are required resources), else None."""
    try:
        found = getattr(context.resources, name, None)
    except Exception:
        return None
    return found if isinstance(found, kind) else None


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


def _enrollment_end(planner: Planner) -> Callable[[str], dt.date | None]:
    def enrollment_end(slug: str) -> dt.date | None:
        experiment = planner.experiment(slug)
        return experiment.enrollment_end_date if experiment is not None else None

    return enrollment_end


def run_cells(
    context: dg.AssetExecutionContext,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    compute: Callable[[Cell], dict],
    checks: Callable[[list[tuple[Cell | NoOp, dict]]], list[dg.AssetCheckResult]] | None = None,
    *,
    warehouse: Warehouse | None = None,
    export_store: ExportStore | None = None,
    prepare: Callable[[Planner], None] | None = None,
) -> dg.MaterializeResult:
    """Plan and compute every cell of the step; `checks` turns the (plan, metadata) of all cells into the
    asset's check results (one per declared check, every step). `prepare` runs first, with the step's
    planner and under its monitoring (e.g. removing a full rerun's stale outputs).

    Monitoring writes through `warehouse` and `export_store`, by default the asset's own `warehouse` and
    `export_store` resources; without a warehouse nothing is monitored, without an export store the
    errors exports are left as they are.
    """
    planner = Planner(experimenter, metric_hub, today())
    keys = sorted(context.partition_keys, key=lambda k: parse_key(k)[::-1])
    warehouse = warehouse or _step_resource(context, "warehouse", Warehouse)
    export_store = export_store or _step_resource(context, "export_store", ExportStore)
    slugs = list(dict.fromkeys(parse_key(k)[0] for k in keys))
    if warehouse is None:
        watch = contextlib.nullcontext(None)
    else:
        watch = monitoring.collect(
            warehouse,
            export_store,
            slugs,
            analysis_start_time=_run_start(context),
            enrollment_end=_enrollment_end(planner),
            log=context.log,
        )
    with watch as monitor:
        try:
            if prepare is not None:
                prepare(planner)
            result = _run_step(context, planner, keys, compute, checks)
        except dg.Failure:
            raise
        except Exception as e:  # a bug of the step itself: each experiment's errors export shows it
            for slug in slugs:
                logger.error(f"{context.assets_def.key.to_user_string()} step failed: {e}", exc_info=True,
                             extra={"experiment": slug})
            raise
    if monitor is not None:
        result = dg.MaterializeResult(
            metadata={**(result.metadata or {}), **monitor.metadata},
            check_results=result.check_results,
        )
    return result


def _run_step(
    context: dg.AssetExecutionContext,
    planner: Planner,
    keys: list,
    compute: Callable[[Cell], dict],
    checks: Callable[[list[tuple[Cell | NoOp, dict]]], list[dg.AssetCheckResult]] | None,
) -> dg.MaterializeResult:
    asset = context.assets_def.key.to_user_string()
    failures: list[str] = []
    outcomes: list[tuple[Cell | NoOp, dict]] = []
    warned: set[str] = set()
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
                    metadata = compute(plan)
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
        context.add_asset_metadata(metadata, partition_key=key)
        context.log.info(f"{asset} {key}: {metadata['status']} {metadata.get('reason', '')}".rstrip())
    if failures and len(failures) == len(keys):
        raise dg.Failure(
            description=f"{asset}: every cell of this step failed.\n" + "\n".join(failures[:20]),
            metadata={"failed_cells": len(failures)},
        )
    return dg.MaterializeResult(
        metadata={"cells_in_step": len(keys), "cells_failed": len(failures)},
        check_results=checks(outcomes) if checks else None,
    )
