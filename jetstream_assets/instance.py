"""The Dagster instance every launch path shares: its `dagster.yaml` (a run queue with one run per experiment
at a time, run monitoring), the run launcher that tells the monitoring when a run's process is gone, and the
queue's rule applied to runs the CLI executes itself.

A run reaches the instance in one of two ways. The UI, sensors and backfills submit it to the queue; the daemon
dequeues it when the queue's limits allow and launches it in a process of its own. The CLI and the demo execute
it in their own process (no daemon needed), after waiting until the same limits allow it (`wait_for_turn`).
Either way the run carries the same tags (`run_tags.run_tags`), so the limits count it, and run monitoring fails
a run whose process died (a `kill -9`, a crash, a lost machine) so that it frees its experiment's slot.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._utils.tags import TagConcurrencyLimitsCounter

from jetstream_assets.run_tags import EXPERIMENT_TAG, EXPERIMENTS_TAG, run_experiments
from jetstream_assets.sqlite_storage import create_instance_storage, remember_dagster_migrations

HEADER = "# Written by jetstream-assets"
HOST_TAG = "jetstream/host"  # the machine of a run the CLI executes in its own process
MONITORING_SECONDS = "JETSTREAM_RUN_MONITORING_SECONDS"  # how often the daemon checks runs (default 15)
MAX_CONCURRENT_RUNS = 2  # 2 cores
# The queue: Dagster's, which first tags runs launched from the UI or by a backfill with EXPERIMENT_TAG
# (ExperimentRunCoordinator), with the limits below.
RUN_COORDINATOR = ("jetstream_assets.run_tags", "ExperimentRunCoordinator")
# A run the CLI has created but not started yet; older claims go first (two CLIs started at once).
CLAIM_SECONDS = 60


def own_instance(home: Path) -> dg.DagsterInstance | None:
    """The instance $DAGSTER_HOME names when its dagster.yaml is one of your own (a production instance, not
    one jetstream-assets wrote), else None."""
    configured = os.environ.get("DAGSTER_HOME")
    config = Path(configured) / "dagster.yaml" if configured else None
    if config is None or not config.is_file() or config.read_text().startswith(HEADER):
        return None
    os.environ["JETSTREAM_HOME"] = str(home)
    return dg.DagsterInstance.from_config(configured)


def dagster_yaml(monitoring_seconds: int | None = None, dagster_home: Path | None = None) -> str:
    """The instance configuration jetstream-assets writes: the queue's one-run-per-experiment rule keyed by the
    one tag every launch path sets, and run monitoring every `monitoring_seconds`. With `dagster_home`, its
    event log is Dagster's sqlite one with connections kept open (`event_log.PooledSqliteEventLogStorage`,
    in the default place)."""
    seconds = monitoring_seconds or int(os.environ.get(MONITORING_SECONDS) or 15)
    event_log = "" if dagster_home is None else f"""\
event_log_storage:  # Dagster's sqlite event log in its default place, its connections kept open between events
  module: jetstream_assets.event_log
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {json.dumps(str(Path(dagster_home).absolute() / 'history' / 'runs'))}
"""
    return f"""\
{HEADER}: a persistent local instance for the demo, the CLI and the UI.
# It is rewritten while this header is here; delete the header to keep your own changes.
run_coordinator:
  module: {RUN_COORDINATOR[0]}
  class: {RUN_COORDINATOR[1]}
  config:
    max_concurrent_runs: {MAX_CONCURRENT_RUNS}   # 2 cores
    dequeue_interval_seconds: {max(1, min(5, seconds))}
    tag_concurrency_limits:  # one run per experiment at a time: a rerun never races a daily run
      - key: "{EXPERIMENT_TAG}"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_launcher:  # runs in a process of their own; the monitoring notices when that process is gone
  module: jetstream_assets.instance
  class: LocalRunLauncher
run_monitoring:  # a killed run turns FAILURE within {seconds} s and frees its experiment's slot
  enabled: true
  poll_interval_seconds: {seconds}
  start_timeout_seconds: {max(180, 4 * seconds)}
  cancel_timeout_seconds: {max(180, 4 * seconds)}
  max_resume_run_attempts: 0
  max_runtime_seconds: 21600   # a run stuck for 6 hours is failed
  free_slots_after_run_end_seconds: {seconds}   # experiment locks of a run that ended without freeing them
telemetry:
  enabled: false
{event_log}"""


def prepare_instance(home: Path) -> dg.DagsterInstance:
    """The persistent Dagster instance under <home>/dagster. Its dagster.yaml is (re)written while it carries
    our header, so an older home gets the current queue and monitoring settings."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    wanted = dagster_yaml(dagster_home=dagster_home)
    if not config.exists() or (config.read_text().startswith(HEADER) and config.read_text() != wanted):
        config.write_text(wanted)
    if config.read_text() == wanted:  # our SQLite storage: a new instance's databases made in one go
        create_instance_storage(dagster_home)
        remember_dagster_migrations()  # opening it checks each database's schema revision
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["JETSTREAM_HOME"] = str(home)
    return dg.DagsterInstance.get()


# --- the run's process ------------------------------------------------------------------------------------


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The process that executes the run: the first engine event naming a pid (a launched run's worker
    reports it when it starts; an in-process run when its steps start)."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None:
            return int(pid.value)
    return None


def _process_start_time(pid: int) -> float | None:
    """Unix time a process started (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def process_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether `pid` still runs (a zombie, killed but not yet reaped, does not); with `started_by`, a process
    that started later is another one that reused the pid."""
    if Path("/proc/self/stat").exists():  # Linux: the process's state and start time
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        began = _process_start_time(pid)
        return started_by is None or began is None or began <= started_by + 2
    try:  # elsewhere: whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_gone(instance: dg.DagsterInstance, run: DagsterRun) -> str | None:
    """Why a STARTED run has no live process on this machine, or None when it may still be working."""
    host = run.tags.get(HOST_TAG)
    if host is not None and host != socket.gethostname():
        return None  # another machine's process: its own CLI or the run timeout decides
    pid = worker_pid(instance, run.run_id)
    if pid is None:
        return None  # not started yet: the start timeout covers it
    record = instance.get_run_record_by_id(run.run_id)
    started = record.start_time if record is not None else None
    if process_alive(pid, started):
        return None
    return f"the process of run {run.run_id} (pid {pid}) is gone: it was killed or crashed"


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (a process per run, started by the code server on this machine) that also
    answers the run monitoring's health check: a run whose process is gone is failed, freeing its slot."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        reason = worker_gone(self._instance, run)
        if reason is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, reason)


# --- the queue's rule for runs executed in the caller's process --------------------------------------------


def queue_limits(instance: dg.DagsterInstance) -> tuple[int | None, Sequence[Mapping]]:
    """(max concurrent runs, tag concurrency limits) of the instance's run queue; (None, []) without a queue."""
    get_config = getattr(instance.run_coordinator, "get_run_queue_config", None)
    if get_config is None:
        return None, []
    config = get_config()
    limit = config.max_concurrent_runs
    return (None if limit is None or limit < 0 else limit), list(config.tag_concurrency_limits or [])


def blocking_runs(instance: dg.DagsterInstance, tags: Mapping[str, str], run_id: str | None = None) -> list[DagsterRun]:
    """The runs that must end (or start) before a run with `tags` may start under the queue's rule: active
    runs, and other callers' claims made just before ours (`run_id`)."""
    max_runs, tag_limits = queue_limits(instance)
    if max_runs is None and not tag_limits:
        return []
    active = [r for r in instance.get_runs(RunsFilter(statuses=ACTIVE_RUN_STATUSES)) if r.run_id != run_id]
    mine = instance.get_run_record_by_id(run_id) if run_id else None
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.NOT_STARTED])):
        fresh = record.create_timestamp.timestamp() > time.time() - CLAIM_SECONDS
        older = mine is None or record.storage_id < mine.storage_id
        if fresh and older and record.dagster_run.run_id != run_id and HOST_TAG in record.dagster_run.tags:
            active.append(record.dagster_run)
    if max_runs is not None and len(active) >= max_runs:
        return active
    # a daily batch carries no jetstream/experiment value: it lists its experiments (locks.py makes the run
    # wait for it anyway; waiting here tells the caller which run it waits for)
    mine_experiments = run_experiments(tags)
    batches = [r for r in active if EXPERIMENTS_TAG in r.tags and run_experiments(r.tags) & mine_experiments]
    if batches:
        return batches
    counter = TagConcurrencyLimitsCounter(list(tag_limits), active)
    probe = DagsterRun(job_name="probe", run_id="probe", tags=dict(tags))
    if not counter.is_blocked(probe):
        return []
    keys = {limit["key"] for limit in tag_limits}
    return [r for r in active if any(r.tags.get(k) is not None and r.tags.get(k) == tags.get(k) for k in keys)]


def fail_dead_runs(instance: dg.DagsterInstance, runs: Sequence[DagsterRun]) -> list[DagsterRun]:
    """Fail the STARTED runs this machine's CLI executed whose process is gone (what the daemon's monitoring
    does, for a home without a daemon); returns the runs still alive."""
    alive = []
    for run in runs:
        reason = worker_gone(instance, run) if run.tags.get(HOST_TAG) == socket.gethostname() else None
        if run.status == DagsterRunStatus.STARTED and reason is not None:
            instance.report_run_failed(run, f"Run failed: {reason}.")
        else:
            alive.append(run)
    return alive


def wait_for_turn(
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    on_wait: Callable[[list[DagsterRun]], None] | None = None,
    poll_seconds: float = 2.0,
    run_id: str | None = None,
) -> None:
    """Block until the queue's rule lets a run with `tags` start, telling `on_wait` which runs it waits for."""
    told: set[str] = set()
    while True:
        blocking = fail_dead_runs(instance, blocking_runs(instance, tags, run_id))
        if not blocking:
            return
        ids = {r.run_id for r in blocking}
        if on_wait is not None and ids != told:
            on_wait(blocking)
        told = ids
        time.sleep(poll_seconds)


def host_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname()}

