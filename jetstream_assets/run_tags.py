"""The jetstream/* tags of analysis runs, on every launch path.

Every way of starting work on an experiment (the sensors, `jetstream-assets run`, the UI's Materialize and
backfill dialogs) ends up as a run over a range of (experiment, date) partitions, tagged with the
experiment and why it runs: the sensors and the CLI set the tags themselves (`run_tags`); runs launched
from the UI or by a backfill get them when queued (`ExperimentRunCoordinator`), so the instance's
one-run-per-experiment limit (`tag_concurrency_limits` on jetstream/experiment) holds for all of them.

The Experimenter sensor's daily batch (`batch_tags`) covers many experiments in one run, so it cannot carry
one jetstream/experiment value: it lists them in jetstream/experiments instead, and every analysis run
holds its experiments' locks while it works (`locks.py`), so a batch and a run of one of its experiments
never overlap whichever starts first.
"""

from __future__ import annotations

import datetime as dt
import os

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
    PARTITION_NAME_TAG,
)

from jetstream_assets.partitions import ANALYSIS_DATES, cell_key, parse_key

EXPERIMENT_TAG = "jetstream/experiment"
RERUN_TAG = "jetstream/rerun"  # "full": every date of the experiment, stale outputs removed first
REASON_TAG = "jetstream/reason"
EXPERIMENTS_TAG = "jetstream/experiments"  # a batch run's experiments, comma-separated, in range order
BATCH_TAG = "jetstream/batch"  # a batch run's analysis dates, "<first>..<last>"
COMMIT_TAG = "jetstream/config_commit"


def sensor_interval(default: int) -> int:
    """Seconds between sensor ticks; JETSTREAM_SENSOR_INTERVAL_SECONDS shortens it (the demo UI uses 30)."""
    value = os.environ.get("JETSTREAM_SENSOR_INTERVAL_SECONDS")
    return int(value) if value else default


def first_grid_date() -> dt.date:
    return dt.date.fromisoformat(ANALYSIS_DATES.start.strftime("%Y-%m-%d"))


def run_tags(
    slug: str,
    dates: list[dt.date],
    *,
    full: bool = False,
    reason: str | None = None,
    commit: str | None = None,
) -> dict[str, str]:
    """Tags of a run over `slug`'s consecutive `dates`: the partition range plus why it runs."""
    dates = sorted(dates)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slug, dates[0])),
        ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slug, dates[-1])),
        EXPERIMENT_TAG: slug,
    }
    if full:
        tags[RERUN_TAG] = "full"
    if reason:
        tags[REASON_TAG] = reason[:200]
    if commit:
        tags[COMMIT_TAG] = commit
    return tags


def batch_tags(slugs: list[str], dates: list[dt.date], *, reason: str) -> dict[str, str]:
    """Tags of one run over `slugs` (consecutive in the experiment dimension's order) x consecutive `dates`."""
    dates = sorted(dates)
    return {
        ASSET_PARTITION_RANGE_START_TAG: str(cell_key(slugs[0], dates[0])),
        ASSET_PARTITION_RANGE_END_TAG: str(cell_key(slugs[-1], dates[-1])),
        EXPERIMENTS_TAG: ",".join(slugs),
        BATCH_TAG: f"{dates[0]}..{dates[-1]}",
        REASON_TAG: reason[:200],
    }


def run_experiments(tags) -> set[str]:
    """Every experiment a run works on: its jetstream/* tags, else Dagster's partition tags."""
    if tags.get(EXPERIMENTS_TAG):
        return set(tags[EXPERIMENTS_TAG].split(","))
    if tags.get(EXPERIMENT_TAG):
        return {tags[EXPERIMENT_TAG]}
    return _experiments_of(tags)


def _experiments_of(tags: dict[str, str]) -> set[str]:
    """The experiments a run covers, read from the partition tags Dagster sets (one key, or a range)."""
    if f"{MULTIDIMENSIONAL_PARTITION_PREFIX}experiment" in tags:
        return {tags[f"{MULTIDIMENSIONAL_PARTITION_PREFIX}experiment"]}
    keys = [tags.get(t) for t in (PARTITION_NAME_TAG, ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)]
    slugs = set()
    for key in filter(None, keys):
        if "|" in key:  # an analysis cell; the aggregates' plain dates are not
            slugs.add(parse_key(key)[0])
    return slugs


def launch_tags(tags: dict[str, str]) -> dict[str, str]:
    """The jetstream/* tags a run launched outside the sensors and the CLI lacks (the UI's Materialize, a
    backfill): the experiment (so the one-run-per-experiment limit applies) and why it runs."""
    if EXPERIMENT_TAG in tags or EXPERIMENTS_TAG in tags:
        return {}
    slugs = _experiments_of(tags)
    if len(slugs) != 1:  # not an analysis run, or one over several experiments: nothing to key on
        return {}
    added = {EXPERIMENT_TAG: slugs.pop()}
    if REASON_TAG not in tags:
        if tags.get(BACKFILL_ID_TAG):
            added[REASON_TAG] = f"backfill {tags[BACKFILL_ID_TAG]}"
        elif tags.get("dagster/from_ui") == "true":
            added[REASON_TAG] = "launched from the Dagster UI"
        else:
            added[REASON_TAG] = "launched by hand"
    return added


class ExperimentRunCoordinator(QueuedRunCoordinator):
    """Dagster's queued run coordinator that first gives each analysis run the jetstream/* tags.

    Runs launched from the UI or by a backfill carry only Dagster's partition tags: a single cell gets
    `dagster/partition/experiment`, but a single-run backfill over a range gets only the range tags, so no
    tag Dagster sets names the experiment on every launch path. Tagging at submission lets one
    `tag_concurrency_limits` rule on `jetstream/experiment` hold for every path, and lets the runs list
    filter any run by experiment. Configure it as the instance's run_coordinator (same config as
    QueuedRunCoordinator)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        added = launch_tags(dict(run.tags))
        if added:
            self._instance.add_run_tags(run.run_id, added)
            refreshed = self._instance.get_run_by_id(run.run_id)
            context = context._replace(dagster_run=refreshed or run)
        return super().submit_run(context)
