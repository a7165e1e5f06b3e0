"""Materialize an experiment's cells through Dagster, recorded in a persistent instance: what the CLI's
`run` and the demo call. One experiment's dates are one run (a single-run backfill), like Jetstream's
`rerun`, not one process per date.

The run executes in the caller's process, with the tags every launch path gives (`run_tags.run_tags`), once the
instance's run queue would let it start (`instance.wait_for_turn`: one run per experiment at a time). Only an
experiment Experimenter knows (or one the instance already has) gets a partition: a typo is refused with the
nearest known slugs. While it works, `progress` hears which step runs and how many cells are done.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.events import DagsterEventType
from dagster._core.execution.api import create_execution_plan, execute_run_iterator
from dagster._core.storage.dagster_run import DagsterRun

from jetstream_assets.experimenter.models import ExperimenterRecordError, validate_slug
from jetstream_assets.instance import blocking_runs, host_tags, prepare_instance, wait_for_turn
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENT_TAG, first_grid_date, run_tags
from jetstream_assets.sql.names import check_table_names

__all__ = ["RunProgress", "RunSummary", "UnknownExperimentError", "prepare_instance", "run_experiment"]

JOB = "analysis"


class UnknownExperimentError(ValueError):
    """A slug neither Experimenter nor the instance knows: refused, so a typo never becomes a partition."""

    def __init__(self, slug: str, known: list[str], source: str):
        self.slug = slug
        self.suggestions = difflib.get_close_matches(slug, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"Experiment {slug!r} is not in the Experimenter source ({source}) and has never been analysed "
            f"here.{hint} Check the slug; nothing was run."
        )


def check_known(instance: dg.DagsterInstance, experimenter, slug: str) -> None:
    """Refuse a slug Experimenter does not know, unless the instance already has it (an experiment that left
    Experimenter keeps its results and can be rerun)."""
    try:
        if experimenter.get(slug) is not None:  # an unreadable source raises here, before anything runs
            return
    except ExperimenterRecordError:
        return  # Experimenter has the record; its cells report what is wrong with it
    if instance.has_dynamic_partition(EXPERIMENTS.name, slug):
        return
    snapshot = experimenter.fetch()
    known = {e.slug for e in snapshot.experiments} | {e.slug for e in snapshot.errors if e.slug}
    known |= set(instance.get_dynamic_partitions(EXPERIMENTS.name))
    raise UnknownExperimentError(slug, sorted(known), experimenter.url or str(experimenter.path))


@dataclass
class RunSummary:
    slug: str
    dates: list[dt.date]
    success: bool
    seconds: float
    run_id: str
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # asset -> status -> cells
    errors: list[str] = field(default_factory=list)


@dataclass
class RunProgress:
    """How far a run is: cells (asset x partition) done of those planned, the step at work."""

    run_id: str
    cells_done: int = 0
    cells_total: int = 0
    step: str | None = None
    steps_done: int = 0
    steps_total: int = 0
    waiting_for: list[str] = field(default_factory=list)  # runs of the same experiment ahead of this one


# What a cell's step logs when the cell is done: "<asset> <date>|<slug>: <status> ..." (assets/cells.py).
CELL_DONE = re.compile(r"^(?P<asset>[\w/]+) (?P<key>\d{4}-\d{2}-\d{2}\|\S+): (?P<status>[\w-]+)")


class RunFollower(threading.Thread):
    """Follows a run's events in the instance and reports its progress on every change."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, report: Callable[[RunProgress], None],
                 poll_seconds: float = 0.5):
        super().__init__(daemon=True, name=f"follow-{run_id[:8]}")
        self.instance, self.report, self.poll_seconds = instance, report, poll_seconds
        self.progress = RunProgress(run_id)
        self._planned: set[tuple[str, str]] = set()
        self._done: set[tuple[str, str]] = set()
        self._cursor: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            self._halt.wait(self.poll_seconds)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.poll()

    def poll(self) -> None:
        try:
            connection = self.instance.get_records_for_run(self.progress.run_id, cursor=self._cursor, limit=1000)
        except Exception:  # noqa: BLE001 - progress is best effort; the run's result is what counts
            return
        if not connection.records:
            return
        self._cursor = connection.cursor
        for record in connection.records:
            if self._see(record.event_log_entry):  # a step started: say so even if it ends before the next poll
                self._report()
        self._report()

    def _report(self) -> None:
        p = self.progress
        p.cells_total = len(self._planned)
        p.cells_done = len(self._done & self._planned) if self._planned else len(self._done)
        p.steps_total = len({asset for asset, _ in self._planned})
        self.report(p)

    def _see(self, entry) -> bool:
        """Take in one event; True when a step started."""
        event = entry.dagster_event
        if event is None:
            match = CELL_DONE.match(entry.user_message or "")
            if match:
                self._done.add((match["asset"], match["key"]))
            return False
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            data = event.event_specific_data
            self._planned.add((data.asset_key.to_user_string(), str(data.partition)))
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            m = event.event_specific_data.materialization
            self._done.add((m.asset_key.to_user_string(), str(m.partition)))
        elif event.event_type == DagsterEventType.STEP_START:
            self.progress.step = event.step_key
            return True
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            self.progress.steps_done += 1
            self.progress.step = None
        return False


def _claim_run(instance: dg.DagsterInstance, job: dg.JobDefinition, tags: dict[str, str], run_config: dict,
               progress: Callable[[RunProgress], None] | None) -> DagsterRun:
    """Create the run once the queue's rule lets it start; if another caller claimed the same slot in the same
    moment, the older claim goes first and this one waits again."""

    def on_wait(blocking: list[DagsterRun]) -> None:
        if progress is not None:
            progress(RunProgress("", waiting_for=[
                f"run {r.run_id[:8]} ({r.tags.get(EXPERIMENT_TAG, r.job_name)}, {r.status.value})" for r in blocking
            ]))

    plan = create_execution_plan(InMemoryJob(job), run_config=run_config,
                                 instance_ref=instance.get_ref() if instance.is_persistent else None)
    while True:
        wait_for_turn(instance, tags, on_wait)
        run = instance.create_run_for_job(job_def=job, run_config=run_config, tags=tags, execution_plan=plan)
        if not blocking_runs(instance, tags, run.run_id):
            return run
        instance.delete_run(run.run_id)


def run_experiment(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    slug: str,
    dates: list[dt.date],
    tags: dict[str, str] | None = None,
    full: bool = False,
    reason: str | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    log_level: str | None = None,
) -> RunSummary:
    """Materialize every analysis asset of `slug` over `dates` (consecutive) in one Dagster run; `full`
    marks a whole-experiment rerun (stale windows are removed first). `log_level` is the console's
    (default JETSTREAM_LOG_LEVEL or WARNING); the run's events are recorded in the instance whatever it is."""
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
    check_known(instance, defs.resources["experimenter"], slug)
    check_table_names(slug, instance.get_dynamic_partitions(EXPERIMENTS.name))  # never take another's tables
    if not instance.has_dynamic_partition(EXPERIMENTS.name, slug):
        instance.add_dynamic_partitions(EXPERIMENTS.name, [slug])
    all_tags = {**run_tags(slug, dates, full=full, reason=reason), **host_tags(), **(tags or {})}
    log_level = log_level or os.environ.get("JETSTREAM_LOG_LEVEL", "WARNING")
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    job = defs.resolve_job_def(JOB).as_ephemeral_job(resource_defs={}, input_values={})
    started = time.monotonic()
    run = _claim_run(instance, job, all_tags, run_config, progress)
    follower = RunFollower(instance, run.run_id, progress) if progress is not None else None
    if follower is not None:
        follower.start()
    try:
        events = list(execute_run_iterator(InMemoryJob(job), run, instance))
    finally:
        if follower is not None:
            follower.stop()
    final = instance.get_run_by_id(run.run_id)
    success = final is not None and final.status == dg.DagsterRunStatus.SUCCESS
    return summarize(slug, dates, success, time.monotonic() - started, run.run_id, events)


def summarize(slug: str, dates: list[dt.date], success: bool, seconds: float, run_id: str, events) -> RunSummary:
    summary = RunSummary(slug, dates, success, seconds, run_id)
    for event in events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            status = materialization.metadata.get("status")
            status = status.value if status is not None else "computed"
            per_asset = summary.statuses.setdefault(materialization.asset_key.to_user_string(), {})
            per_asset[status] = per_asset.get(status, 0) + 1
            reason = materialization.metadata.get("reason")
            if status == "error" and reason is not None:
                summary.errors.append(f"{materialization.partition}: {reason.value}")
        elif event.is_step_failure:
            summary.errors.append(f"step {event.step_key} failed: {root_cause(event.event_specific_data.error)}")
    return summary


def root_cause(error) -> str:
    """The message of the error a step raised, under Dagster's wrappers, on one line."""
    while error.cause is not None and error.message.startswith("dagster._core.errors."):
        error = error.cause
    return " ".join(error.message.split())
