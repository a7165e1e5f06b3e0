"""Materialize an experiment's cells through Dagster, recorded in a persistent instance: what the CLI's
`run` and the demo call. One experiment's dates are one run (a single-run backfill), like Jetstream's
`rerun`, not one process per date."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from jetstream_assets.experimenter.models import validate_slug
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.reruns import first_grid_date, run_tags

DAGSTER_YAML = """\
# Written by jetstream-assets: a persistent local instance for the demo and the UI.
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2   # 2 cores
    tag_concurrency_limits:  # one run per experiment at a time: a rerun never races a daily run
      - key: "jetstream/experiment"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
telemetry:
  enabled: false
"""


def prepare_instance(home: Path) -> dg.DagsterInstance:
    """The persistent Dagster instance under <home>/dagster (created with a 2-run queue)."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["JETSTREAM_HOME"] = str(home)
    return dg.DagsterInstance.get()


@dataclass
class RunSummary:
    slug: str
    dates: list[dt.date]
    success: bool
    seconds: float
    run_id: str
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # asset -> status -> cells
    errors: list[str] = field(default_factory=list)


def run_experiment(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    slug: str,
    dates: list[dt.date],
    tags: dict[str, str] | None = None,
    full: bool = False,
    reason: str | None = None,
) -> RunSummary:
    """Materialize every analysis asset of `slug` over `dates` (consecutive) in one Dagster run; `full`
    marks a whole-experiment rerun (stale windows are removed first)."""
    validate_slug(slug)  # a slug Dagster cannot key a partition by gets a clear error, not a crash
    if not dates:
        raise ValueError(f"No analysis dates to run for {slug}.")
    first_available = first_grid_date()
    dates = sorted(dates)
    if dates[0] < first_available:
        raise ValueError(
            f"{slug}: analysis date {dates[0]} is before the first date of the partition grid "
            f"({first_available}); set JETSTREAM_START_DATE to an earlier date."
        )
    if not instance.has_dynamic_partition(EXPERIMENTS.name, slug):
        instance.add_dynamic_partitions(EXPERIMENTS.name, [slug])
    all_tags = {**run_tags(slug, dates, full=full, reason=reason), **(tags or {})}
    started = time.monotonic()
    log_level = os.environ.get("JETSTREAM_LOG_LEVEL", "WARNING")
    result = defs.resolve_job_def("analysis").execute_in_process(
        instance=instance,
        tags=all_tags,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    summary = RunSummary(slug, dates, result.success, time.monotonic() - started, result.run_id)
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        status = materialization.metadata.get("status")
        status = status.value if status is not None else "computed"
        per_asset = summary.statuses.setdefault(materialization.asset_key.to_user_string(), {})
        per_asset[status] = per_asset.get(status, 0) + 1
        reason = materialization.metadata.get("reason")
        if status == "error" and reason is not None:
            summary.errors.append(f"{materialization.partition}: {reason.value}")
    for event in result.all_events:
        if event.is_step_failure:
            summary.errors.append(f"step {event.step_key} failed: {event.event_specific_data.error.message}")
    return summary
