"""The Experimenter sensor across ticks: partitions, daily runs, reruns on change, outages and garbage."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time

import dagster as dg
import pytest

from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import demo_experiments
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENTS_TAG, RERUN_TAG, run_experiments
from jetstream_assets.sensors.experimenter import evaluate, experimenter_sensor

from .worlds import TODAY

ANALYSABLE = {"demo-complete", "demo-live", "demo-custom", "demo-enrolling"}  # not the rollout


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("JETSTREAM_TODAY", TODAY.isoformat())
    create_config_repo(tmp_path / "metric-hub")
    records = demo_experiments(TODAY)
    file = tmp_path / "experiments.json"
    file.write_text(json.dumps(records))
    resources = {"experimenter": Experimenter(path=str(file)), "metric_hub": MetricHub(path=str(tmp_path / "metric-hub"))}
    with dg.instance_for_test() as instance:
        yield file, records, resources, instance


def tick(instance, resources, cursor):
    """One evaluation; partitions it asks for are added, as the daemon would."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = experimenter_sensor(context)
        cursor_after = context.cursor
    if isinstance(result, dg.SkipReason):
        return [], [], cursor_after, result.skip_message
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    instance.add_dynamic_partitions(EXPERIMENTS.name, added)
    return result.run_requests, added, result.cursor, result.skip_reason


def analysis_runs(requests) -> dict[str, dg.RunRequest]:
    """{experiment: the analysis run request covering it} (a daily batch covers several)."""
    return {slug: r for r in requests if r.job_name == "analysis" for slug in run_experiments(r.tags)}


def date_range(request) -> tuple[dt.date, dt.date]:
    start = request.tags["dagster/asset_partition_range_start"].split("|")[0]
    end = request.tags["dagster/asset_partition_range_end"].split("|")[0]
    return dt.date.fromisoformat(start), dt.date.fromisoformat(end)


def test_first_tick_adds_partitions_and_runs_every_date_then_nothing_until_a_day_completes(setup, monkeypatch):
    file, records, resources, instance = setup
    requests, added, cursor, _ = tick(instance, resources, None)

    assert set(added) == ANALYSABLE
    runs = analysis_runs(requests)
    assert set(runs) == ANALYSABLE
    complete = next(r for r in records if r["slug"] == "demo-complete")
    start, end = date_range(runs["demo-complete"])
    assert start == dt.date.fromisoformat(complete["startDate"])
    assert end == dt.date.fromisoformat(complete["endDate"]) + dt.timedelta(days=1)  # end + 1, not yesterday
    assert date_range(runs["demo-live"])[1] == TODAY - dt.timedelta(days=1)
    assert all(r.tags[RERUN_TAG] == "full" for r in runs.values())
    assert [r.job_name for r in requests].count("experimenter_snapshot") == 1

    # same day again: nothing new, same cursor
    requests, added, cursor2, skip = tick(instance, resources, cursor)
    assert requests == [] and added == [] and "up to date" in skip
    assert json.loads(cursor2) == json.loads(cursor)

    # the next day: one date per live experiment, all in one run; the complete one is done
    monkeypatch.setenv("JETSTREAM_TODAY", (TODAY + dt.timedelta(days=1)).isoformat())
    requests, _, cursor3, _ = tick(instance, resources, cursor2)
    runs = analysis_runs(requests)
    assert set(runs) == {"demo-live", "demo-custom", "demo-enrolling"}
    assert len([r for r in requests if r.job_name == "analysis"]) == 1
    batch = runs["demo-live"]
    assert batch.tags[EXPERIMENTS_TAG] == "demo-live,demo-custom,demo-enrolling"  # the partitions' order
    assert date_range(batch) == (TODAY, TODAY)
    assert RERUN_TAG not in batch.tags and "jetstream/experiment" not in batch.tags
    assert json.loads(cursor3)["experiments"]["demo-live"]["through"] == TODAY.isoformat()


def test_a_changed_analysis_field_reruns_the_experiment_and_says_which(setup):
    file, records, resources, instance = setup
    _, _, cursor, _ = tick(instance, resources, None)
    live = next(r for r in records if r["slug"] == "demo-live")
    live["endDate"] = (TODAY - dt.timedelta(days=2)).isoformat()
    live["branches"][1]["ratio"] = 2
    file.write_text(json.dumps(records))

    requests, _, _, _ = tick(instance, resources, cursor)
    runs = analysis_runs(requests)
    assert set(runs) == {"demo-live"}
    assert runs["demo-live"].tags[RERUN_TAG] == "full"
    assert "end_date" in runs["demo-live"].tags["jetstream/reason"]
    assert "branches" in runs["demo-live"].tags["jetstream/reason"]
    assert date_range(runs["demo-live"]) == (dt.date.fromisoformat(live["startDate"]), TODAY - dt.timedelta(days=1))
    # the snapshot table is refreshed too
    assert any(r.job_name == "experimenter_snapshot" for r in requests)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"experiments": []}), None])
def test_unreadable_or_garbage_experimenter_skips_and_the_next_good_tick_catches_up(setup, monkeypatch, content):
    file, records, resources, instance = setup
    _, _, cursor, _ = tick(instance, resources, None)
    good = file.read_text()
    if content is None:
        file.unlink()
    else:
        file.write_text(content)
    monkeypatch.setenv("JETSTREAM_TODAY", (TODAY + dt.timedelta(days=1)).isoformat())
    requests, _, cursor_down, skip = tick(instance, resources, cursor)
    assert requests == [] and "Experimenter unavailable" in skip
    assert json.loads(cursor_down) == json.loads(cursor)

    file.write_text(good)
    monkeypatch.setenv("JETSTREAM_TODAY", (TODAY + dt.timedelta(days=2)).isoformat())
    runs = analysis_runs(tick(instance, resources, cursor_down)[0])
    assert date_range(runs["demo-live"]) == (TODAY, TODAY + dt.timedelta(days=1))  # both missed days


def test_an_empty_answer_is_an_outage_not_every_experiment_gone(setup):
    file, records, resources, instance = setup
    _, _, cursor, _ = tick(instance, resources, None)
    file.write_text("[]")
    requests, _, cursor2, skip = tick(instance, resources, cursor)
    assert requests == [] and "no experiments" in skip and json.loads(cursor2) == json.loads(cursor)


def test_a_malformed_record_is_skipped_and_the_others_still_run(setup):
    file, records, resources, instance = setup
    broken = dict(records[0], slug="demo-broken", branches="not a list")
    file.write_text(json.dumps([broken, *records]))
    requests, added, _, _ = tick(instance, resources, None)
    assert "demo-broken" not in added and set(analysis_runs(requests)) == ANALYSABLE


def test_a_disappeared_experiment_keeps_its_partition_and_does_not_rerun_when_it_returns(setup, monkeypatch):
    file, records, resources, instance = setup
    _, _, cursor, _ = tick(instance, resources, None)
    file.write_text(json.dumps([r for r in records if r["slug"] != "demo-live"]))
    requests, _, cursor2, _ = tick(instance, resources, cursor)
    assert "demo-live" not in analysis_runs(requests)
    assert instance.has_dynamic_partition(EXPERIMENTS.name, "demo-live")
    assert "demo-live" in json.loads(cursor2)["experiments"]
    file.write_text(json.dumps(records))
    monkeypatch.setenv("JETSTREAM_TODAY", (TODAY + dt.timedelta(days=1)).isoformat())
    runs = analysis_runs(tick(instance, resources, cursor2)[0])
    assert date_range(runs["demo-live"]) == (TODAY, TODAY) and RERUN_TAG not in runs["demo-live"].tags


def test_work_already_in_the_instance_is_not_redone(setup):
    """A sensor started on a home the demo or the CLI filled carries on from the last materialized date."""
    file, records, resources, instance = setup
    live = next(r for r in records if r["slug"] == "demo-live")
    done = {"demo-live": TODAY - dt.timedelta(days=3)}
    result = evaluate(None, resources["experimenter"], resources["metric_hub"], TODAY, {"demo-live"}, done)
    runs = analysis_runs(result.run_requests)
    assert date_range(runs["demo-live"]) == (TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1))
    assert RERUN_TAG not in runs["demo-live"].tags
    assert runs["demo-complete"].tags[RERUN_TAG] == "full"  # never analysed: everything
    assert live["slug"] not in result.new_partitions


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "slow"

    def do_GET(self):  # noqa: N802
        if self.mode == "slow":
            time.sleep(1.0)
        self.send_response(502 if self.mode == "error" else 200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>proxy error</html>")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("mode", ["slow", "error", "html"])
def test_a_slow_or_failing_experimenter_api_is_a_skip_with_a_reason(setup, mode):
    _, _, resources, instance = setup
    _Handler.mode = mode
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = Experimenter(url=f"http://127.0.0.1:{server.server_port}", timeout_seconds=0.2, retries=1,
                           retry_backoff_seconds=0.01)
        requests, added, cursor, skip = tick(instance, dict(resources, experimenter=api), None)
    finally:
        server.shutdown()
    assert requests == [] and added == []
    assert "Experimenter unavailable" in skip and f"127.0.0.1:{server.server_port}" in skip
