"""The telemetry aggregates HTTP API, served on 127.0.0.1 and called with a real HTTP client: every endpoint
and filter checked against aggregates computed independently from the synthetic pings, and the service's
rules (405 + Allow, 404 for missing parameters, blacklist, release metrics, cache headers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
import requests

from jetstream_assets.aggregates.rules import Rules, RulesError
from jetstream_assets.aggregates.store import WarehouseAggregateStore
from jetstream_assets.demo.pings import DEMO_PROBES
from jetstream_assets_tests.test_aggregates_helpers import (
    REGISTRY,
    build_world,
    expected_data,
    expected_dates,
    expected_options,
    layout_of,
    reference,
    running_server,
    stored_metric,
)

FAMILIES = ("build_id", "submission_date")
# one metric of each kind: exponential, linear, enumerated, boolean, count, keyed histogram, keyed count,
# numeric scalar, boolean scalar, keyed scalar, gpu-only histogram
METRICS = ("GC_MS", "CPU_USAGE_PERCENT", "SSL_HANDSHAKE_VERSION", "CANVAS_WEBGL_SUCCESS",
           "URLCLASSIFIER_UPDATE_ERROR", "IPC_MESSAGE_SIZE", "JS_TELEMETRY_ADDON_EXCEPTIONS",
           "SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT", "SCALARS_WIDGET.DARK_MODE", "SIMPLE_MEASURES_UPTIME",
           "SCALARS_BROWSER.SEARCH.CONTENT.URLBAR", "COMPOSITE_TIME")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("aggregates_api"))


@pytest.fixture(scope="module")
def rows(world):
    return {family: reference(world.pings, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def api(world):
    with running_server(world.warehouse, Rules(allow_all_release_metrics=True)) as url:
        yield url


def get(url: str, path: str, **params):
    return requests.get(url + path + (("?" + urlencode(params)) if params else ""), timeout=30)


def current_version(world, channel: str) -> str:
    """The version most pings of a channel carry."""
    versions = [p["application"]["version"].split(".")[0] for p in world.pings if p["application"]["channel"] == channel]
    return max(set(versions), key=versions.count)


def keys_of(metric: str) -> tuple[str, ...]:
    probe = next(p for p in DEMO_PROBES if metric in (p.name, "SCALARS_" + p.name.upper()))
    return tuple(k.upper() for k in probe.keys) if probe.scalar else probe.keys


def test_channels_and_dates_per_family(world, rows, api):
    for family in FAMILIES:
        reply = get(api, f"/aggregates_by/{family}/channels/")
        assert reply.status_code == 200
        assert reply.json() == ["nightly", "beta", "release"]
        for channel in ("nightly", "beta", "release"):
            dates = get(api, f"/aggregates_by/{family}/channels/{channel}/dates/")
            assert dates.status_code == 200
            assert dates.json() == expected_dates(rows[family], channel)
    # build dates reach back before the first submission date; submission dates do not
    build_dates = {d["date"] for d in get(api, "/aggregates_by/build_id/channels/release/dates/").json()}
    assert min(build_dates) < world.stamps[0]
    submission = {d["date"] for d in get(api, "/aggregates_by/submission_date/channels/release/dates/").json()}
    assert submission == set(world.stamps)


def test_filters_list_every_dimension_seen(world, rows, api):
    for channel in ("nightly", "beta", "release"):
        version = current_version(world, channel)
        reply = get(api, "/filters/", channel=channel, version=version)
        assert reply.status_code == 200
        assert reply.json() == expected_options(rows["submission_date"], channel, version)
    assert get(api, "/filters/", channel="nightly", version="1").status_code == 404
    assert get(api, "/filters/", channel="aurora", version="42").status_code == 404


@pytest.mark.parametrize("family", FAMILIES)
def test_aggregates_match_the_pings_for_every_kind_and_filter(world, rows, api, family):
    checked = 0
    for channel in ("nightly", "release"):
        version = current_version(world, channel)
        dates = [d["date"] for d in expected_dates(rows[family], channel) if d["version"] == version]
        dates = sorted(dates)[-6:]
        for metric in METRICS:
            layout = layout_of(stored_metric(rows[family], metric), None)
            filter_sets = [{}, {"os": "Windows_NT"}, {"os": "Windows_NT", "child": "parent"},
                           {"application": "Firefox", "architecture": "x86-64", "osVersion": "10.0"},
                           {"child": "content"}, {"child": "gpu"}, {"application": "Fennec", "os": "Android"}]
            if metric not in ("SIMPLE_MEASURES_UPTIME",) and keys_of(metric):
                filter_sets.append({"label": keys_of(metric)[0]})
            for filters in filter_sets:
                expected = expected_data(rows[family], channel, version, metric, set(dates), filters)
                reply = get(api, f"/aggregates_by/{family}/channels/{channel}/",
                            version=version, dates=",".join(dates), metric=metric, **filters)
                if not expected:
                    assert reply.status_code == 404, (metric, filters, reply.text)
                    assert "No " in reply.json()["error"]
                    continue
                assert reply.status_code == 200, reply.text
                body = reply.json()
                assert body["buckets"] == list(layout.buckets)
                assert body["kind"] == layout.kind
                assert body["description"] == REGISTRY.description(metric)
                assert body["data"] == expected, (family, channel, metric, filters)
                checked += 1
    assert checked > 60  # most combinations have data: the comparison is not vacuous


def test_keyed_metrics_answer_one_entry_per_label(world, api):
    version = current_version(world, "nightly")
    dates = world.stamps
    reply = get(api, "/aggregates_by/submission_date/channels/nightly/",
                version=version, dates=",".join(dates), metric="IPC_MESSAGE_SIZE")
    data = reply.json()["data"]
    labels = {row["label"] for row in data}
    assert labels == set(keys_of("IPC_MESSAGE_SIZE"))
    assert len(data) == len({(r["date"], r["label"]) for r in data}) > len(dates)
    unkeyed = get(api, "/aggregates_by/submission_date/channels/nightly/",
                  version=version, dates=",".join(dates), metric="GC_MS").json()["data"]
    assert {r["label"] for r in unkeyed} == {""}
    assert [r["date"] for r in unkeyed] == sorted(dates)


def test_kinds_and_bucket_labels():
    # numeric scalars, booleans included, are served as exponential on COUNT_HISTOGRAM_LABELS
    assert REGISTRY.layout("SCALARS_WIDGET.DARK_MODE").kind == "exponential"
    assert REGISTRY.layout("[[COUNT]]_URLCLASSIFIER_UPDATE_ERROR").kind == "count"
    assert REGISTRY.layout("SSL_HANDSHAKE_VERSION").buckets == tuple(range(17))


def test_unknown_parameters_get_405_with_the_cleaned_url(world, api):
    version = current_version(world, "nightly")
    path = "/aggregates_by/build_id/channels/nightly/"
    url = f"{api}{path}?version={version}&dates={world.stamps[0]}&metric=GC_MS&e10sEnabled=true&os=Linux&x=1"
    reply = requests.get(url, timeout=30)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == f"{path}?version={version}&dates={world.stamps[0]}&metric=GC_MS&os=Linux"
    assert "'e10sEnabled', 'x'" in reply.json()["error"]
    assert requests.get(api + reply.headers["Allow"], timeout=30).status_code in (200, 404)
    # every endpoint refuses parameters it does not take
    for path, params in (("/aggregates_by/build_id/channels/", {"channel": "nightly"}),
                         ("/aggregates_by/build_id/channels/nightly/dates/", {"version": version}),
                         ("/filters/", {"channel": "nightly", "version": version, "metric": "GC_MS"})):
        reply = get(api, path, **params)
        assert reply.status_code == 405
        assert "Allow" in reply.headers
    assert get(api, "/filters/", channel="nightly", version=version, metric="GC_MS").headers["Allow"] == (
        f"/filters/?channel=nightly&version={version}")


def test_missing_parameters_get_404(world, api):
    version = current_version(world, "nightly")
    full = {"version": version, "dates": world.stamps[0], "metric": "GC_MS"}
    for missing in full:
        params = {k: v for k, v in full.items() if k != missing}
        reply = get(api, "/aggregates_by/build_id/channels/nightly/", **params)
        assert reply.status_code == 404
        assert missing in reply.json()["error"]
    assert get(api, "/aggregates_by/build_id/channels/nightly/", **{**full, "metric": ""}).status_code == 404
    assert get(api, "/filters/", channel="nightly").status_code == 404
    assert get(api, "/filters/", version=version).status_code == 404


def test_unknown_channel_version_metric_and_family(world, api):
    version = current_version(world, "nightly")
    base = {"version": version, "dates": world.stamps[0], "metric": "GC_MS"}
    assert get(api, "/aggregates_by/build_id/channels/aurora/", **base).status_code == 404
    assert get(api, "/aggregates_by/build_id/channels/aurora/dates/").status_code == 404
    assert get(api, "/aggregates_by/build_id/channels/nightly/", **{**base, "version": "7"}).status_code == 404
    reply = get(api, "/aggregates_by/build_id/channels/nightly/", **{**base, "metric": "NO_SUCH_PROBE"})
    assert reply.status_code == 404 and "/filters/" in reply.json()["error"]
    assert get(api, "/aggregates_by/build_ids/channels/").status_code == 404
    assert get(api, "/aggregates_by/submission_date/channels/nightly/",
               **{**base, "dates": "19990101"}).status_code == 404


def test_metrics_blacklist_hides_metrics_everywhere(world):
    rules = Rules.from_env({"METRICS_BLACKLIST": "GC_.*, SCALARS_BROWSER\\.ENGAGEMENT\\..*",
                            "ALLOW_ALL_RELEASE_METRICS": "True"})
    with running_server(world.warehouse, rules) as url:
        for channel in ("nightly", "release"):
            version = current_version(world, channel)
            base = {"version": version, "dates": ",".join(world.stamps)}
            for metric in ("GC_MS", "SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT"):
                reply = get(url, f"/aggregates_by/submission_date/channels/{channel}/", metric=metric, **base)
                assert reply.status_code == 404
            # whole-name matching: CYCLE_COLLECTOR_MAX_PAUSE is not blocked by GC_.*
            assert get(url, f"/aggregates_by/submission_date/channels/{channel}/", metric="CYCLE_COLLECTOR_MAX_PAUSE",
                       **base).status_code == 200
            metrics = get(url, "/filters/", channel=channel, version=version).json()["metric"]
            assert "GC_MS" not in metrics and "CYCLE_COLLECTOR_MAX_PAUSE" in metrics
            assert not [m for m in metrics if m.startswith("SCALARS_BROWSER.ENGAGEMENT.")]
    # a JSON list allows commas inside expressions
    assert Rules.from_env({"METRICS_BLACKLIST": '["A{1,2}", "B"]'}).blocked("AA")


def test_release_metrics_only_when_public_or_all_allowed(world):
    release = current_version(world, "release")
    nightly = current_version(world, "nightly")
    base = {"dates": ",".join(world.stamps)}

    def status(url, channel, version, metric):
        return get(url, f"/aggregates_by/submission_date/channels/{channel}/", version=version, metric=metric,
                   **base).status_code

    with running_server(world.warehouse, Rules.from_env({})) as url:
        assert status(url, "release", release, "GC_MS") == 404
        assert status(url, "nightly", nightly, "GC_MS") == 200
        assert "metric" not in get(url, "/filters/", channel="release", version=release).json()
    with running_server(world.warehouse, Rules.from_env({"PUBLIC_RELEASE_METRICS": "GC_MS,COMPOSITE_TIME"})) as url:
        assert status(url, "release", release, "GC_MS") == 200
        assert status(url, "release", release, "CPU_USAGE_PERCENT") == 404
        assert get(url, "/filters/", channel="release", version=release).json()["metric"] == [
            "COMPOSITE_TIME", "GC_MS"]
    env = {"ALLOW_ALL_RELEASE_METRICS": "True", "METRICS_BLACKLIST": "CPU_.*"}
    with running_server(world.warehouse, Rules.from_env(env)) as url:
        assert status(url, "release", release, "GC_MS") == 200
        assert status(url, "release", release, "CPU_USAGE_PERCENT") == 404


def test_bad_rules_in_the_environment_are_refused():
    with pytest.raises(RulesError, match="METRICS_BLACKLIST"):
        Rules.from_env({"METRICS_BLACKLIST": "GC_(MS"})
    with pytest.raises(RulesError, match="ALLOW_ALL_RELEASE_METRICS"):
        Rules.from_env({"ALLOW_ALL_RELEASE_METRICS": "yes please"})
    with pytest.raises(RulesError, match="PUBLIC_RELEASE_METRICS"):
        Rules.from_env({"PUBLIC_RELEASE_METRICS": "[1, 2]"})


def test_cache_headers_etag_and_cors(world, api):
    version = current_version(world, "nightly")
    path = "/aggregates_by/build_id/channels/nightly/"
    params = {"version": version, "dates": ",".join(world.stamps), "metric": "GC_MS"}
    reply = get(api, path, **params)
    assert reply.status_code == 200
    assert reply.headers["Cache-Control"] == "public, max-age=600"
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    etag = reply.headers["ETag"]
    again = requests.get(api + path + "?" + urlencode(params), headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.content
    other = get(api, path, **{**params, "os": "Linux"})
    assert other.headers["ETag"] != etag
    error = get(api, path, **{**params, "dates": "2015"})
    assert error.status_code == 400 and error.headers["Cache-Control"] == "no-store"
    # large replies are compressed for clients that accept it
    keyed = urlencode({**params, "metric": "IPC_MESSAGE_SIZE"})
    plain = requests.get(f"{api}{path}?{keyed}", headers={"Accept-Encoding": "identity"}, timeout=30)
    gz = requests.get(f"{api}{path}?{keyed}", headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert len(plain.content) > 1024 and "Content-Encoding" not in plain.headers
    assert gz.headers.get("Content-Encoding") == "gzip" and gz.json() == plain.json()


def test_other_methods_are_refused(api):
    reply = requests.post(api + "/aggregates_by/build_id/channels/", timeout=30)
    assert reply.status_code == 405 and "GET" in reply.headers["Allow"]


def test_the_warehouse_reader_gives_the_same_replies(world):
    """The SQL reader (BigQuery's path, here through the local warehouse's transpiler) matches the fast one."""
    version = current_version(world, "beta")
    queries = [
        ("/aggregates_by/build_id/channels/beta/dates/", {}),
        ("/filters/", {"channel": "beta", "version": version}),
        ("/aggregates_by/build_id/channels/beta/",
         {"version": version, "dates": ",".join(world.stamps), "metric": "IPC_MESSAGE_SIZE", "os": "Windows_NT"}),
        ("/aggregates_by/submission_date/channels/beta/",
         {"version": version, "dates": ",".join(world.stamps), "metric": "SCALARS_WIDGET.DARK_MODE", "child": "false"}),
    ]
    with running_server(world.warehouse, Rules()) as fast, \
            running_server(world.warehouse, Rules(), store=WarehouseAggregateStore(world.warehouse)) as sql:
        for path, params in queries:
            a, b = get(fast, path, **params), get(sql, path, **params)
            assert a.status_code == b.status_code == 200
            assert a.json() == b.json()


def test_serve_starts_the_api_on_localhost(world):
    """`serve(home, port)` (what `jetstream-assets serve` calls) answers over HTTP from the home's warehouse."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETSTREAM_BIGQUERY")}
    env["ALLOW_ALL_RELEASE_METRICS"] = "True"
    process = subprocess.Popen(
        [sys.executable, "-c", f"from jetstream_assets.aggregates.api import serve; serve({str(world.home)!r}, {port})"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/aggregates_by/submission_date/channels/", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start: {process.stdout.read()}") from None
                time.sleep(0.1)
        assert reply.json() == ["nightly", "beta", "release"]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert f"http://127.0.0.1:{port}/" in process.stdout.read()
