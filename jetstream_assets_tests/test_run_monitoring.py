"""Run monitoring on a daemon-backed instance: a run whose process is killed with -9 turns FAILURE at the next
monitoring check and frees its experiment's slot for the run queued behind it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import dagster as dg
import pytest

from jetstream_assets.instance import MONITORING_SECONDS, prepare_instance, worker_pid
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.reruns import EXPERIMENT_TAG, run_tags
from jetstream_assets.windows import rerun_dates
from jetstream_assets_tests.daemons import env_for, launch, running_daemon, wait_for
from jetstream_assets_tests.worlds import TODAY, build_world

LOCATION = "jetstream_assets_tests.location_without_sensors"
SLUG = "demo-complete"
INTERVAL = 2  # seconds between monitoring checks (JETSTREAM_RUN_MONITORING_SECONDS)
STARTED = dg.DagsterRunStatus.STARTED


@pytest.mark.slow
def test_killed_run_fails_at_the_next_monitoring_check_and_the_next_queued_run_starts(tmp_path, monkeypatch):
    monkeypatch.setenv(MONITORING_SECONDS, str(INTERVAL))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored afterwards; prepare_instance points it home
    with build_world(tmp_path / "home", clients=500) as world:
        record = next(e for e in world.experiments if e["slug"] == SLUG)
        dates = rerun_dates(dt.date.fromisoformat(record["startDate"]), dt.date.fromisoformat(record["endDate"]),
                            TODAY)
        instance = prepare_instance(world.home)
        assert instance.run_monitoring_enabled and instance.run_monitoring_poll_interval_seconds == INTERVAL
        instance.add_dynamic_partitions(EXPERIMENTS.name, [SLUG])
        env = env_for(world.home, world.home / "dagster", JETSTREAM_TODAY=TODAY.isoformat())
        # two reruns of one experiment in the queue
        runs = launch(env, LOCATION, "analysis", *(run_tags(SLUG, dates, full=True, reason=r) for r in ("a", "b")))
        assert {instance.get_run_by_id(r).status for r in runs} == {dg.DagsterRunStatus.QUEUED}
        log = tmp_path / "daemon.log"
        with running_daemon(env, LOCATION, log):
            first = wait_for("a run's process", lambda: next(
                (r for r in runs if instance.get_run_by_id(r).status == STARTED and worker_pid(instance, r)), None),
                timeout=120, log=log)
            second = next(r for r in runs if r != first)
            # one run per experiment: the other waits in the queue while the first works
            assert instance.get_run_by_id(second).status == dg.DagsterRunStatus.QUEUED
            assert instance.get_run_by_id(second).tags[EXPERIMENT_TAG] == SLUG
            pid = worker_pid(instance, first)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_for("the killed run to turn FAILURE",
                     lambda: instance.get_run_by_id(first).status == dg.DagsterRunStatus.FAILURE, timeout=60, log=log)
            print(f"killed run marked FAILURE {time.monotonic() - killed:.1f}s after kill -9 "
                  f"(monitoring every {INTERVAL}s)")
            failure = instance.get_records_for_run(first, of_type=dg.DagsterEventType.RUN_FAILURE).records
            assert f"(pid {pid}) is gone" in failure[0].event_log_entry.message  # the monitoring's verdict
            wait_for("the queued run of the same experiment to start",
                     lambda: instance.get_run_by_id(second).status == STARTED, timeout=90, log=log)


def test_a_run_process_counts_as_alive_only_while_it_runs():
    import subprocess
    import sys

    from jetstream_assets.instance import process_alive

    assert process_alive(os.getpid(), started_by=time.time())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        wait_for("the child to die", lambda: not process_alive(child.pid), timeout=10)  # a zombie is dead
    finally:
        child.kill()
        child.wait()
    # a pid now held by a process that started after the run did is another process (the pid was reused)
    assert not process_alive(os.getpid(), started_by=time.time() - 10**6)
