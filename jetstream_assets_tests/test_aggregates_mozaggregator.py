"""Acceptance on python_mozaggregator's own test data: the pings its tests generate (rebuilt in
test_aggregates_dataset.py) are loaded with `load-pings` into an empty home, both families are aggregated
with `aggregates run --all-dates`, and the HTTP API must answer what the service's tests assert for them:
counts, sums and buckets per kind, labels, scalar names and descriptions, the child dimension, the ignored
probes, dates lists, filters and the 404/405 rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from starlette.testclient import TestClient

from jetstream_assets.aggregates.api import create_app
from jetstream_assets.aggregates.compute import aggregate_day
from jetstream_assets.aggregates.probes import (
    COUNT_HISTOGRAM_LABELS,
    SIMPLE_MEASURES_LABELS,
    ProbeRegistry,
    exponential_buckets,
)
from jetstream_assets.aggregates.rules import Rules
from jetstream_assets.aggregates.store import AggregateStore
from jetstream_assets.cli import main
from jetstream_assets.warehouse.local import LocalWarehouse
from jetstream_assets_tests import test_aggregates_dataset as d

DEMO_PROBES = Path(__file__).resolve().parents[1] / "jetstream_assets" / "demo" / "probes.json"
CHANNELS = ("nightly", "beta")  # release is served only to allowed metrics
VERSIONS = ("40", "41")
# combinations per (channel, version, date) in either family: the other five dimensions, two values each,
# and the other date dimension's two values
COMBINATIONS = 2 ** 5
PARENT = COMBINATIONS * d.PINGS_PER_COMBINATION
CONTENT_HISTOGRAMS = COMBINATIONS * (d.CHILD_PINGS + (d.PINGS_PER_COMBINATION - d.CHILD_PINGS) * d.CHILD_PAYLOADS)
GPU = COMBINATIONS * d.CHILD_PINGS
HISTOGRAMS = PARENT + CONTENT_HISTOGRAMS + GPU
SCALARS = PARENT + 2 * GPU  # parent, content and gpu processes; content/gpu only in pings that have them
SIMPLE = PARENT * (1 + d.CHILD_PAYLOADS)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("mozaggregator") / "home"
    home.mkdir()  # an empty home: no demo built
    pings = d.write_jsonl(tmp_path_factory.mktemp("pings") / "pings.jsonl")
    assert main(["aggregates", "load-pings", str(pings), "--home", str(home)]) == 0
    (home / "probes").mkdir()
    shutil.copy(DEMO_PROBES, home / "probes" / "probes.json")
    assert main(["aggregates", "run", "--all-dates", "--home", str(home)]) == 0
    return home


def client_for(home: Path, rules: Rules | None = None) -> TestClient:
    store = AggregateStore.for_warehouse(LocalWarehouse(root=str(home / "warehouse")))
    return TestClient(create_app(store, rules or Rules(), ProbeRegistry.for_home(home), cache_seconds=60))


@pytest.fixture(scope="module")
def client(home) -> TestClient:
    return client_for(home)


def dates_of(family: str) -> list[str]:
    values = d.DIMENSIONS["submission_date"] if family == "submission_date" else d.DIMENSIONS["build_id"]
    return sorted(v[:8] for v in values)


def get(client, family, channel, version, metric, **filters):
    dates = ",".join(dates_of(family))
    return client.get(f"/aggregates_by/{family}/channels/{channel}/?"
                      + urlencode({"version": version, "dates": dates, "metric": metric, **filters}))


def body(client, *args, **filters) -> dict:
    reply = get(client, *args, **filters)
    assert reply.status_code == 200, reply.text
    return reply.json()


def dense(buckets: list, values: dict, times: int) -> list[int]:
    """A ping histogram's `values` laid out on `buckets`, multiplied by the number of histograms."""
    out = [0] * len(buckets)
    for key, value in values.items():
        out[buckets.index(int(key))] += value * times
    return out


PLAIN = {name: h for name, h in d.HISTOGRAMS.items()
         if h is not None and h["histogram_type"] not in (4, 5) and not name.startswith("USE_COUNTER2_")}


@pytest.mark.parametrize("family", ["submission_date", "build_id"])
def test_histograms_of_every_kind(client, family):
    for channel in CHANNELS:
        for version in VERSIONS:
            for name, histogram in PLAIN.items():
                reply = body(client, family, channel, version, name)
                assert [row["date"] for row in reply["data"]] == dates_of(family)
                assert reply["kind"] == {0: "exponential", 1: "linear", 2: "boolean"}[histogram["histogram_type"]]
                for row in reply["data"]:
                    assert row["count"] == HISTOGRAMS
                    assert row["sum"] == histogram["sum"] * HISTOGRAMS
                    assert row["histogram"] == dense(reply["buckets"], histogram["values"], HISTOGRAMS)
            # count histograms: one value per histogram, COUNT_HISTOGRAM_LABELS buckets
            for name in ("UPDATE_PING_COUNT_EXTERNAL", "CONTENT_DOCUMENTS_DESTROYED"):
                reply = body(client, family, channel, version, name)
                assert reply["kind"] == "count" and reply["buckets"] == COUNT_HISTOGRAM_LABELS
                value = d.HISTOGRAMS[name]["sum"]
                bucket = max(b for b in COUNT_HISTOGRAM_LABELS if b <= value)
                for row in reply["data"]:
                    assert row["count"] == HISTOGRAMS and row["sum"] == value * HISTOGRAMS
                    expected = [0] * len(COUNT_HISTOGRAM_LABELS)
                    expected[COUNT_HISTOGRAM_LABELS.index(bucket)] = HISTOGRAMS
                    assert row["histogram"] == expected
            # categorical: the registry's labels are the buckets
            reply = body(client, family, channel, version, "TELEMETRY_TEST_CATEGORICAL")
            assert reply["kind"] == "categorical"
            assert reply["buckets"][:3] == ["CommonLabel", "Label2", "Label3"]
            for row in reply["data"]:
                assert row["histogram"][:4] == [HISTOGRAMS, HISTOGRAMS, HISTOGRAMS, 0]
                assert row["sum"] == 3 * HISTOGRAMS


def test_use_counters_are_completed_from_the_destroyed_documents(client):
    for name, destroyed in (("USE_COUNTER2_PROPERTY_FILL_PAGE", 19), ("USE_COUNTER2_PROPERTY_FILL_DOCUMENT", 17)):
        reply = body(client, "build_id", "nightly", "41", name)
        used = d.HISTOGRAMS[name]["values"]["1"]
        for row in reply["data"]:
            assert row["count"] == HISTOGRAMS
            assert row["histogram"] == [(destroyed - used) * HISTOGRAMS, used * HISTOGRAMS, 0]
    # a use counter that is null in the pings is not aggregated
    assert get(client, "build_id", "nightly", "41", "USE_COUNTER2_ISNULL_PAGE").status_code == 404


def test_keyed_histograms_answer_one_entry_per_label(client):
    for family in ("submission_date", "build_id"):
        for metric, histograms in d.KEYED_HISTOGRAMS.items():
            reply = body(client, family, "beta", "40", metric)
            assert len(reply["data"]) == len(histograms) * len(dates_of(family))
            for label, histogram in histograms.items():
                labelled = body(client, family, "beta", "40", metric, label=label)
                assert [row["label"] for row in labelled["data"]] == [label] * len(dates_of(family))
                for row in labelled["data"]:
                    assert row["count"] == HISTOGRAMS
                    assert row["sum"] == histogram["sum"] * HISTOGRAMS
                    assert row["histogram"] == dense(labelled["buckets"], histogram["values"], HISTOGRAMS)


def test_simple_measurements_scalars_and_keyed_scalars(client):
    for family in ("submission_date", "build_id"):
        for metric in ("SIMPLE_MEASURES_UPTIME", "SIMPLE_MEASURES_ADDONMANAGER_XPIDB_PARSEDB_MS"):
            reply = body(client, family, "nightly", "40", metric)
            assert reply["buckets"] == SIMPLE_MEASURES_LABELS and reply["kind"] == "exponential"
            for row in reply["data"]:
                assert row["count"] == SIMPLE and row["sum"] == d.VALUE * SIMPLE
                assert row["histogram"][SIMPLE_MEASURES_LABELS.index(d.SIMPLE_BUCKET)] == SIMPLE == sum(row["histogram"])
        for scalar in d.SCALARS:
            reply = body(client, family, "nightly", "41", "SCALARS_" + scalar.upper())
            assert reply["buckets"] == COUNT_HISTOGRAM_LABELS and reply["description"]
            assert len(reply["data"]) == len(dates_of(family))
            for row in reply["data"]:
                assert row["count"] == SCALARS and row["sum"] == d.VALUE * SCALARS
                assert row["histogram"][COUNT_HISTOGRAM_LABELS.index(d.COUNT_BUCKET)] == SCALARS == sum(row["histogram"])
        for scalar, keys in d.KEYED_SCALARS.items():
            metric = "SCALARS_" + scalar.upper()
            reply = body(client, family, "nightly", "41", metric)
            assert len(reply["data"]) == len(keys) * len(dates_of(family))
            for key in keys:
                labelled = body(client, family, "nightly", "41", metric, label=key.upper())
                assert labelled["description"]
                assert [row["count"] for row in labelled["data"]] == [SCALARS] * len(dates_of(family))


def test_the_child_dimension(client):
    expected = {"parent": PARENT, "content": CONTENT_HISTOGRAMS, "gpu": GPU, "false": PARENT, "true": CONTENT_HISTOGRAMS}
    for child, count in expected.items():
        reply = body(client, "submission_date", "nightly", "41", "GC_MAX_PAUSE_MS_2", child=child)
        assert [row["count"] for row in reply["data"]] == [count, count]
    scalar = "SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT"
    for child, count in {"parent": PARENT, "content": GPU, "gpu": GPU}.items():
        assert [r["count"] for r in body(client, "build_id", "beta", "40", scalar, child=child)["data"]] == [count] * 2
    for child, count in {"parent": PARENT, "content": PARENT * d.CHILD_PAYLOADS}.items():
        reply = body(client, "build_id", "beta", "40", "SIMPLE_MEASURES_UPTIME", child=child)
        assert [r["count"] for r in reply["data"]] == [count] * 2
    assert get(client, "build_id", "beta", "40", "SIMPLE_MEASURES_UPTIME", child="gpu").status_code == 404
    assert get(client, "build_id", "beta", "40", "GC_MAX_PAUSE_MS_2", child="plugin").status_code == 400


def test_ignored_probes_are_not_aggregated(client):
    metrics = client.get("/filters/?channel=nightly&version=41").json()["metric"]
    ignored = [*d.IGNORED_KEYED_HISTOGRAMS, *("SCALARS_" + n.upper() for n in d.IGNORED_SCALARS),
               *("SCALARS_" + n.upper() for n in d.IGNORED_KEYED_SCALARS),
               *("SCALARS_" + n.upper() for n in d.PRIVATE_KEYED_SCALARS)]
    for metric in ignored:
        assert metric not in metrics
        assert get(client, "build_id", "nightly", "41", metric).status_code == 404, metric
    names = {*PLAIN, "UPDATE_PING_COUNT_EXTERNAL", "CONTENT_DOCUMENTS_DESTROYED", "TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED",
             "TELEMETRY_TEST_CATEGORICAL", "USE_COUNTER2_PROPERTY_FILL_PAGE", "USE_COUNTER2_PROPERTY_FILL_DOCUMENT",
             *d.KEYED_HISTOGRAMS, "SIMPLE_MEASURES_UPTIME", "SIMPLE_MEASURES_ADDONMANAGER_XPIDB_PARSEDB_MS",
             *("SCALARS_" + n.upper() for n in (*d.SCALARS, *d.KEYED_SCALARS))}
    assert set(metrics) == names


def test_channels_dates_and_filters(client, home):
    for family in ("build_id", "submission_date"):
        assert set(client.get(f"/aggregates_by/{family}/channels/").json()) == set(CHANNELS)
        for channel in CHANNELS:
            listed = client.get(f"/aggregates_by/{family}/channels/{channel}/dates/").json()
            assert sorted((r["date"], r["version"]) for r in listed) == sorted(
                (date, version) for date in dates_of(family) for version in VERSIONS)
    everything = client_for(home, Rules(allow_all_release_metrics=True))
    assert set(everything.get("/aggregates_by/build_id/channels/").json()) == {*CHANNELS, "release"}
    for channel in CHANNELS:
        for version in VERSIONS:
            filters = client.get(f"/filters/?channel={channel}&version={version}").json()
            assert set(filters["application"]) == {"Firefox", "Fennec"}
            assert set(filters["architecture"]) == {"x86", "x86-64"}
            assert set(filters["child"]) == {"parent", "content", "gpu"}
            assert set(filters["os"]) == {"Windows_NT,6.1", "Windows_NT,3.1.12", "Linux,3.1", "Linux,6.1"}
            for pair in filters["os"]:  # a listed pair filters as it reads: os and osVersion
                reply = body(client, "submission_date", channel, version, "GC_MAX_PAUSE_MS_2", os=pair)
                assert [row["count"] for row in reply["data"]] == [HISTOGRAMS // 4] * 2


def test_release_metrics_need_to_be_public(home):
    public = client_for(home, Rules.from_env({"PUBLIC_RELEASE_METRICS": "SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT"}))
    assert get(public, "build_id", "release", "41", "SCALARS_TELEMETRY.TEST.KEYED_UNSIGNED_INT").status_code == 200
    for metric in PLAIN:
        assert get(public, "build_id", "release", "41", metric).status_code == 404


def test_404_and_405_rules(client):
    base = {"application": "Firefox", "architecture": "x86", "child": "content", "dates": dates_of("build_id")[1],
            "metric": "GC_MAX_PAUSE_MS_2", "os": "Windows_NT", "osVersion": "6.1", "version": "41"}
    url = "/aggregates_by/build_id/channels/nightly/?" + urlencode(base)
    assert client.get(url).status_code == 200
    for extra in ("e10sEnabled=true", "foo=bar"):
        reply = client.get(f"{url}&{extra}")
        assert reply.status_code == 405
        assert set(parse_qs(urlsplit(reply.headers["Allow"]).query)) == set(base)
    for missing in ("version", "dates", "metric"):
        params = {k: v for k, v in base.items() if k != missing}
        assert client.get("/aggregates_by/build_id/channels/nightly/?" + urlencode(params)).status_code == 404
    assert get(client, "build_id", "nightly", "41", "SCALARS_NONEXISTENT").status_code == 404
    assert client.get("/filters/?channel=nightly").status_code == 404
    assert client.get("/status").text == "OK"


def test_without_a_registry_the_pings_carry_the_layouts(home):
    result = aggregate_day(LocalWarehouse(root=str(home / "warehouse")), d.SUBMITTED_1, ProbeRegistry())
    assert not result.unknown_metrics and not result.rejected
    frame = result.frames["submission_date"].drop_duplicates("metric").set_index("metric")
    assert json.loads(frame.loc["EVENTLOOP_UI_ACTIVITY_EXP_MS", "buckets"]) == exponential_buckets(50, 60000, 20)
    assert json.loads(frame.loc["TELEMETRY_TEST_CATEGORICAL", "buckets"]) == ["0", "1", "2", "3"]
    assert json.loads(frame.loc["GC_MAX_PAUSE_MS_2", "buckets"])[:5] == [0, 1, 22, 43, 63]
    store = AggregateStore.for_warehouse(LocalWarehouse(root=str(home / "warehouse")))
    bare = TestClient(create_app(store, Rules(), ProbeRegistry(), cache_seconds=60))
    scalar = body(bare, "build_id", "nightly", "41", "SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT")
    assert "browser.engagement.total_uri_count" in scalar["description"]
    assert body(bare, "build_id", "nightly", "41", "GC_MAX_PAUSE_MS_2")["description"] == ""
