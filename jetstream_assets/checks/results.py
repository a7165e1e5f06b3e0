"""What every asset check shares: picking the cells a check looks at, and never letting a check crash a step.

A check runs inside the asset's step (through run_cells' `checks=` hook), so a bug in a check must not
turn a good materialization red: it becomes a failed check result that says the check itself broke.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg

from jetstream_assets.planner import Cell, NoOp

logger = logging.getLogger("jetstream_assets")

Outcome = tuple[Cell | NoOp, dict]


def computed_cells(outcomes: Iterable[Outcome]) -> list[tuple[Cell, dict]]:
    """The cells of the step that computed something (no-ops and failed cells have nothing to check)."""
    return [
        (plan, metadata)
        for plan, metadata in outcomes
        if isinstance(plan, Cell) and metadata.get("status", "computed") == "computed"
    ]


def failed_cells(outcomes: Iterable[Outcome]) -> list[str]:
    """`slug on date` of the cells whose materialization reported an error (told apart in descriptions)."""
    return [
        f"{plan.slug} on {plan.analysis_date}" for plan, metadata in outcomes if metadata.get("status") == "error"
    ]


def metadata_value(metadata: dict, key: str) -> Any:
    """The plain value of a cell's metadata entry, whether the cell stored a MetadataValue or a raw value."""
    value = metadata.get(key)
    if isinstance(value, dg.JsonMetadataValue):
        return value.data
    if isinstance(value, dg.MetadataValue):
        return value.value
    return value


def nothing_to_check(
    check_name: str, severity: dg.AssetCheckSeverity, why: str, **metadata
) -> dg.AssetCheckResult:
    """A declared check gets a result on every step; a step with nothing to look at passes and says why."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=True,
        severity=severity,
        description=f"Nothing to check in this step: {why}",
        metadata={"checked": 0, **metadata},
    )


def guarded(
    check_name: str, severity: dg.AssetCheckSeverity, evaluate: Callable[[], dg.AssetCheckResult]
) -> dg.AssetCheckResult:
    """Run one check; if the check itself raises, report a failed result naming the error instead of
    failing the step (the asset's data is fine, the check is what needs fixing)."""
    try:
        return evaluate()
    except Exception as e:  # a broken check must not fail the materialization it inspects
        logger.error(f"Asset check {check_name} could not run: {e}", exc_info=True)
        return dg.AssetCheckResult(
            check_name=check_name,
            passed=False,
            severity=severity,
            description=(
                f"The check {check_name} could not run: {type(e).__name__}: {e}. This is a problem in the "
                "check or in what the step recorded, not necessarily in the data; see the traceback."
            ),
            metadata={"traceback": dg.MetadataValue.md(f"```\n{traceback.format_exc()[-3000:]}\n```")},
        )
