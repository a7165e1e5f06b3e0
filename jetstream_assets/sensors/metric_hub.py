"""The metric-hub sensor: each new commit reruns exactly the experiments whose resolved config it changes.

Per tick: fetch the remote (when the resource has a `url`), list the commits since the cursor's, and for
each commit compare, for every experiment that has a partition, what the previous and the new commit
decide for it (`config.fingerprint`): its own `jetstream/<slug>.toml`, its platform's defaults, the
outcomes it uses, and every metric, data source, segment and Jinja function its resolved config uses.

* analysis changed  -> a full rerun of the experiment (every date; stale windows removed), tagged with
  the commit;
* only descriptions changed (friendly names, outcome texts...) -> only `metadata_export` on the
  experiment's latest analysed date: nothing is recomputed, the results page text is refreshed;
* unchanged -> skipped, listed in the tick's log.

Only experiments a changed file can reach are resolved, and experiments that resolve alike (same
platform, outcomes and segments, no own config file) are compared once, so a tick stays within seconds
with a thousand experiments.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import dagster as dg

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.cells import today as current_date
from jetstream_assets.config.fingerprint import config_digest, resolution_key
from jetstream_assets.config.metric_hub import LoadedConfigs, MetricHub
from jetstream_assets.experimenter.models import Experiment
from jetstream_assets.experimenter.resource import Experimenter, ExperimenterUnavailableError
from jetstream_assets.jobs import analysis_job
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import first_grid_date, run_tags, sensor_interval

logger = logging.getLogger("jetstream_assets")
LOGGED = 50  # experiments named per log line of a tick


@dataclass
class Affected:
    slug: str
    kind: str  # "analysis" | "presentation"
    commits: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)


@dataclass
class Tick:
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)
    skip_reason: str | None = None
    affected: dict[str, Affected] = field(default_factory=dict)
    unaffected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reachable_files(experiment: Experiment, loaded: LoadedConfigs) -> set[str]:
    """Every file that could change what metric-hub decides for the experiment (a superset: the
    decision itself compares resolved configs)."""
    files = {loaded.experiment_config_path(experiment.slug)}
    defaults_dir = loaded.defaults_path("_").rsplit("/", 1)[0] + "/"
    files |= {p for p in loaded.file_digests if p.startswith(defaults_dir)}
    files |= {loaded.outcome_path(o, experiment.app_name) for o in experiment.outcomes}
    files |= set(loaded.definition_paths(experiment.app_name)) | set(loaded.function_paths())
    return files


def compare_commits(
    before: LoadedConfigs, after: LoadedConfigs, experiments: list[Experiment], today: dt.date
) -> tuple[dict[str, tuple[str, set[str]]], list[str]]:
    """({slug: (kind, changed files it can reach)}, unaffected slugs) between two commits."""
    changed = after.changed_files(before)
    affected: dict[str, tuple[str, set[str]]] = {}
    unaffected: list[str] = []
    decided: dict[tuple, str | None] = {}
    for experiment in experiments:
        reach = (reachable_files(experiment, before) | reachable_files(experiment, after)) & changed
        if not reach:
            unaffected.append(experiment.slug)
            continue
        own = before.experiment_config_path(experiment.slug)
        key = resolution_key(experiment, before.has_file(own) or after.has_file(own), today)
        if key not in decided:
            old, new = config_digest(experiment, before, today), config_digest(experiment, after, today)
            decided[key] = (
                "analysis" if old.analysis != new.analysis
                else "presentation" if old.presentation != new.presentation
                else None
            )
        if decided[key] is None:
            unaffected.append(experiment.slug)
        else:
            affected[experiment.slug] = (decided[key], reach)
    return affected, unaffected


def _has_windows(planner: Planner, slug: str, day: dt.date) -> bool:
    plan = planner.plan(slug, day)
    return isinstance(plan, Cell) and bool(plan.windows)


def evaluate(
    cursor_text: str | None,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    today: dt.date,
    known_partitions: set[str],
) -> Tick:
    cursor = json.loads(cursor_text) if cursor_text else {}
    tick = Tick(cursor=dict(cursor))
    try:
        if metric_hub.url:
            metric_hub.refresh()
        head = metric_hub.commit()
    except Exception as e:  # noqa: BLE001 - a failing fetch skips this tick; the next one retries
        logger.warning("metric-hub sensor: %s", e)
        tick.skip_reason = f"metric-hub could not be read or fetched: {e}"
        return tick
    if head is None:
        tick.skip_reason = (
            f"metric-hub at {metric_hub.path} is not a git checkout: config changes cannot be attributed to "
            "commits, so they are not watched. Use a git checkout (or set the resource's url)."
        )
        return tick
    last = cursor.get("commit")
    if last is None:
        tick.cursor = {"commit": head}
        tick.skip_reason = f"Watching metric-hub from commit {head[:12]}; later commits rerun what they change."
        return tick
    if last == head:
        tick.skip_reason = f"No new metric-hub commit (at {head[:12]})."
        return tick
    commits = metric_hub.commits_since(last)
    if commits is None:  # history rewritten: compare the two trees directly
        tick.notes.append(f"commit {last[:12]} is no longer an ancestor of {head[:12]}; comparing the two trees")
        commits = [head]
    try:
        experiments = [e for e in experimenter.fetch().experiments if e.slug in known_partitions]
    except (ExperimenterUnavailableError, ValueError, OSError) as e:
        logger.warning("metric-hub sensor: %s", e)
        tick.skip_reason = f"Experimenter unavailable; commits after {last[:12]} are looked at next tick: {e}"
        return tick

    try:
        previous = metric_hub.load_at(last)
    except Exception as e:  # noqa: BLE001 - the old commit is gone (gc'd): start over from the head
        tick.notes.append(f"previous commit {last[:12]} cannot be read ({e}); watching from {head[:12]}")
        tick.cursor = {"commit": head}
        tick.skip_reason = "; ".join(tick.notes)
        return tick
    for commit in commits:
        current = metric_hub.load_at(commit)
        affected, _ = compare_commits(previous, current, experiments, today)
        for slug, (kind, files) in affected.items():
            entry = tick.affected.setdefault(slug, Affected(slug, kind))
            if kind == "analysis":
                entry.kind = "analysis"
            entry.commits.append(commit)
            entry.files |= files
        previous = current
    tick.unaffected = sorted(e.slug for e in experiments if e.slug not in tick.affected)

    planner = Planner(experimenter, metric_hub, today)
    planner.remember(experiments)
    grid_start = first_grid_date()
    for entry in tick.affected.values():
        experiment = planner.experiment(entry.slug)
        dates = [d for d in planner.rerun_dates(experiment) if d >= grid_start]
        if not dates:
            tick.notes.append(f"{entry.slug}: changed, but none of its analysis dates is on the grid (from {grid_start})")
            continue
        shorts = ",".join(c[:8] for c in entry.commits)
        reason = f"metric-hub {shorts}: {', '.join(sorted(entry.files))}"
        if entry.kind == "analysis":
            request = dg.RunRequest(
                run_key=f"metric-hub:{head}:{entry.slug}",
                job_name=analysis_job.name,
                tags=run_tags(entry.slug, dates, full=True, reason=reason, commit=head),
            )
        else:
            latest = next((d for d in reversed(dates) if _has_windows(planner, entry.slug, d)), None)
            if latest is None:
                continue
            request = dg.RunRequest(
                run_key=f"metric-hub:{head}:{entry.slug}:metadata",
                job_name=analysis_job.name,
                asset_selection=[dg.AssetKey("metadata_export")],
                tags=run_tags(entry.slug, [latest], reason="descriptions only: " + reason, commit=head),
            )
        tick.run_requests.append(request)
    tick.cursor = {"commit": head}
    if not tick.run_requests:
        tick.skip_reason = (
            f"metric-hub {last[:12]}..{head[:12]} ({len(commits)} commit(s)) changes no analysed experiment "
            f"({len(tick.unaffected)} checked)."
        )
    return tick


@dg.sensor(
    name="metric_hub_sensor",
    job=analysis_job,
    minimum_interval_seconds=sensor_interval(120),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the metric-hub repository; each new commit reruns exactly the experiments whose resolved "
        "configuration it changes (own config, defaults, outcomes, or a definition they use)."
    ),
)
def metric_hub_sensor(
    context: dg.SensorEvaluationContext, experimenter: Experimenter, metric_hub: MetricHub
) -> dg.SensorResult | dg.SkipReason:
    known = set(context.instance.get_dynamic_partitions(EXPERIMENTS.name))
    tick = evaluate(context.cursor, experimenter, metric_hub, current_date(), known)
    for note in tick.notes:
        context.log.warning(note)
    for entry in list(tick.affected.values())[:LOGGED]:
        context.log.info(f"{entry.slug}: {entry.kind} changed by {', '.join(sorted(entry.files))}")
    if tick.unaffected:
        more = f" and {len(tick.unaffected) - LOGGED} more" if len(tick.unaffected) > LOGGED else ""
        context.log.info(f"unaffected, skipped ({len(tick.unaffected)}): {', '.join(tick.unaffected[:LOGGED])}{more}")
    cursor = json.dumps(tick.cursor)
    if not tick.run_requests:
        context.update_cursor(cursor)
        return dg.SkipReason(tick.skip_reason or "nothing to rerun")
    return dg.SensorResult(run_requests=tick.run_requests, cursor=cursor)
