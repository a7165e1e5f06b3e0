"""The Experimenter source: parsing v8 records, skipping malformed ones, HTTP failures, the daily selection."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jetstream_assets.experimenter import (
    Experiment,
    Experimenter,
    ExperimenterRecordError,
    ExperimenterUnavailableError,
    InvalidSlugError,
    analysable,
    validate_slug,
)

D = dt.date

# Shape of a real /api/v8/experiments/ record (fields we do not use included, as Experimenter sends them).
V8_RECORD = {
    "schemaVersion": "1.12.0",
    "slug": "fenix-onboarding-redesign",
    "id": "fenix-onboarding-redesign",
    "arguments": {},
    "application": "org.mozilla.firefox",
    "appName": "fenix",
    "appId": "org.mozilla.firefox",
    "channel": "release",
    "userFacingName": "Fenix onboarding redesign",
    "userFacingDescription": "Tests a new onboarding flow.",
    "isEnrollmentPaused": True,
    "isRollout": False,
    "bucketConfig": {
        "randomizationUnit": "nimbus_id",
        "namespace": "fenix-onboarding-release-3",
        "start": 0,
        "count": 5000,
        "total": 10000,
    },
    "featureIds": ["onboarding"],
    "probeSets": [],
    "outcomes": [{"slug": "onboarding", "priority": "primary"}, {"slug": "default_browser", "priority": "secondary"}],
    "segments": [{"slug": "new_profiles"}],
    "branches": [
        {"slug": "control", "ratio": 1, "features": [{"featureId": "onboarding", "value": {}}]},
        {"slug": "treatment-a", "ratio": 2, "features": [{"featureId": "onboarding", "value": {"x": 1}}]},
    ],
    "targeting": "(app_version|versionCompare('120.!') >= 0)",
    "startDate": "2024-02-20",
    "enrollmentEndDate": "2024-03-05",
    "endDate": "2024-04-02",
    "proposedDuration": 42,
    "proposedEnrollment": 14,
    "referenceBranch": "control",
    "featureValidationOptOut": False,
    "localizations": None,
    "locales": None,
    "publishedDate": "2024-02-19T15:03:11.123456Z",
}


def record(**changes) -> dict:
    r = copy.deepcopy(V8_RECORD)
    for key, value in changes.items():
        if value is _DROP:
            r.pop(key, None)
        else:
            r[key] = value
    return r


_DROP = object()


# --- parsing --------------------------------------------------------------------------------------------


def test_parse_realistic_v8_record():
    exp = Experiment.from_v8(V8_RECORD)
    assert exp.slug == "fenix-onboarding-redesign"
    assert [(b.slug, b.ratio) for b in exp.branches] == [("control", 1), ("treatment-a", 2)]
    assert (exp.start_date, exp.enrollment_end_date, exp.end_date) == (
        D(2024, 2, 20),
        D(2024, 3, 5),
        D(2024, 4, 2),
    )
    assert exp.proposed_enrollment == 14
    assert exp.is_enrollment_paused is True and exp.is_rollout is False
    assert exp.reference_branch == "control"
    assert (exp.app_name, exp.app_id) == ("fenix", "org.mozilla.firefox")
    assert exp.outcomes == ["onboarding", "default_browser"]
    assert exp.segments == ["new_profiles"]
    assert exp.bucket_config.randomization_unit == "nimbus_id"
    assert (exp.bucket_config.namespace, exp.bucket_config.count) == ("fenix-onboarding-release-3", 5000)


def test_parse_defaults_for_optional_fields():
    exp = Experiment.from_v8(
        record(
            appName=None,
            appId=_DROP,
            endDate=None,
            enrollmentEndDate=_DROP,
            outcomes=None,
            segments=_DROP,
            bucketConfig=None,
            isRollout=_DROP,
            isEnrollmentPaused=None,
            referenceBranch=None,
        )
    )
    assert (exp.app_name, exp.app_id) == ("firefox_desktop", "firefox-desktop")
    assert exp.end_date is None and exp.enrollment_end_date is None
    assert exp.outcomes == [] and exp.segments == []
    assert exp.bucket_config is None and exp.is_rollout is False and exp.is_enrollment_paused is False


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"startDate": "2024-13-01"}, "startDate"),
        ({"endDate": "04/02/2024"}, "endDate"),
        ({"enrollmentEndDate": 20240305}, "enrollmentEndDate"),
        ({"branches": "control,treatment"}, "branches"),
        ({"branches": [{"slug": "control", "ratio": "one"}]}, "branches.0.ratio"),
        ({"isRollout": "no"}, "isRollout"),
        ({"proposedEnrollment": 7.5}, "proposedEnrollment"),
        ({"bucketConfig": {"randomizationUnit": "nimbus_id", "namespace": "x", "start": "0", "count": 1}},
         "bucketConfig.start"),
        ({"outcomes": ["onboarding"]}, "outcomes.0"),
        ({"branches": _DROP}, "branches"),
    ],
)
def test_malformed_record_error_names_slug_and_field(changes, field):
    with pytest.raises(ExperimenterRecordError) as info:
        Experiment.from_v8(record(**changes))
    err = info.value
    assert err.slug == "fenix-onboarding-redesign"
    assert err.field == field
    assert "fenix-onboarding-redesign" in str(err) and field in str(err)


@pytest.mark.parametrize("slug", [_DROP, None, "", "   ", 42])
def test_record_without_usable_slug(slug):
    with pytest.raises(ExperimenterRecordError) as info:
        Experiment.from_v8(record(slug=slug))
    assert info.value.slug is None and info.value.field == "slug"


def test_record_that_is_not_an_object():
    with pytest.raises(ExperimenterRecordError, match="expected a JSON object"):
        Experiment.from_v8(["not", "a", "record"])


# --- status, conversion, selection ----------------------------------------------------------------------


def test_status_is_complete_from_the_end_date_on():
    exp = Experiment.from_v8(V8_RECORD)  # ends 2024-04-02
    assert exp.status(D(2024, 4, 1)) == "Live"
    assert exp.status(D(2024, 4, 2)) == "Complete"
    assert exp.status(D(2024, 5, 1)) == "Complete"
    assert Experiment.from_v8(record(endDate=None)).status(D(2030, 1, 1)) == "Live"


def test_to_config_experiment_for_metric_config_parser():
    config = Experiment.from_v8(V8_RECORD).to_config_experiment(D(2024, 4, 10))
    assert config.normandy_slug == "fenix-onboarding-redesign" and config.type == "v6"
    assert config.status == "Complete"
    assert config.start_date == dt.datetime(2024, 2, 20, tzinfo=dt.timezone.utc)
    assert config.enrollment_end_date == dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc)
    assert config.end_date.utcoffset() == dt.timedelta(0)
    assert [b.slug for b in config.branches] == ["control", "treatment-a"]
    assert config.bucket_config.randomization_unit == "nimbus_id"
    assert (config.app_name, config.app_id) == ("fenix", "org.mozilla.firefox")
    assert (config.outcomes, config.segments) == (["onboarding", "default_browser"], ["new_profiles"])
    assert Experiment.from_v8(V8_RECORD).to_config_experiment(D(2024, 3, 1)).status == "Live"


def test_analysable_selection():
    today = D(2024, 6, 30)
    exps = {
        "live-open": record(slug="live-open", endDate=None),
        "live-future-end": record(slug="live-future-end", endDate="2024-08-01"),
        "ended-90-days-ago": record(slug="ended-90-days-ago", endDate="2024-04-01"),
        "ended-91-days-ago": record(slug="ended-91-days-ago", endDate="2024-03-31"),
        "rollout": record(slug="rollout", endDate=None, isRollout=True),
    }
    chosen = analysable([Experiment.from_v8(r) for r in exps.values()], today)
    assert [e.slug for e in chosen] == ["live-open", "live-future-end", "ended-90-days-ago"]


@pytest.mark.parametrize("slug", ["a|b", "a,b", "x[1]", "bad]", "", "  ", "with space", 'q"uote', "it's", "a...b"])
def test_validate_slug_refuses_partition_breaking_slugs(slug):
    with pytest.raises(InvalidSlugError) as info:
        validate_slug(slug)
    assert repr(slug) in str(info.value)


def test_validate_slug_accepts_experimenter_slugs():
    for slug in ("fenix-onboarding-redesign", "bug-1629098-rapid-please-reject-me-beta-86", "a_b.c"):
        validate_slug(slug)


# --- local file source ----------------------------------------------------------------------------------


def test_fetch_from_file_skips_malformed_records_and_keeps_the_others(tmp_path, caplog):
    records = [
        record(slug="good-one"),
        record(slug="bad-date", startDate="2024-02-30"),
        record(slug=_DROP),
        record(slug="good-two", appName=None),
        record(slug="bad-type", branches={"slug": "control"}),
    ]
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps(records))
    with caplog.at_level(logging.WARNING):
        snapshot = Experimenter(path=str(path)).fetch()
    assert [e.slug for e in snapshot.experiments] == ["good-one", "good-two"]
    assert [(e.slug, e.field) for e in snapshot.errors] == [
        ("bad-date", "startDate"),
        (None, "slug"),
        ("bad-type", "branches"),
    ]
    assert "bad-date" in caplog.text and "startDate" in caplog.text


def test_get_from_file(tmp_path):
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps([record(slug="good-one"), record(slug="bad", endDate="yesterday")]))
    source = Experimenter(path=str(path))
    assert source.get("good-one").slug == "good-one"
    assert source.get("nope") is None
    with pytest.raises(ExperimenterRecordError, match="endDate"):
        source.get("bad")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ExperimenterUnavailableError, match="missing.json"):
        Experimenter(path=str(tmp_path / "missing.json")).fetch()
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ExperimenterUnavailableError, match="garbage.json.*not valid JSON"):
        Experimenter(path=str(garbage)).fetch()
    not_list = tmp_path / "object.json"
    not_list.write_text(json.dumps(V8_RECORD))
    with pytest.raises(ExperimenterUnavailableError, match="not a JSON list"):
        Experimenter(path=str(not_list)).fetch()


def test_resource_needs_exactly_one_source():
    with pytest.raises(ValueError, match="neither"):
        Experimenter().fetch()
    with pytest.raises(ValueError, match="both"):
        Experimenter(url="http://127.0.0.1:1", path="/tmp/x.json").fetch()


# --- HTTP source ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes by the first path segment, which the tests use as the Experimenter base URL."""

    calls: dict[str, int] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        mode, _, rest = self.path.lstrip("/").partition("/")
        count = _Handler.calls[mode] = _Handler.calls.get(mode, 0) + 1
        listing = [record(slug="good-one"), record(slug="bad-one", isRollout="maybe")]
        if rest == "api/v8/experiments/":
            if mode == "ok" or (mode == "flaky" and count > 1):
                return self._send(200, json.dumps(listing))
            if mode in ("flaky", "down"):
                return self._send(500, "internal error")
            if mode == "slow":
                time.sleep(1.0)
                return self._send(200, "[]")
            if mode == "garbage":
                return self._send(200, "<html>gateway error</html>", "text/html")
            if mode == "forbidden":
                return self._send(403, "no")
        if mode == "ok" and rest.startswith("api/v8/experiments/"):
            slug = rest.removeprefix("api/v8/experiments/").rstrip("/")
            for r in listing:
                if r["slug"] == slug:
                    return self._send(200, json.dumps(r))
            return self._send(404, json.dumps({"detail": "Not found."}))
        return self._send(404, "unknown route")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # the slow route writes to a client that already gave up


@pytest.fixture(scope="module")
def server():
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def source(base: str, **kw) -> Experimenter:
    kw.setdefault("retry_backoff_seconds", 0.0)
    return Experimenter(url=base, **kw)


def test_http_fetch_parses_good_and_reports_bad(server):
    snapshot = source(f"{server}/ok").fetch()
    assert [e.slug for e in snapshot.experiments] == ["good-one"]
    assert [(e.slug, e.field) for e in snapshot.errors] == [("bad-one", "isRollout")]


def test_http_get_one_experiment(server):
    exp = source(f"{server}/ok/").get("good-one")  # trailing slash on the base URL is fine
    assert exp.slug == "good-one" and exp.start_date == D(2024, 2, 20)
    assert source(f"{server}/ok").get("unknown-slug") is None
    with pytest.raises(ExperimenterRecordError, match="isRollout"):
        source(f"{server}/ok").get("bad-one")


def test_http_retries_after_a_500(server):
    _Handler.calls.pop("flaky", None)
    snapshot = source(f"{server}/flaky", retries=2).fetch()
    assert [e.slug for e in snapshot.experiments] == ["good-one"]
    assert _Handler.calls["flaky"] == 2


def test_http_500_every_time_names_the_url(server):
    _Handler.calls.pop("down", None)
    with pytest.raises(ExperimenterUnavailableError) as info:
        source(f"{server}/down", retries=2).fetch()
    assert f"{server}/down/api/v8/experiments/" in str(info.value) and "HTTP 500" in str(info.value)
    assert _Handler.calls["down"] == 3


def test_http_timeout(server):
    started = time.monotonic()
    with pytest.raises(ExperimenterUnavailableError, match=r"slow/api/v8/experiments/.*no answer within 0.2"):
        source(f"{server}/slow", timeout_seconds=0.2, retries=1).fetch()
    assert time.monotonic() - started < 0.9  # gave up on its own timeout, did not wait for the server


def test_http_garbage_json(server):
    with pytest.raises(ExperimenterUnavailableError, match="not JSON.*gateway error"):
        source(f"{server}/garbage", retries=1).fetch()


def test_http_client_error_is_not_retried(server):
    _Handler.calls.pop("forbidden", None)
    with pytest.raises(ExperimenterUnavailableError, match="HTTP 403"):
        source(f"{server}/forbidden", retries=2).fetch()
    assert _Handler.calls["forbidden"] == 1


def test_http_unreachable_names_the_url():
    # port 9 on localhost: nothing listens, the connection is refused at once
    with pytest.raises(ExperimenterUnavailableError, match=r"http://127.0.0.1:9/api/v8/experiments/"):
        source("http://127.0.0.1:9", retries=0, timeout_seconds=2).fetch()
