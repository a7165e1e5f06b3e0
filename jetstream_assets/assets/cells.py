"""Runs an analysis asset over the cells of a step: one partition or a whole experiment's dates.

A single-run backfill hands an asset many (experiment, date) partitions at once; they are processed in
date order (a later date may read what an earlier one wrote, e.g. the pre-enrollment covariate table).
Each cell gets its own metadata. A cell that fails is logged and reported; it never stops the other
cells, and what they wrote stays. Only when every cell of the step failed does the step fail, so a
broken experiment shows red in the UI while a run over fifty good dates with one bad one keeps its work.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import traceback
from collections.abc import Callable

import dagster as dg

from jetstream_assets.analysis import Cell, NoOp, Planner
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.partitions import parse_key

logger = logging.getLogger("jetstream_assets")


class CellError(RuntimeError):
    """This cell could not be computed; the message names the experiment, date and cause."""


def today() -> dt.date:
    """The current date; JETSTREAM_TODAY pins it (tests, reproducible demos)."""
    pinned = os.environ.get("JETSTREAM_TODAY")
    return dt.date.fromisoformat(pinned) if pinned else dt.date.today()


def noop(reason: str, **extra) -> dict:
    return {"status": "no-op", "reason": reason, **extra}


def run_cells(
    context: dg.AssetExecutionContext,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    compute: Callable[[Cell], dict],
    checks: Callable[[list[tuple[Cell | NoOp, dict]]], list[dg.AssetCheckResult]] | None = None,
) -> dg.MaterializeResult:
    """Plan and compute every cell of the step; `checks` turns the (plan, metadata) of all cells into the
    asset's check results (one per declared check, every step)."""
    planner = Planner(experimenter, metric_hub, today())
    keys = sorted(context.partition_keys, key=lambda k: parse_key(k)[::-1])
    asset = context.assets_def.key.to_user_string()
    failures: list[str] = []
    outcomes: list[tuple[Cell | NoOp, dict]] = []
    warned: set[str] = set()
    for key in keys:
        slug, analysis_date = parse_key(key)
        extra = {"experiment": slug, "analysis_date": analysis_date.isoformat()}
        plan = planner.plan(slug, analysis_date)
        if isinstance(plan, NoOp):
            metadata = {"status": "error" if plan.is_error else "no-op", "reason": plan.reason,
                        "code": plan.code}
            level = {"error": logging.ERROR, "warning": logging.WARNING}.get(plan.level, logging.INFO)
            logger.log(level, plan.reason, extra=extra)
            if plan.is_error:
                failures.append(f"{key}: {plan.reason}")
        else:
            try:
                metadata = compute(plan)
                if plan.resolved.errors:  # metrics or statistics the config resolution had to drop
                    metadata["config_errors"] = dg.MetadataValue.json([str(e) for e in plan.resolved.errors])
                    if slug not in warned:
                        warned.add(slug)
                        for error in plan.resolved.errors:
                            logger.warning(str(error), extra=extra)
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
