"""The pings python_mozaggregator's tests aggregate (its tests/dataset.py), rebuilt in our own words: every
combination of a few dimension values, three pings per combination, each carrying the same probes, so every
aggregate's count, sum and buckets are known in advance. No tests here; test_aggregates_mozaggregator.py uses it.

Per combination: all three pings carry the parent payload (histograms, keyed histograms with ignored ones,
simple measurements, scalars and keyed scalars with ignored and private ones, three `childPayloads` with
simple measurements); the first two (`CHILD_PINGS`) also carry `processes.content` and `processes.gpu` with
histograms and scalars, the last one carries its child histograms inside the three `childPayloads` instead.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from pathlib import Path

PINGS_PER_COMBINATION = 3
CHILD_PINGS = 2  # pings per combination with processes.content / processes.gpu
CHILD_PAYLOADS = 3
VALUE = 42
SIMPLE_BUCKET = 35  # where 42 falls in exponential_buckets(1, 30000, 50)
COUNT_BUCKET = 40  # where 42 falls in COUNT_HISTOGRAM_LABELS

TODAY = dt.date.today()
BUILD_1 = TODAY - dt.timedelta(days=1)
BUILD_2 = TODAY - dt.timedelta(days=2)
SUBMITTED_1 = TODAY
SUBMITTED_2 = TODAY - dt.timedelta(days=2)

DIMENSIONS = {
    "submission_date": [SUBMITTED_2.strftime("%Y%m%d"), SUBMITTED_1.strftime("%Y%m%d")],
    "channel": ["nightly", "beta", "release"],
    "version": ["40.0b1", "41"],
    "build_id": [BUILD_2.strftime("%Y%m%d%H%M%S"), BUILD_1.strftime("%Y%m%d%H%M%S")],
    "application": ["Firefox", "Fennec"],
    "arch": ["x86", "x86-64"],
    "os": ["Linux", "Windows_NT"],
    "os_version": ["6.1", "3.1.12"],
}


def _histogram(kind: int, low: int, high: int, buckets: int, total: int, values: dict) -> dict:
    return {"bucket_count": buckets, "histogram_type": kind, "range": [low, high], "sum": total,
            "values": {str(k): v for k, v in values.items()}}


HISTOGRAMS = {
    "EVENTLOOP_UI_ACTIVITY_EXP_MS": _histogram(0, 50, 60000, 20, 9362, {
        0: 0, 50: 18, 74: 16, 110: 16, 163: 8, 242: 5, 359: 2, 789: 1, 1170: 0}),
    "UPDATE_PING_COUNT_EXTERNAL": _histogram(4, 1, 2, 3, VALUE, {0: VALUE, 1: 0}),
    "USE_COUNTER2_PROPERTY_FILL_PAGE": _histogram(2, 1, 2, 3, 2, {0: 0, 1: 2, 2: 0}),
    "USE_COUNTER2_ISNULL_PAGE": None,
    "USE_COUNTER2_PROPERTY_FILL_DOCUMENT": _histogram(2, 1, 2, 3, 1, {0: 0, 1: 1, 2: 0}),
    "CONTENT_DOCUMENTS_DESTROYED": _histogram(4, 1, 2, 3, 17, {0: 17, 1: 0}),
    "TOP_LEVEL_CONTENT_DOCUMENTS_DESTROYED": _histogram(4, 1, 2, 3, 19, {0: 19, 1: 0}),
    "USE_COUNTER_PROPERTY_FILL_DOCUMENT": _histogram(2, 1, 2, 3, 1, {0: 0, 1: 1}),
    "TELEMETRY_TEST_CATEGORICAL": _histogram(5, 1, 2, 4, 3, {0: 1, 1: 1, 2: 1, 3: 0}),
    "GC_MAX_PAUSE_MS_2": _histogram(1, 1, 1000, 50, 554, {0: 0, 1: 4, 22: 2, 43: 1, 63: 1, 272: 1, 292: 0}),
}
KEYED_HISTOGRAMS = {
    "DEVTOOLS_PERFTOOLS_RECORDING_FEATURES_USED": {"withMarkers": _histogram(2, 1, 2, 3, 1, {0: 0, 1: 1, 2: 0})},
}
IGNORED_KEYED_HISTOGRAMS = {
    "MESSAGE_MANAGER_MESSAGE_SIZE": {"foo": _histogram(0, 1, 2, 20, 0, {0: 0})},
    "VIDEO_DETAILED_DROPPED_FRAMES_PROPORTION": {"foo": _histogram(0, 1, 2, 20, 0, {0: 0})},
    "SEARCH_COUNTS": {"ddg.urlbar": _histogram(4, 1, 2, 3, 1, {0: 1, 1: 0})},
}
SIMPLE_MEASUREMENTS = {"uptime": VALUE, "addonManager": {"XPIDB_parseDB_MS": VALUE}}
SCALARS = {"browser.engagement.total_uri_count": VALUE, "browser.engagement.tab_open_event_count": VALUE}
IGNORED_SCALARS = {"browser.engagement.navigation": VALUE, "browser.engagement.navigation.test": VALUE,
                   "telemetry.test.string_kind": "IGNORED_STRING"}
KEYED_SCALARS = {"telemetry.test.keyed_release_optout": {"search_enter": VALUE},
                 "telemetry.test.keyed_unsigned_int": {"first": VALUE, "second": VALUE}}
IGNORED_KEYED_SCALARS = {"browser.engagement.navigation.searchbar": {"first": VALUE, "second": VALUE},
                         "fake.keyed.string": {"first": "IGNORE_ME"}}
PRIVATE_KEYED_SCALARS = {"telemetry.event_counts": {"some#event#happened": VALUE},
                         "telemetry.dynamic_event_counts": {"some#dynamic#event": VALUE}}


def combinations() -> list[dict]:
    names = list(DIMENSIONS)
    return [dict(zip(names, values)) for values in itertools.product(*DIMENSIONS.values())]


def ping(dims: dict, with_child_processes: bool) -> dict:
    scalars = {**SCALARS, **IGNORED_SCALARS}
    keyed_scalars = {**KEYED_SCALARS, **IGNORED_KEYED_SCALARS, **PRIVATE_KEYED_SCALARS}
    children = [{"simpleMeasurements": SIMPLE_MEASUREMENTS} for _ in range(CHILD_PAYLOADS)]
    processes = {"parent": {"scalars": scalars, "keyedScalars": keyed_scalars}}
    if with_child_processes:
        for process in ("content", "gpu"):
            processes[process] = {"histograms": HISTOGRAMS, "keyedHistograms": KEYED_HISTOGRAMS,
                                  "scalars": scalars, "keyedScalars": keyed_scalars}
    else:
        for child in children:
            child["histograms"] = HISTOGRAMS
            child["keyedHistograms"] = KEYED_HISTOGRAMS
    return {
        "clientId": str(uuid.uuid4()),
        "meta": {"submissionDate": dims["submission_date"], "sampleId": 42},
        "application": {"channel": dims["channel"], "version": dims["version"], "buildId": dims["build_id"],
                        "name": dims["application"], "architecture": dims["arch"]},
        "payload": {"simpleMeasurements": SIMPLE_MEASUREMENTS, "histograms": HISTOGRAMS,
                    "keyedHistograms": {**KEYED_HISTOGRAMS, **IGNORED_KEYED_HISTOGRAMS},
                    "childPayloads": children, "processes": processes},
        "environment": {"system": {"os": {"name": dims["os"], "version": dims["os_version"]}},
                        "settings": {"telemetryEnabled": False, "e10sEnabled": True}},
    }


def generate() -> list[dict]:
    return [ping(dims, index < CHILD_PINGS) for dims in combinations() for index in range(PINGS_PER_COMBINATION)]


def write_jsonl(path: Path, pings: list[dict] | None = None) -> Path:
    with open(path, "w") as handle:
        for document in pings if pings is not None else generate():
            handle.write(json.dumps(document) + "\n")
    return path


def histogram_count(combinations_per_date: int) -> int:
    """Histograms aggregated per date for a set of combinations: a ping with child processes gives one per
    process type (parent, content, gpu); one without gives the parent's and one per child payload."""
    per_combination = CHILD_PINGS * 3 + (PINGS_PER_COMBINATION - CHILD_PINGS) * (CHILD_PAYLOADS + 1)
    return combinations_per_date * per_combination
