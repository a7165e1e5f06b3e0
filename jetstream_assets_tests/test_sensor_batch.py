"""The Experimenter sensor's daily batch: one run per due dates for every experiment due alike, quiet no-op
experiments between them carried along, and the ones that must run apart (busy, failing, new) kept apart."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENT_TAG, EXPERIMENTS_TAG, batch_tags, run_experiments
from jetstream_assets.sensors.experimenter import batch_segments, evaluate, experimenter_sensor

from .test_sensor_experimenter import setup  # noqa: F401 - the fixture
from .worlds import TODAY

YESTERDAY = TODAY - dt.timedelta(days=1)
# demo-complete (ended) sits between the live ones in the experiment dimension
ORDER = ["demo-live", "demo-complete", "demo-custom", "demo-enrolling"]
LIVE = ["demo-live", "demo-custom", "demo-enrolling"]


@pytest.fixture
def world(setup):
    """The Experimenter file, its records, the Experimenter and metric-hub resources, an instance."""
    file, records, resources, instance = setup
    return file, records, resources["experimenter"], resources["metric_hub"], instance


def done_day_before(records) -> dict[str, dt.date]:
    """Every experiment analysed through the day before yesterday (the complete one through its end)."""
    done = {slug: YESTERDAY - dt.timedelta(days=1) for slug in LIVE}
    complete = next(r for r in records if r["slug"] == "demo-complete")
    done["demo-complete"] = dt.date.fromisoformat(complete["endDate"]) + dt.timedelta(days=1)
    return done


def analysis(tick) -> list[dg.RunRequest]:
    return [r for r in tick.run_requests if r.job_name == "analysis"]


def cells(request) -> tuple[str, str]:
    return request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]


def test_a_day_of_every_live_experiment_is_one_run_with_the_quiet_one_between_as_a_noop(world):
    file, records, experimenter, metric_hub, _ = world
    tick = evaluate(None, experimenter, metric_hub, TODAY, ORDER, done_day_before(records))
    (batch,) = analysis(tick)
    # the ended experiment between two live ones has nothing to do that day: it comes along as a no-op
    assert batch.tags[EXPERIMENTS_TAG].split(",") == ORDER
    assert cells(batch) == (f"{YESTERDAY}|demo-live", f"{YESTERDAY}|demo-enrolling")
    assert EXPERIMENT_TAG not in batch.tags
    assert "3 experiment(s) in one run" in batch.tags["jetstream/reason"] and "1 more" in batch.tags["jetstream/reason"]
    assert all(tick.cursor["experiments"][s]["through"] == YESTERDAY.isoformat() for s in LIVE)


def test_a_busy_experiment_is_left_for_the_next_tick_and_splits_the_batch(world):
    file, records, experimenter, metric_hub, _ = world
    tick = evaluate(None, experimenter, metric_hub, TODAY, ORDER, done_day_before(records), busy={"demo-custom"})
    runs = analysis(tick)
    assert sorted(r.tags[EXPERIMENTS_TAG] for r in runs) == ["demo-enrolling", "demo-live"]
    assert "demo-custom" not in tick.cursor["experiments"]  # nothing recorded: the next tick asks again
    assert any("demo-custom" in n and "next tick" in n for n in tick.notes)

    later = evaluate(json.dumps(tick.cursor), experimenter, metric_hub, TODAY, ORDER, done_day_before(records))
    (run,) = analysis(later)
    assert run.tags[EXPERIMENTS_TAG] == "demo-custom" and cells(run)[0] == f"{YESTERDAY}|demo-custom"


def test_an_experiment_known_to_fail_runs_alone(world):
    file, records, experimenter, metric_hub, _ = world
    live = next(r for r in records if r["slug"] == "demo-live")
    live["appName"] = "no_such_app"  # its plan is an error on every date
    file.write_text(json.dumps(records))
    tick = evaluate(None, experimenter, metric_hub, TODAY, ORDER, done_day_before(records))
    runs = {frozenset(run_experiments(r.tags)): r for r in analysis(tick)}
    alone = runs[frozenset({"demo-live"})]
    assert alone.tags[EXPERIMENT_TAG] == "demo-live" and "unsupported_app" in alone.tags["jetstream/reason"]
    assert frozenset({"demo-custom", "demo-enrolling"}) in runs


def test_segments_break_at_anything_that_is_neither_due_nor_quiet():
    order = ["a", "q1", "b", "x", "c", "q2", "q3", "d", "q4"]
    members = {"a", "b", "c", "d"}
    asked = []

    def quiet(slug):
        asked.append(slug)
        return slug.startswith("q")

    assert batch_segments(order, members, quiet) == [["a", "q1", "b"], ["c", "q2", "q3", "d"]]
    assert "q4" not in asked  # nothing is planned after the last due experiment


def test_the_sensor_leaves_out_experiments_of_a_run_in_progress(world):
    """Through the sensor itself: a run of demo-custom in progress keeps it out of this tick's runs."""
    file, records, experimenter, metric_hub, instance = world
    resources = {"experimenter": experimenter, "metric_hub": metric_hub}
    instance.add_dynamic_partitions(EXPERIMENTS.name, ORDER)
    cursor = evaluate(None, experimenter, metric_hub, TODAY - dt.timedelta(days=1), ORDER,
                      done_day_before(records)).cursor  # the state of the day before
    running = DagsterRun(job_name="analysis", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                         tags=batch_tags(["demo-custom"], [YESTERDAY], reason="a rerun"))
    instance.add_run(running)
    with dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor), resources=resources) as context:
        result = experimenter_sensor(context)
    requested = {s for r in result.run_requests if r.job_name == "analysis" for s in run_experiments(r.tags)}
    assert "demo-custom" not in requested and {"demo-live", "demo-enrolling"} <= requested

    instance.report_run_failed(running)  # once it is over, the next tick catches demo-custom up
    with dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=resources) as context:
        result = experimenter_sensor(context)
    requested = {s for r in result.run_requests if r.job_name == "analysis" for s in run_experiments(r.tags)}
    assert requested == {"demo-custom"}
