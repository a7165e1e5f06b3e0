"""The Experimenter sensor: new experiments become partitions, closed days become runs, changes rerun.

Each tick reads Experimenter once and, for every experiment the daily run considers (live, or ended
within 90 days, not a rollout):

* new experiment: add its partition and run every date from its start (one run, single-run backfill);
* analysis fields changed (dates, enrollment, branches, status, outcomes, segments, reference branch...):
  a full rerun of the experiment, which also removes windows the new dates no longer produce;
* otherwise: the dates that became complete since the last tick (up to yesterday), in a daily batch.

The daily batch: every experiment with the same due dates (every live experiment, on a normal day) shares
one run over (its experiments) x (those dates), so the fixed cost of a run (a process, imports, run start,
the plan) is paid once per date, not once per experiment. Dagster hands a run one rectangular range of the
grid: experiments consecutive in the experiment dimension (the order partitions were added) times
consecutive dates. Experiments between two due ones come along only when every cell of theirs in the range
is a quiet no-op by their own plan (ended, not yet enrolled, skipped; an error is not quiet): such a cell
materializes as the no-op it is, with its reason, exactly as any run would record it. Anything else between
two due experiments (one that is busy, due on other dates, or would compute) splits the batch into two runs.
Left out of the batch, each in a run of its own:
* new experiments and full reruns: many dates each, a purge of stale outputs first, and dates that depend on
  earlier ones (the pre-enrollment covariates); one run per experiment keeps a long catch-up from holding
  the daily results of every other experiment, and its failure to itself;
* an experiment whose plan on a due date is an error (a config error, an unsupported application): it is
  known to fail, and a failing cell fails its step, which would skip the later steps of the whole batch.
A cell that fails in a batch fails its step, and Dagster then skips the later steps of the whole run: the
cursor remembers each batch, and once a batch run has failed the next tick runs again what it left undone,
the experiments whose cells failed each alone, the others (no-op ones included: the failed run shows
their cells failed too) together in a new batch (a batch that failed
without naming its cells is tried once more whole, then each experiment alone). An experiment with a run
queued or in progress (a rerun, a CLI or UI run) is left out of this tick and its dates are caught up by
the next one. Every run holds the locks of its experiments while it works
(`locks.py`), so a batch and a run of one of its experiments never overlap, whichever was launched first.

The cursor (JSON) keeps, per experiment, a digest of each analysis field and the last date requested.
Experimenter being down, slow or answering garbage skips the tick with the reason and leaves the cursor
alone, so the next good tick catches up. An experiment that disappears keeps its partitions and data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, FINISHED_STATUSES, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import RUN_KEY_TAG

from jetstream_assets.planner import NoOp, Planner
from jetstream_assets.assets.cells import today as current_date
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.models import Experiment, analysable, validate_slug
from jetstream_assets.experimenter.resource import Experimenter, ExperimenterUnavailableError
from jetstream_assets.jobs import analysis_job, experimenter_snapshot_job
from jetstream_assets.partitions import EXPERIMENTS, parse_key
from jetstream_assets.run_tags import batch_tags, first_grid_date, run_experiments, run_tags, sensor_interval
from jetstream_assets.sql.names import SlugCollisionError, normalize, table_name_owners
from jetstream_assets.windows import days

logger = logging.getLogger("jetstream_assets")

# Experimenter fields a rerun depends on, in cursor order.
ANALYSIS_FIELDS = (
    "start_date",
    "end_date",
    "proposed_enrollment",
    "enrollment_end_date",
    "is_enrollment_paused",
    "branches",
    "reference_branch",
    "outcomes",
    "segments",
    "app_name",
    "app_id",
    "bucket_config",
    "is_rollout",
)
CURSOR_VERSION = 1
FORGET_AFTER_DAYS = 120  # entries of experiments long past analysis leave the cursor


def field_digests(experiment: Experiment) -> str:
    """Four hex digits per analysis field: small enough for a cursor of thousands of experiments, and
    it says which fields changed."""
    dumped = experiment.model_dump(mode="json")
    return "".join(
        hashlib.blake2s(json.dumps(dumped.get(f), sort_keys=True).encode(), digest_size=2).hexdigest()
        for f in ANALYSIS_FIELDS
    )


def changed_fields(old: str, new: str) -> list[str]:
    return [f for i, f in enumerate(ANALYSIS_FIELDS) if old[4 * i : 4 * i + 4] != new[4 * i : 4 * i + 4]]


@dataclass
class Tick:
    """What one evaluation decided (the sensor wraps it in a SensorResult; tests and the bench read it)."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # slugs Experimenter listed more than once


def digest_of_snapshot(experiments: list[Experiment]) -> str:
    """Identifies an Experimenter answer: a new one refreshes the snapshot table."""
    dumped = json.dumps([e.model_dump(mode="json") for e in experiments], sort_keys=True)
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]


def load_cursor(text: str | None) -> dict:
    try:
        cursor = json.loads(text) if text else {}
    except json.JSONDecodeError:
        cursor = {}
    if cursor.get("v") != CURSOR_VERSION:
        cursor = {"v": CURSOR_VERSION, "experiments": {}, "snapshot": None}
    return cursor


def evaluate(
    cursor_text: str | None,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    today: dt.date,
    known_partitions: Iterable[str],
    done_through: dict[str, dt.date] | None = None,
    busy: Collection[str] = (),
    retries: dict[str, Retry] | None = None,
) -> Tick:
    """One tick. `known_partitions`: the instance's experiments, in the order they were added (the first
    to claim a table name keeps it). `done_through`: per experiment, the last date already materialized
    in the instance, so a sensor started on an instance the CLI or the demo filled does not redo that work.
    `busy`: experiments with a run queued or in progress; their daily dates wait for the next tick.
    `retries`: what failed batches left undone (`failed_batch_retries`)."""
    known_partitions = list(known_partitions)
    known = set(known_partitions)
    done_through = done_through or {}
    cursor = load_cursor(cursor_text)
    try:
        snapshot = experimenter.fetch()
    except (ExperimenterUnavailableError, ValueError, OSError) as e:
        logger.warning("Experimenter sensor: %s", e)
        return Tick(cursor=cursor, skip_reason=f"Experimenter unavailable, nothing changed: {e}")
    if not snapshot.experiments and cursor["experiments"]:
        reason = (
            f"Experimenter returned no experiments (previously {len(cursor['experiments'])}); "
            "treated as an outage: nothing is rerun or forgotten until it answers again."
        )
        logger.warning("Experimenter sensor: %s", reason)
        return Tick(cursor=cursor, skip_reason=reason)

    tick = Tick(cursor=cursor)
    tick.notes += [f"skipped malformed record: {e}" for e in snapshot.errors]
    planner = Planner(experimenter, metric_hub, today)
    planner.remember(snapshot.experiments)
    grid_start = first_grid_date()
    states: dict = cursor["experiments"]
    # table names belong to the experiment that claimed them first: the instance's partitions in the
    # order they were added, then Experimenter's list order (a record listed twice counts once)
    owners = table_name_owners(known_partitions)
    seen: set[str] = set()
    daily: dict[tuple[dt.date, dt.date], list[str]] = {}  # due dates -> experiments of the daily batch
    attempts: dict[str, int] = {}  # experiments run again after their batch failed without naming a cell
    for experiment in analysable(snapshot.experiments, today):
        slug = experiment.slug
        if slug in seen:
            if slug not in tick.duplicates:
                tick.duplicates.append(slug)
                message = f"{slug}: listed more than once by Experimenter; the first record is analysed"
                logger.warning("Experimenter sensor: %s", message, extra={"experiment": slug})
                tick.notes.append(message)
            continue
        seen.add(slug)
        owner = owners.setdefault(normalize(slug), slug)
        if owner != slug:
            refused = str(SlugCollisionError(slug, owner))
            logger.warning("Experimenter sensor: %s", refused, extra={"experiment": slug})
            tick.notes.append(refused)
            continue
        try:
            validate_slug(slug)
            dates = [d for d in planner.rerun_dates(experiment) if d >= grid_start]
        except Exception as e:  # noqa: BLE001 - one bad experiment never stops the others
            logger.warning("Experimenter sensor: %s left out this tick: %s", slug, e, extra={"experiment": slug})
            tick.notes.append(f"{slug}: {e}")
            continue
        if slug not in known:
            tick.new_partitions.append(slug)
        digests = field_digests(experiment)
        state = states.get(slug)
        if state is None and slug in done_through:  # analysed before this sensor ran (CLI, demo, UI)
            state = {"fields": digests, "through": done_through[slug].isoformat()}
        through = dt.date.fromisoformat(state["through"]) if state and state.get("through") else None
        if state is None:
            run_dates, reason, full = dates, "new experiment", True
        elif state["fields"] != digests:
            fields = ", ".join(changed_fields(state["fields"], digests))
            run_dates, reason, full = dates, f"Experimenter changed {fields}", True
        else:
            run_dates = [d for d in dates if through is None or d > through]
            reason, full = "analysis dates completed", False
            if run_dates and slug in busy:
                tick.notes.append(f"{slug}: a run of it is queued or in progress; its dates wait for the next tick")
                continue
        states[slug] = {"fields": digests, "through": state.get("through") if state else None}
        if not run_dates:
            continue
        states[slug]["through"] = run_dates[-1].isoformat()
        if not full:
            error = next((p for d in run_dates if isinstance(p := planner.plan(slug, d), NoOp) and p.is_error), None)
            if error is None:
                daily.setdefault((run_dates[0], run_dates[-1]), []).append(slug)
                continue
            reason += f", in a run of its own ({error.code} on {error.analysis_date})"
        tick.run_requests.append(
            dg.RunRequest(
                run_key=f"experimenter:{slug}:{digests[:12]}:{run_dates[0]}:{run_dates[-1]}",
                job_name=analysis_job.name,
                tags=run_tags(slug, run_dates, full=full, reason=reason),
            )
        )
    for slug, retry in (retries or {}).items():
        if slug in busy:
            tick.notes.append(f"{slug}: not run again after batch {retry.run_id[:8]} failed: a run of it is in progress")
        elif retry.alone:
            tick.run_requests.append(dg.RunRequest(
                run_key=f"experimenter:retry:{retry.run_id}:{slug}", job_name=analysis_job.name,
                tags=run_tags(slug, retry.dates, reason=f"alone, after batch run {retry.run_id[:8]} failed"),
            ))
        else:
            daily.setdefault((retry.dates[0], retry.dates[-1]), []).append(slug)
            attempts[slug] = retry.attempt
    # never twice in one tick, never one that is busy
    requested = {s for r in tick.run_requests for s in run_experiments(r.tags)} | set(busy)
    requested |= {s for members in daily.values() for s in members}
    order = known_partitions + tick.new_partitions
    present = {e.slug for e in snapshot.experiments}
    for (first, last), members in daily.items():
        span = days(first, last)

        def quiet(slug: str, span=span) -> bool:
            if slug in requested or slug not in present:  # (one Experimenter no longer lists is not planned)
                return False
            return all(isinstance(p := planner.plan(slug, d), NoOp) and not p.is_error for d in span)

        for segment in batch_segments(order, set(members), quiet):
            due = [s for s in segment if s in members]
            reason = f"analysis dates completed: {len(due)} experiment(s) in one run"
            if len(segment) > len(due):
                reason += f" ({len(segment) - len(due)} more between them with nothing to do: no-op cells)"
            key = hashlib.blake2s(",".join(segment).encode(), digest_size=6).hexdigest()
            attempt = max((attempts.get(s, -1) for s in due), default=-1) + 1
            key += f":{attempt}" if attempt else ""
            cursor.setdefault("batches", {})[f"experimenter:batch:{first}:{last}:{key}"] = {
                "dates": [first.isoformat(), last.isoformat()], "experiments": segment, "attempt": attempt,
                "on": today.isoformat()}
            tick.run_requests.append(
                dg.RunRequest(
                    run_key=f"experimenter:batch:{first}:{last}:{key}",
                    job_name=analysis_job.name,
                    tags=batch_tags(segment, span, reason=reason),
                )
            )
    horizon = (today - dt.timedelta(days=FORGET_AFTER_DAYS)).isoformat()
    for slug in [s for s, st in states.items() if s not in present and (st.get("through") or "") < horizon]:
        del states[slug]

    snapshot_digest = digest_of_snapshot(snapshot.experiments)
    if snapshot_digest != cursor.get("snapshot"):
        cursor["snapshot"] = snapshot_digest
        tick.run_requests.append(
            dg.RunRequest(run_key=f"snapshot:{snapshot_digest}", job_name=experimenter_snapshot_job.name)
        )
    if not tick.run_requests:
        tick.skip_reason = f"{len(states)} experiment(s) up to date; no analysis date completed since the last tick."
    return tick


@dataclass
class Retry:
    """Dates a failed batch run left undone for one experiment, and whether it runs alone next time."""

    run_id: str
    dates: list[dt.date]
    alone: bool
    attempt: int = 0


def failed_cells_of(instance: dg.DagsterInstance, run_id: str) -> set[str] | None:
    """The experiments whose cells failed a step of the run (the steps name them), or None when a step failed
    without naming its cells (a bug of the step, a killed process)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    slugs: set[str] = set()
    for record in records:
        data = record.event_log_entry.dagster_event.step_failure_data
        cells = data.user_failure_data.metadata.get("failed_cells") if data and data.user_failure_data else None
        if cells is None:
            return None
        slugs |= {parse_key(k)[0] for k in cells.value}
    return slugs if records else None


def failed_batch_retries(instance: dg.DagsterInstance, cursor: dict, today: dt.date) -> dict[str, Retry]:
    """What the batches of earlier ticks left undone, for those whose run has failed; forgets every batch whose
    run has ended (and those never created within a week)."""
    batches: dict = cursor.get("batches", {})
    retries: dict[str, Retry] = {}
    done: set[str] | None = None
    for key, batch in list(batches.items()):
        found = instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
        if not found:
            if batch["on"] < (today - dt.timedelta(days=7)).isoformat():
                del batches[key]
            continue
        run = found[0]
        if run.status not in FINISHED_STATUSES:
            continue
        del batches[key]
        if run.status == DagsterRunStatus.SUCCESS:
            continue
        if done is None:
            done = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey("metadata_export"))}
        first, last = (dt.date.fromisoformat(d) for d in batch["dates"])
        dates = days(first, last)
        culprits = failed_cells_of(instance, run.run_id)
        for slug in batch["experiments"]:  # the no-op ones too: a failed run shows their cells failed
            if all(f"{d}|{slug}" in done for d in dates):
                continue
            alone = slug in culprits if culprits is not None else batch.get("attempt", 0) > 0
            retries[slug] = Retry(run.run_id, dates, alone, batch.get("attempt", 0) if culprits is None else -1)
    return retries


def batch_segments(order: list[str], members: set[str], quiet: Callable[[str], bool]) -> list[list[str]]:
    """The batch's runs: maximal runs of `order` (the experiment dimension) that start and end with a member
    and hold only members and quiet experiments (`quiet` is asked only between two members)."""
    segments: list[list[str]] = []
    current: list[str] = []
    between: list[str] = []
    left = len(members)
    for slug in order:
        if not left and not current:
            break
        if slug in members:
            current += [*between, slug]
            between = []
            left -= 1
        elif current and left and quiet(slug):
            between.append(slug)
        elif current:
            segments.append(current)
            current, between = [], []
    if current:
        segments.append(current)
    return segments


def busy_experiments(instance: dg.DagsterInstance, claim_seconds: float = 60) -> set[str]:
    """Experiments with an analysis run queued or in progress (or just created by the CLI)."""
    runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED, *ACTIVE_RUN_STATUSES]))
    fresh = time.time() - claim_seconds
    runs += [r.dagster_run for r in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.NOT_STARTED]))
             if r.create_timestamp.timestamp() > fresh]
    return {slug for run in runs for slug in run_experiments(run.tags)}


def materialized_through(instance: dg.DagsterInstance) -> dict[str, dt.date]:
    """Per experiment, the latest analysis date whose last analysis asset is materialized."""
    latest: dict[str, dt.date] = {}
    try:
        keys = instance.get_materialized_partitions(dg.AssetKey("metadata_export"))
    except Exception:  # noqa: BLE001 - nothing recorded yet
        return latest
    for key in keys:
        slug, day = parse_key(key)
        if slug not in latest or day > latest[slug]:
            latest[slug] = day
    return latest


@dg.sensor(
    name="experimenter_sensor",
    jobs=[analysis_job, experimenter_snapshot_job],
    minimum_interval_seconds=sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Polls Experimenter: adds a partition per analysable experiment, runs each analysis date once its "
        "data are complete, and reruns an experiment whose analysis fields changed."
    ),
)
def experimenter_sensor(
    context: dg.SensorEvaluationContext, experimenter: Experimenter, metric_hub: MetricHub
) -> dg.SensorResult | dg.SkipReason:
    known = context.instance.get_dynamic_partitions(EXPERIMENTS.name)  # in the order they were added
    today = current_date()
    cursor = load_cursor(context.cursor)
    retries = failed_batch_retries(context.instance, cursor, today)
    tick = evaluate(json.dumps(cursor), experimenter, metric_hub, today, known,
                    materialized_through(context.instance), busy_experiments(context.instance), retries)
    for note in tick.notes:
        context.log.warning(note)
    if retries and not tick.run_requests:  # nothing was run again (Experimenter down): keep them for later
        tick.cursor["batches"] = load_cursor(context.cursor).get("batches", {})
    if tick.skip_reason and not tick.new_partitions:
        if tick.cursor != load_cursor(context.cursor):
            context.update_cursor(json.dumps(tick.cursor))
        return dg.SkipReason(tick.skip_reason)
    return dg.SensorResult(
        run_requests=tick.run_requests,
        dynamic_partitions_requests=[EXPERIMENTS.build_add_request(tick.new_partitions)] if tick.new_partitions else [],
        cursor=json.dumps(tick.cursor, separators=(",", ":")),
        skip_reason=tick.skip_reason if not tick.run_requests else None,
    )
