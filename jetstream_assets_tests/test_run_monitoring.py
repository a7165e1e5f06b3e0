"""Run monitoring on a daemon-backed instance: a run whose process is killed with -9 turns FAILURE at the next
monitoring check and frees its experiment's slot for the run queued behind it. (A run the daemon launched
is also failed by its code server when the process dies; a CLI run has only the monitoring.)"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time

import dagster as dg
import pytest

from jetstream_assets.instance import MONITORING_SECONDS, prepare_instance, worker_pid
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENT_TAG, run_tags
from jetstream_assets_tests.daemons import BIN, env_for, launch, running_daemon, wait_for
from jetstream_assets_tests.worlds import TODAY, build_world

LOCATION = "jetstream_assets_tests.location_without_sensors"
SLUG = "demo-complete"
INTERVAL = 2  # seconds between monitoring checks (JETSTREAM_RUN_MONITORING_SECONDS)
STARTED = dg.DagsterRunStatus.STARTED


@pytest.mark.slow
def test_a_killed_run_turns_failure_at_the_next_monitoring_check_and_frees_its_experiment(tmp_path, monkeypatch):
    """The run is a CLI run (executed in the CLI's process, no code server watching it), so only the run
    monitoring can notice its death; the daemon starts after the kill so that the order is certain."""
    monkeypatch.setenv(MONITORING_SECONDS, str(INTERVAL))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored afterwards; prepare_instance points it home
    with build_world(tmp_path / "home", clients=500) as world:
        instance = prepare_instance(world.home)
        assert instance.run_monitoring_enabled and instance.run_monitoring_poll_interval_seconds == INTERVAL
        instance.add_dynamic_partitions(EXPERIMENTS.name, [SLUG])
        env = env_for(world.home, world.home / "dagster", JETSTREAM_TODAY=TODAY.isoformat())
        [queued] = launch(env, LOCATION, "analysis", run_tags(SLUG, [TODAY - dt.timedelta(days=1)]))
        assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.QUEUED  # no daemon yet
        with open(tmp_path / "cli.log", "w") as out:
            cli = subprocess.Popen([str(BIN / "jetstream-assets"), "run", "--experiment", SLUG, "--all-dates",
                                    "--home", str(world.home)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            killed = wait_for("the CLI's run to start", lambda: next(
                (r for r in instance.get_runs(dg.RunsFilter(tags={EXPERIMENT_TAG: SLUG}, statuses=[STARTED]))
                 if worker_pid(instance, r.run_id) == cli.pid), None), timeout=180, log=tmp_path / "cli.log")
            os.kill(cli.pid, signal.SIGKILL)  # mid-run: its cells have only begun
        finally:
            cli.kill()
            cli.wait()
        assert instance.get_run_by_id(killed.run_id).status == STARTED  # nothing else notices the death
        log = tmp_path / "daemon.log"
        with running_daemon(env, LOCATION, log):
            started = time.monotonic()
            wait_for("the killed run to turn FAILURE", lambda: instance.get_run_by_id(killed.run_id).status
                     == dg.DagsterRunStatus.FAILURE, timeout=120, log=log)
            print(f"killed run FAILURE {time.monotonic() - started:.1f}s after the daemon started "
                  f"(monitoring every {INTERVAL}s)")
            failure = instance.get_records_for_run(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
            assert f"(pid {cli.pid}) is gone" in failure[0].event_log_entry.message  # the monitoring's verdict
            wait_for("the queued run of the same experiment to start",
                     lambda: instance.get_run_record_by_id(queued).start_time, timeout=120, log=log)
        # it waited for the killed run's slot: one run per experiment, the CLI's runs included
        assert instance.get_run_record_by_id(queued).start_time >= instance.get_run_record_by_id(killed.run_id).end_time


def test_a_run_process_counts_as_alive_only_while_it_runs():
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
