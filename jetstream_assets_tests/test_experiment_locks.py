"""One run per experiment at a time, now that a daily batch covers many: each direction of the guarantee.

The runs here execute for real (in a thread, as the CLI executes a run in its process) on dates where every
cell is a quick no-op, so the test is about who waits for whom, not about the analysis."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import dagster as dg
import pytest
import yaml
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from jetstream_assets import locks
from jetstream_assets.definitions import build_definitions
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import write_experimenter_file
from jetstream_assets.instance import blocking_runs, dagster_yaml
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.resources import experimenter_file, metric_hub_dir
from jetstream_assets.run_tags import batch_tags, run_tags

from .worlds import TODAY

DAY = dt.date(2026, 10, 26)  # before either experiment's enrollment ends: no-op cells
BATCH = ["demo-live", "demo-custom"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("JETSTREAM_TODAY", TODAY.isoformat())
    monkeypatch.setenv("JETSTREAM_HOME", str(tmp_path))
    write_experimenter_file(experimenter_file(tmp_path), TODAY)
    create_config_repo(metric_hub_dir(tmp_path))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(EXPERIMENTS.name, ["demo-complete", *BATCH])
        yield tmp_path, instance


def started_run(instance, tags) -> DagsterRun:
    """A run in progress elsewhere (the daemon's run worker), holding its experiments."""
    run = DagsterRun(job_name="analysis", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED, tags=tags)
    instance.add_run(run)
    return run


def execute_in_thread(home, instance, tags) -> tuple[threading.Thread, dict]:
    out: dict = {}
    job = build_definitions(home).resolve_job_def("analysis")

    def target():
        out["result"] = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def waiting_run(instance, slug: str, holder: str, timeout: float = 120) -> str:
    """The run queued behind `holder` for the experiment's lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = instance.event_log_storage.get_concurrency_info(locks.pool(slug)).pending_steps
        waiting = [p.run_id for p in pending if p.run_id != holder and p.assigned_timestamp is None]
        if waiting:
            return waiting[0]
        time.sleep(0.2)
    raise AssertionError(f"no run waited for {slug}")


def materialized(instance, run_id: str) -> int:
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records)


def test_a_batch_waits_for_a_rerun_of_one_of_its_experiments(home):
    path, instance = home
    rerun = started_run(instance, run_tags("demo-custom", [DAY], full=True, reason="config changed"))
    locks.hold(instance, rerun.run_id, ["demo-custom"])

    thread, out = execute_in_thread(path, instance, batch_tags(BATCH, [DAY], reason="daily"))
    batch = waiting_run(instance, "demo-custom", rerun.run_id)
    time.sleep(1.5)
    assert materialized(instance, batch) == 0  # nothing computed while the rerun works
    messages = [r.event_log_entry.user_message for r in instance.get_records_for_run(batch).records]
    assert any(f"Waiting for run(s) {rerun.run_id}" in m for m in messages)

    instance.report_run_failed(rerun)  # it ends without freeing its lock (killed): the batch frees it
    thread.join(180)
    assert out["result"].success
    keys = {e.partition for e in out["result"].get_asset_materialization_events()}
    assert keys == {f"{DAY}|{s}" for s in BATCH}
    for slug in BATCH:  # the batch's last step let go of its experiments
        assert instance.event_log_storage.get_concurrency_info(locks.pool(slug)).claimed_slots == []


def test_a_run_of_one_experiment_waits_for_the_batch_that_holds_it(home):
    path, instance = home
    batch = started_run(instance, batch_tags(BATCH, [DAY], reason="daily"))
    locks.hold(instance, batch.run_id, BATCH)

    thread, out = execute_in_thread(path, instance, run_tags("demo-live", [DAY], reason="launched by hand"))
    single = waiting_run(instance, "demo-live", batch.run_id)
    time.sleep(1.5)
    assert materialized(instance, single) == 0

    locks.release(instance, batch.run_id)
    thread.join(180)
    assert out["result"].success and materialized(instance, single) > 0


def test_the_cli_waits_before_starting_while_a_batch_holds_its_experiment():
    """`jetstream-assets run` checks the queue's rule before it starts its run: a batch over the experiment
    blocks it (and the CLI says which run it waits for), a batch over others does not."""
    queue = yaml.safe_load(dagster_yaml())["run_coordinator"]
    with dg.instance_for_test(overrides={"run_coordinator": queue}) as instance:
        batch = started_run(instance, batch_tags(BATCH, [DAY], reason="daily"))
        assert [r.run_id for r in blocking_runs(instance, run_tags("demo-live", [DAY]))] == [batch.run_id]
        assert blocking_runs(instance, run_tags("demo-complete", [DAY])) == []
