"""Telemetry aggregates as assets: probe buckets, the synthetic main pings, the aggregation checked against
an independent computation from the pings, and the daily-partitioned assets (backfill over a range in one
run, reruns that give the same tables, dates without pings, readers that never fail while runs write)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import dagster as dg
import pandas as pd
import pytest

from jetstream_assets.aggregates.compute import (
    AGGREGATES_DATASET,
    KEY_COLUMNS,
    AggregatesError,
    aggregate_day,
    parse_table_name,
    table_name,
)
from jetstream_assets.aggregates.probes import (
    ProbeError,
    ProbeRegistry,
    enumerated_buckets,
    exponential_buckets,
    linear_buckets,
    registry_paths,
)
from jetstream_assets.aggregates.store import AggregateStore, MetricQuery
from jetstream_assets.assets.aggregates import (
    AGGREGATE_ASSETS,
    AGGREGATES_PARTITIONS,
    aggregates_job,
    materialize_aggregates,
    telemetry_aggregates,
)
from jetstream_assets.demo.pings import CHANNELS, PROBES_FILE, channel_version, documents
from jetstream_assets.warehouse.local import LocalWarehouse
from jetstream_assets_tests.test_aggregates_helpers import FIRST_DAY, REGISTRY, build_world, reference

# Firefox's GC_MS (exponential, 1..10000, 50 buckets) bucket lower bounds
GC_MS_BUCKETS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 24, 29, 34, 40, 48, 57, 68, 81, 96, 114, 135, 160,
                 190, 226, 268, 318, 378, 449, 533, 633, 752, 894, 1062, 1262, 1500, 1782, 2117, 2516, 2990, 3553,
                 4222, 5017, 5961, 7083, 8416, 10000]


def test_bucket_layouts():
    assert exponential_buckets(1, 10_000, 50) == GC_MS_BUCKETS
    assert list(REGISTRY.layout("GC_MS").buckets) == GC_MS_BUCKETS
    linear = linear_buckets(1, 100, 51)
    assert linear[:2] == [0, 1] and linear[-1] == 100 and len(linear) == 51
    assert all(b > a for a, b in zip(linear, linear[1:]))
    assert enumerated_buckets(4) == [0, 1, 2, 3, 4]
    assert list(REGISTRY.layout("CANVAS_WEBGL_SUCCESS").buckets) == [0, 1, 2]
    counted = REGISTRY.layout("[[COUNT]]_URLCLASSIFIER_UPDATE_ERROR")
    assert counted.value_bucketed and counted.buckets[:3] == (0, 1, 2)
    gc = REGISTRY.layout("GC_MS")
    assert gc.positions([-5, 0, 9, 10, 11, 10_000, 99_999]).tolist() == [0, 0, 8, 9, 9, 49, 49]
    for bad in (lambda: exponential_buckets(0, 10, 5), lambda: linear_buckets(5, 5, 10), lambda: enumerated_buckets(0)):
        with pytest.raises(ValueError):
            bad()


def test_a_homes_registry_is_its_probes_folder_or_the_environments_files(tmp_path, monkeypatch):
    monkeypatch.delenv("JETSTREAM_PROBES", raising=False)
    assert len(ProbeRegistry.for_home(tmp_path)) == 0  # the product has no probes of its own
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "probes.json").write_text(PROBES_FILE.read_text())
    assert registry_paths(tmp_path) == [tmp_path / "probes" / "probes.json"]
    assert ProbeRegistry.for_home(tmp_path).layout("GC_MS") is not None
    monkeypatch.setenv("JETSTREAM_PROBES", f"{PROBES_FILE}:{PROBES_FILE}")
    assert registry_paths(tmp_path / "elsewhere") == [PROBES_FILE, PROBES_FILE]


def test_the_registry_reads_probe_scraper_histograms_json_and_scalars_yaml(tmp_path):
    histograms = tmp_path / "Histograms.json"
    histograms.write_text(json.dumps({
        "GC_MS": {"kind": "exponential", "high": 10000, "n_buckets": 50, "description": "GC time"},
        "CHOICE": {"kind": "categorical", "labels": ["a", "b"], "n_values": 3, "description": ["two", "lines"]},
        "FLAGGED": {"kind": "flag", "description": "a flag", "low": None, "labels": None},
        "LABELS": {"kind": "categorical", "labels": ["x", "y"]},
    }))
    scalars = tmp_path / "Scalars.yaml"
    scalars.write_text("browser.engagement:\n  total_uri_count:\n    kind: uint\n    description: URIs loaded\n")
    registry = ProbeRegistry.load([PROBES_FILE, histograms, scalars])
    assert list(registry.layout("GC_MS").buckets) == GC_MS_BUCKETS
    assert registry.description("GC_MS") == "GC time"  # the later file wins
    assert registry.layout("CHOICE").buckets == ("a", "b", "2", "3")
    assert registry.description("CHOICE") == "two lines"
    assert registry.layout("FLAGGED").kind == "flag"
    assert len(registry.layout("LABELS").buckets) == 51  # Firefox's default of 50 values
    assert registry.description("SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT") == "URIs loaded"
    assert registry.description("SCALARS_NOT.DEFINED") == "Scalar not.defined (no definition in the probe registry)"
    assert registry.description("SIMPLE_MEASURES_UPTIME") == ""
    bad = tmp_path / "bad.json"
    for text, message in (("{nope", "Cannot read"), ('{"X": {"kind": "exponential", "low": 5, "high": 1}}', "X")):
        bad.write_text(text)
        with pytest.raises(ProbeError, match=message):
            ProbeRegistry.load([bad])


def test_demo_pings_cover_every_dimension_and_kind():
    day = dt.date(2026, 10, 20)
    pings = list(documents(day, 1_500, seed=3))
    assert pings == list(documents(day, 1_500, seed=3))
    assert pings != list(documents(day, 1_500, seed=4))
    apps = [p["application"] for p in pings]
    assert {a["channel"] for a in apps} == set(CHANNELS)
    assert {a["name"] for a in apps} == {"Firefox", "Fennec"}
    systems = [p["environment"]["system"]["os"]["name"] for p in pings]
    assert {s for s, a in zip(systems, apps) if a["name"] == "Fennec"} == {"Android"}
    assert {s for s, p in zip(systems, pings) if "gpu" in p["payload"]["processes"]} == {"Windows_NT"}
    for app in apps:
        built = dt.datetime.strptime(app["buildId"][:8], "%Y%m%d").date()
        assert built <= day and int(app["version"].split(".")[0]) == channel_version(app["channel"], built)
    sections = [s for p in pings for s in (p["payload"], *p["payload"]["processes"].values())]
    kinds = {h["histogram_type"] for s in sections for h in s.get("histograms", {}).values()}
    assert kinds == {0, 1, 2, 4}
    assert any(p["payload"]["processes"]["parent"].get("keyedScalars") for p in pings)
    assert any(p["payload"]["keyedHistograms"] for p in pings)
    with pytest.raises(ValueError, match="pings per day"):
        list(documents(day, 0))
    with pytest.raises(AggregatesError, match="family"):
        table_name("by_os", dt.date(2026, 10, 1))
    assert parse_table_name("build_id_20261001") == ("build_id", "20261001")
    assert parse_table_name("statistics_build_id_20261001") is None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("aggregates_pipeline"), days=3, pings_per_day=300, aggregate=False)


def test_aggregation_matches_an_independent_computation(world):
    day = world.days[1]
    result = aggregate_day(world.warehouse, day, REGISTRY)
    pings = [p for p in world.pings if p["meta"]["submissionDate"] == day.strftime("%Y%m%d")]
    assert not result.unknown_metrics and not result.rejected
    for family in ("submission_date", "build_id"):
        frame = result.frames[family]
        got = {tuple(row[c] for c in KEY_COLUMNS): [row["count"], row["sum"], list(row["histogram"])]
               for row in frame.to_dict("records")}
        assert len(got) == len(frame)  # one row per key
        assert got == reference(pings, family)
        assert (frame["buckets"].map(lambda b: len(json.loads(b))) == frame["histogram"].map(len)).all()
    sub = result.frames["submission_date"]
    assert set(sub["date"]) == {day.strftime("%Y%m%d")}
    assert sub["count"].sum() == result.frames["build_id"]["count"].sum() == result.entries


PROBES_CONFIG = {"ops": {"telemetry_aggregates": {"config": {"probe_files": [str(PROBES_FILE)]}}}}


def _tables(warehouse):
    return {t: warehouse.read_table(t, dataset=AGGREGATES_DATASET).sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
            for t in warehouse.list_tables(dataset=AGGREGATES_DATASET)}


def test_backfill_rerun_and_dates_without_pings(world):
    instance = dg.DagsterInstance.ephemeral()
    first = materialize_aggregates(world.days, world.warehouse, instance=instance, probe_files=[PROBES_FILE])
    assert first.success
    stamps = [d.strftime("%Y%m%d") for d in world.days]
    assert sorted(world.warehouse.list_tables(dataset=AGGREGATES_DATASET)) == sorted(
        [f"build_id_{s}" for s in stamps] + [f"submission_date_{s}" for s in stamps])
    materializations = first.asset_materializations_for_node("telemetry_aggregates")
    assert {(m.asset_key.to_user_string(), m.partition) for m in materializations} == {
        (a, d.isoformat()) for a in ("aggregates_by_submission_date", "aggregates_by_build_id") for d in world.days}
    assert len(instance.get_run_records()) == 1  # the range is one run
    before = _tables(world.warehouse)
    untouched = world.warehouse.table_path(f"build_id_{stamps[0]}", AGGREGATES_DATASET).stat().st_mtime_ns

    rerun = dg.materialize([telemetry_aggregates], partition_key=world.days[1].isoformat(),
                           resources={"warehouse": world.warehouse}, instance=instance, run_config=PROBES_CONFIG)
    assert rerun.success
    after = _tables(world.warehouse)
    assert before.keys() == after.keys()
    for table in before:
        pd.testing.assert_frame_equal(before[table], after[table])
    assert world.warehouse.table_path(f"build_id_{stamps[0]}", AGGREGATES_DATASET).stat().st_mtime_ns == untouched

    # a date without pings: no tables (and none left from earlier runs), said in the metadata
    empty = world.days[-1] + dt.timedelta(days=1)
    world.warehouse.write_dataframe(before[f"build_id_{stamps[0]}"].head(3), table_name("build_id", empty),
                                    dataset=AGGREGATES_DATASET)
    result = dg.materialize([telemetry_aggregates], partition_key=empty.isoformat(),
                            resources={"warehouse": world.warehouse}, instance=instance, run_config=PROBES_CONFIG)
    assert not world.warehouse.table_exists(table_name("build_id", empty), AGGREGATES_DATASET)
    metadata = result.asset_materializations_for_node("telemetry_aggregates")[0].metadata
    assert metadata["dates_without_pings"].value == [empty.isoformat()]
    assert metadata["dagster/row_count"].value == 0


def test_a_missing_ping_table_fails_with_a_clear_message(tmp_path):
    warehouse = LocalWarehouse(root=str(tmp_path))
    result = materialize_aggregates([FIRST_DAY], warehouse, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "telemetry_telemetry__main_v4 does not exist" in failure and "load-pings" in failure


def test_readers_never_fail_while_runs_rewrite_the_tables(world):
    materialize_aggregates(world.days, world.warehouse, probe_files=[PROBES_FILE])
    store = AggregateStore.for_warehouse(world.warehouse)
    version = str(channel_version("nightly", world.days[0]))
    stamps = tuple(d.strftime("%Y%m%d") for d in world.days)
    query = MetricQuery("submission_date", "nightly", version, "GC_MS", stamps)
    expected = store.aggregates(query)
    assert expected.data
    errors, reads = [], []
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                fresh = AggregateStore.for_warehouse(world.warehouse)  # no cached catalog either
                assert store.aggregates(query) == expected
                assert fresh.channels("build_id") == ["nightly", "beta", "release"]
                reads.append(1)
            except Exception as e:  # noqa: BLE001 -- any failure is the finding
                errors.append(repr(e))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(2):
            assert materialize_aggregates(world.days, world.warehouse, probe_files=[PROBES_FILE]).success
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert not errors
    assert len(reads) > 5


def test_assets_and_job_load_in_definitions(world):
    defs = dg.Definitions(assets=AGGREGATE_ASSETS, jobs=[aggregates_job], resources={"warehouse": world.warehouse})
    job = defs.resolve_job_def("aggregates")
    assert job.partitions_def == AGGREGATES_PARTITIONS
    graph = defs.resolve_asset_graph()
    for key in ("aggregates_by_submission_date", "aggregates_by_build_id"):
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "telemetry_aggregates"
        assert node.partitions_def == AGGREGATES_PARTITIONS
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert dg.AssetKey(["payload_bytes_decoded", "telemetry_telemetry__main_v4"]) in node.parent_keys
        assert node.code_version
